"""The training loop: a train and a val phase per epoch, best-epoch tracking, checkpoints, cancellation.

Callers drive it through two plain callables: ``on_event`` receives the events of ``engine.events``
and ``should_stop`` is polled between batches, so a Stop takes effect within one batch. The CLI and
the GUI's QThread worker are both thin adapters over :func:`train` and :func:`resume`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from engine import events as ev
from engine.bundle import Bundle, save_bundle
from engine.catalog import build_model, get_model_info
from engine.config import TrainConfig
from engine.datasets import DatasetReport, ImageDataset, collate_skip_failed, scan_dataset
from engine.device import describe_device, resolve_device
from engine.errors import TrainingCancelled, TransferStudioError
from engine.runs import RunDir, new_run_dir
from engine.strategies import parameter_groups, set_mode
from engine.transforms import eval_transform, train_transform

log = logging.getLogger(__name__)

EventCallback = Callable[[ev.Event], None]
StopCheck = Callable[[], bool]
AUX_LOSS_WEIGHT = 0.4


@dataclass
class RunResult:
    """What a finished (or cancelled) run produced."""

    run_dir: Path
    bundle_path: Path | None
    best_epoch: int
    best_val_acc: float
    epochs_completed: int
    epochs: int
    seconds: float
    device: str
    cancelled: bool
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs_completed,
            "epochs_planned": self.epochs,
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "bundle": str(self.bundle_path) if self.bundle_path else None,
            "run_dir": str(self.run_dir),
            "cancelled": self.cancelled,
            "history": self.history,
        }


def train(
    config: TrainConfig,
    data_root: str | Path,
    *,
    run_dir: str | Path | None = None,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    report: DatasetReport | None = None,
) -> RunResult:
    """Train ``config.model`` on the dataset at ``data_root``; writes everything to ``run_dir``."""
    run = RunDir(run_dir or new_run_dir(config.model, config.strategy))
    if run.checkpoint_path.exists():
        raise TransferStudioError(f"{run.path} already holds a run; resume it or choose another folder")
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(config.to_dict(), Path(data_root).resolve())
    return _Training(config, Path(data_root), run, on_event, should_stop, report).execute()


def resume(
    run_dir: str | Path,
    *,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    epochs: int | None = None,
) -> RunResult:
    """Continue an interrupted run from its last finished epoch (optionally to a new epoch count)."""
    run = RunDir(run_dir)
    config_dict, data_root = run.read_config()
    config = TrainConfig.from_dict(config_dict)
    if epochs is not None and epochs != config.epochs:
        config = config.replace(epochs=epochs)
        run.write_config(config.to_dict(), data_root)
    checkpoint = run.load_checkpoint()
    return _Training(config, data_root, run, on_event, should_stop, None, checkpoint).execute()


def split_outputs(outputs: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Main logits and auxiliary logits (inception, googlenet return a tuple in train mode)."""
    if isinstance(outputs, torch.Tensor):
        return outputs, []
    main, *aux = outputs
    return main, [a for a in aux if isinstance(a, torch.Tensor)]


def _seed_epoch(seed: int, epoch: int) -> None:
    """Seed from (seed, epoch) so a resumed run draws the same random numbers as an uninterrupted one."""
    torch.manual_seed(seed * 100_003 + epoch)


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def auto_workers(device: torch.device) -> int:
    """DataLoader workers that help without starving the training thread of cores."""
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, max(1, cores - 1))
    return 0 if cores <= 2 else min(4, cores // 2)


class _Training:
    """One run's state; ``execute`` is the whole lifecycle."""

    def __init__(
        self,
        config: TrainConfig,
        data_root: Path,
        run: RunDir,
        on_event: EventCallback | None,
        should_stop: StopCheck | None,
        report: DatasetReport | None,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.data_root = data_root
        self.run = run
        self.emit: EventCallback = on_event or (lambda _event: None)
        self.should_stop: StopCheck = should_stop or (lambda: False)
        self.report = report
        self.checkpoint = checkpoint
        self.history: list[dict[str, Any]] = []
        self.best_val_acc = -1.0
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.failed_images = 0
        self.start_time = time.perf_counter()
        self.batches_done = 0
        self.batches_total = 1

    # -- lifecycle -------------------------------------------------------------------------
    def execute(self) -> RunResult:
        try:
            return self._execute()
        except TrainingCancelled:
            return self._finish(cancelled=True)
        except TransferStudioError as exc:
            self.emit(ev.RunFailed(str(exc)))
            raise
        except Exception as exc:
            log.exception("training failed")
            self.emit(ev.RunFailed(f"training failed: {type(exc).__name__}: {exc}"))
            raise

    def _execute(self) -> RunResult:
        cfg = self.config
        self.device = resolve_device(cfg.device)
        if self.report is None:
            self.report = scan_dataset(self.data_root, val_fraction=cfg.val_fraction, seed=cfg.seed)
        report = self.report
        self.classes = list(report.classes)
        for warning in report.warnings:
            self.emit(ev.Message("warning", warning))
        if report.skipped:
            self.emit(ev.Message("warning", f"{len(report.skipped)} file(s) skipped while scanning"))

        info = get_model_info(cfg.model)
        self.preprocessing = info.preprocessing
        torch.manual_seed(cfg.seed)  # the new head's (and a scratch model's) initial weights
        self.model, self.head_names = build_model(cfg.model, len(self.classes), pretrained=cfg.pretrained)
        self.model.to(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.device.type == "cuda" and self.amp_dtype == torch.float16
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.train_loader, self.val_loader = self._make_loaders(report)

        start_epoch = 1
        if self.checkpoint is not None:
            start_epoch = self._restore(self.checkpoint)
        remaining = cfg.epochs - start_epoch + 1
        self.batches_total = max(1, remaining * (len(self.train_loader) + len(self.val_loader)))
        self.emit(
            ev.RunStarted(
                run_dir=str(self.run.path),
                device=describe_device(self.device),
                classes=tuple(self.classes),
                num_train=len(report.splits["train"]),
                num_val=len(report.splits["val"]),
                epochs=cfg.epochs,
                start_epoch=start_epoch,
                batches_per_epoch=len(self.train_loader),
            )
        )
        for epoch in range(start_epoch, cfg.epochs + 1):
            self._run_epoch(epoch)
        return self._finish(cancelled=False)

    def _finish(self, cancelled: bool) -> RunResult:
        bundle_path = None
        if self.best_state is not None:
            bundle = Bundle(
                architecture=self.config.model,
                class_names=self.classes,
                state_dict=self.best_state,
                preprocessing=self.preprocessing,
                metrics={
                    "best_val_acc": self.best_val_acc,
                    "best_epoch": self.best_epoch,
                    "epochs_completed": len(self.history),
                    "history": self.history,
                },
                config=self.config.to_dict(),
            )
            bundle_path = save_bundle(self.run.bundle_path, bundle)
        seconds = time.perf_counter() - self.start_time
        device = describe_device(self.device) if hasattr(self, "device") else self.config.device
        result = RunResult(
            run_dir=self.run.path,
            bundle_path=bundle_path,
            best_epoch=self.best_epoch,
            best_val_acc=max(self.best_val_acc, 0.0),
            epochs_completed=len(self.history),
            epochs=self.config.epochs,
            seconds=seconds,
            device=device,
            cancelled=cancelled,
            history=self.history,
        )
        self.emit(
            ev.RunFinished(
                best_epoch=result.best_epoch,
                best_val_acc=result.best_val_acc,
                epochs_completed=result.epochs_completed,
                seconds=seconds,
                bundle_path=str(bundle_path) if bundle_path else None,
                cancelled=cancelled,
                device=device,
                run_dir=str(self.run.path),
            )
        )
        return result

    # -- set-up ----------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        groups = parameter_groups(self.model, self.head_names, cfg)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adam":
            return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _make_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        cfg = self.config
        if cfg.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cfg.epochs)
        if cfg.schedule == "step":
            step = max(1, math.ceil(cfg.epochs / 3))
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=step, gamma=0.1)
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _epoch: 1.0)

    def _amp_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _make_loaders(self, report: DatasetReport) -> tuple[DataLoader, DataLoader]:
        cfg = self.config
        workers = cfg.workers if cfg.workers else auto_workers(self.device)
        common = {
            "batch_size": cfg.batch_size,
            "num_workers": workers,
            "collate_fn": collate_skip_failed,
            "pin_memory": self.device.type == "cuda",
            "persistent_workers": workers > 0,
        }
        self.shuffle_generator = torch.Generator()
        train_set = ImageDataset(report.splits["train"], train_transform(self.preprocessing, cfg.augment))
        val_set = ImageDataset(report.splits["val"], eval_transform(self.preprocessing))
        train = DataLoader(train_set, shuffle=True, generator=self.shuffle_generator, **common)
        val = DataLoader(val_set, shuffle=False, **common)
        return train, val

    def _restore(self, ckpt: dict[str, Any]) -> int:
        if list(ckpt.get("classes", [])) != self.classes:
            raise TransferStudioError(
                "the dataset's classes changed since this run started; start a new run instead"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.history = list(ckpt["history"])
        self.best_val_acc = float(ckpt["best_val_acc"])
        self.best_epoch = int(ckpt["best_epoch"])
        self.best_state = ckpt["best_state"]
        self.failed_images = int(ckpt.get("failed_images", 0))
        epoch = int(ckpt["epoch"])
        self.emit(ev.Message("info", f"resuming after epoch {epoch} of {self.config.epochs}"))
        return epoch + 1

    def _save_checkpoint(self, epoch: int) -> None:
        self.run.save_checkpoint(
            {
                "epoch": epoch,
                "model": _state_copy(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "history": self.history,
                "best_val_acc": self.best_val_acc,
                "best_epoch": self.best_epoch,
                "best_state": self.best_state,
                "classes": self.classes,
                "failed_images": self.failed_images,
                "config": self.config.to_dict(),
            }
        )

    # -- the loop --------------------------------------------------------------------------
    def _run_epoch(self, epoch: int) -> None:
        started = time.perf_counter()
        _seed_epoch(self.config.seed, epoch)
        self.shuffle_generator.manual_seed(self.config.seed * 100_003 + epoch)
        failed_before = self.failed_images
        train_loss, train_acc = self._run_phase(epoch, "train", self.train_loader)
        val_loss, val_acc = self._run_phase(epoch, "val", self.val_loader)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        is_best = val_acc > self.best_val_acc
        if is_best:
            self.best_val_acc, self.best_epoch = val_acc, epoch
            self.best_state = _state_copy(self.model)
        seconds = time.perf_counter() - started
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            "seconds": round(seconds, 3),
        }
        self.history.append(row)
        self.run.write_metrics(self.history)
        self._save_checkpoint(epoch)
        if self.failed_images > failed_before:
            self.emit(
                ev.Message(
                    "warning",
                    f"{self.failed_images - failed_before} image(s) could not be decoded and were skipped",
                )
            )
        self.emit(
            ev.EpochEnd(
                epoch=epoch,
                epochs=self.config.epochs,
                train_loss=train_loss,
                train_acc=train_acc,
                val_loss=val_loss,
                val_acc=val_acc,
                lr=lr,
                seconds=seconds,
                is_best=is_best,
            )
        )

    def _run_phase(self, epoch: int, phase: str, loader: DataLoader) -> tuple[float, float]:
        training = phase == "train"
        set_mode(self.model, self.head_names, self.config.strategy, training)
        total_loss, correct, seen = 0.0, 0, 0
        batches = len(loader)
        with torch.set_grad_enabled(training):
            for index, batch in enumerate(loader, start=1):
                if self.should_stop():
                    raise TrainingCancelled("stopped by the user")
                batch_loss = float("nan")
                if batch is not None:
                    images, labels, n_failed = batch
                    self.failed_images += n_failed
                    batch_loss, n_correct = self._step(images, labels, training)
                    total_loss += batch_loss * labels.numel()
                    correct += n_correct
                    seen += labels.numel()
                self.batches_done += 1
                elapsed = time.perf_counter() - self.start_time
                rate = elapsed / self.batches_done
                self.emit(
                    ev.BatchProgress(
                        epoch=epoch,
                        phase=phase,
                        batch=index,
                        batches=batches,
                        loss=batch_loss,
                        elapsed_s=elapsed,
                        eta_s=rate * max(0, self.batches_total - self.batches_done),
                    )
                )
        if seen == 0:
            raise TransferStudioError(f"no {phase} image could be read; check the dataset")
        return total_loss / seen, correct / seen

    def _step(self, images: torch.Tensor, labels: torch.Tensor, training: bool) -> tuple[float, int]:
        non_blocking = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=non_blocking)
        labels = labels.to(self.device, non_blocking=non_blocking)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            main, aux = split_outputs(self.model(images))
            loss = self.criterion(main, labels)
            if training and aux:
                loss = loss + AUX_LOSS_WEIGHT * sum(self.criterion(a, labels) for a in aux)
        if training:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return float(loss.detach()), int((main.argmax(1) == labels).sum())
