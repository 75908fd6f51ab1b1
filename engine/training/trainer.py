"""The training loop: a train and a val phase per epoch, best-epoch tracking, checkpoints, cancellation.

Callers drive it through two plain callables: ``on_event`` receives the events of ``engine.training.events``
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

from engine.core.config import TrainConfig
from engine.core.device import describe_device, resolve_device
from engine.core.errors import TrainingCancelled, TransferStudioError
from engine.core.files import cpu_copy
from engine.core.rundir import RunDir, new_run_dir
from engine.data.datasets import DatasetReport, scan_dataset
from engine.models.build import build_model
from engine.models.bundle import Bundle, save_bundle
from engine.models.registry import get_model_info
from engine.training import events as ev
from engine.training.checkpoints import CheckpointWriter
from engine.training.features import FeatureExtractor, FeatureStore, compute_features, head_is_last
from engine.training.image_cache import DecodedImageCache
from engine.training.pipeline import FeatureBatches, ImageBatches
from engine.training.strategies import is_head_parameter, parameter_groups, set_mode

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
    run.remove_stale_temp_files()
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


def inference_batch_size(batch_size: int, device: torch.device) -> int:
    """Batch size for passes without gradients (features, validation): larger on a GPU, where it is cheap.

    On a CPU bigger batches barely speed up inference but cost memory (lite0 at 64 images: +1.3 GB).
    """
    return max(batch_size, 256) if device.type == "cuda" else batch_size


def decode_threads(config: TrainConfig) -> int:
    """Image-decoding threads: the configured number, else one per core (at most 8)."""
    return config.workers or min(8, os.cpu_count() or 1)


def feature_views(config: TrainConfig, device: torch.device) -> int:
    """Cached views per training image: 1 without augmentation; more where compute is cheap."""
    if not config.augment:
        return 1
    if config.feature_views:
        return config.feature_views
    return 4 if device.type == "cuda" else 2


class _Eta:
    """Time left, estimated separately for feature-caching batches and for (much cheaper) epoch batches."""

    def __init__(self) -> None:
        self.planned = {"features": 0, "epoch": 0}
        self.done = {"features": 0, "epoch": 0}
        self.spent = {"features": 0.0, "epoch": 0.0}
        self.last = time.perf_counter()

    def record(self, kind: str, now: float) -> None:
        self.done[kind] += 1
        self.spent[kind] += now - self.last
        self.last = now

    def seconds_left(self) -> float:
        rates = {k: self.spent[k] / self.done[k] for k in self.done if self.done[k]}
        fallback = next(iter(rates.values()), 0.0)
        return sum(
            max(0, self.planned[k] - self.done[k]) * rates.get(k, fallback) for k in ("features", "epoch")
        )


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
        self.eta = _Eta()

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
            # No per-file decode check here: every image is decoded in the first epoch anyway, and one
            # that fails then is skipped and reported. (The Data tab and `scan` show the full check.)
            self.report = scan_dataset(
                self.data_root, val_fraction=cfg.val_fraction, seed=cfg.seed, verify=False
            )
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
        self.batch_size = cfg.batch_size
        self.inference_batch = inference_batch_size(cfg.batch_size, self.device)
        self._make_caches(report)

        start_epoch = 1
        if self.checkpoint is not None:
            start_epoch = self._restore(self.checkpoint)
        remaining = cfg.epochs - start_epoch + 1
        n_train, n_val = len(self.labels["train"]), len(self.labels["val"])
        per_epoch = math.ceil(n_train / self.batch_size) + math.ceil(n_val / self.inference_batch)
        self.eta.planned["epoch"] = remaining * per_epoch
        head_name = self._feature_head()
        self.features = {}
        if head_name is not None:
            self.eta.planned["features"] = math.ceil((n_train + n_val) / self.inference_batch)
        self.emit(
            ev.RunStarted(
                run_dir=str(self.run.path),
                device=describe_device(self.device),
                classes=tuple(self.classes),
                num_train=len(report.splits["train"]),
                num_val=len(report.splits["val"]),
                epochs=cfg.epochs,
                start_epoch=start_epoch,
                batches_per_epoch=math.ceil(len(self.labels["train"]) / self.batch_size),
            )
        )
        self.checkpoints = CheckpointWriter(self.run, lambda text: self.emit(ev.Message("warning", text)))
        self.eta.last = time.perf_counter()  # model building is not a batch
        try:
            if head_name is not None:
                self._prepare_features(head_name)
            for epoch in range(start_epoch, cfg.epochs + 1):
                self._run_epoch(epoch)
        finally:
            self.checkpoints.close()
            for cache in self.caches.values():
                cache.close()
        return self._finish(cancelled=False)

    def _finish(self, cancelled: bool) -> RunResult:
        bundle_path = None
        if self.best_state is not None:
            self._load_snapshot(self.best_state)
            bundle = Bundle(
                architecture=self.config.model,
                class_names=self.classes,
                state_dict=cpu_copy(self.model.state_dict()),
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

    def _make_caches(self, report: DatasetReport) -> None:
        budget = self.config.image_cache_mb * 1024 * 1024
        threads = decode_threads(self.config)
        splits = report.splits
        self.caches = {
            split: DecodedImageCache(splits[split], self.preprocessing, budget // 2, threads)
            for split in ("train", "val")
        }
        self.labels = {split: [s.label for s in splits[split]] for split in ("train", "val")}

    def _feature_head(self) -> str | None:
        """The head whose input can be cached, when the fast feature-extraction path applies."""
        if self.config.strategy != "feature-extract" or not self.config.cache_features:
            return None
        for name in self.head_names:
            if head_is_last(self.model, name, self.preprocessing.crop_size):
                return name
        return None

    def _prepare_features(self, head_name: str) -> None:
        """Compute (or load) backbone features for both splits; the head then trains on them."""
        info = get_model_info(self.config.model)
        store = FeatureStore(info, self.config.seed)
        extractor = FeatureExtractor(self.model, head_name)
        set_mode(self.model, self.head_names, "feature-extract", training=False)
        self.head = dict(self.model.named_modules())[head_name]
        self.features: dict[str, tuple[torch.Tensor, list[int]]] = {}
        views = {"train": feature_views(self.config, self.device), "val": 1}
        for split in ("train", "val"):

            def progress(done: int, total: int) -> None:
                self._emit_batch(0, "features", done, total, float("nan"))

            while True:
                try:
                    with self._autocast():
                        feats, kept = compute_features(
                            extractor,
                            self.caches[split],
                            store,
                            views[split],
                            self.config.seed,
                            self.device,
                            self.inference_batch,
                            on_batch=progress,
                            should_stop=self.should_stop,
                        )
                    break
                except torch.cuda.OutOfMemoryError:
                    self._halve_after_oom(training=False)  # features done so far are kept in the store
            if not kept:
                raise TransferStudioError(f"no {split} image could be read; check the dataset")
            if self.device.type == "cuda":
                feats = feats.to(self.device)
            self.features[split] = (feats, [self.labels[split][i] for i in kept])
        self.emit(
            ev.Message(
                "info",
                f"backbone features ready ({views['train']} view(s) per training image); "
                "each epoch now trains only the head",
            )
        )

    def _batches(self, split: str, generator: torch.Generator) -> FeatureBatches | ImageBatches:
        train = split == "train"
        if self.features:
            feats, labels = self.features[split]
            size = self.batch_size if train else self.inference_batch
            return FeatureBatches(feats, labels, size, self.device, train=train, generator=generator)
        return ImageBatches(
            self.caches[split],
            self.labels[split],
            self.batch_size if train else self.inference_batch,
            self.device,
            train=train,
            augment=self.config.augment,
            generator=generator,
        )

    def _restore(self, ckpt: dict[str, Any]) -> int:
        if list(ckpt.get("classes", [])) != self.classes:
            raise TransferStudioError(
                "the dataset's classes changed since this run started; start a new run instead"
            )
        self._load_snapshot(ckpt["model"])
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

    def _load_snapshot(self, state: dict[str, torch.Tensor]) -> None:
        strict = self.config.strategy != "feature-extract"
        self.model.load_state_dict(state, strict=strict)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        """The weights that can change: the head's alone when the backbone is frozen."""
        state = self.model.state_dict()
        if self.config.strategy == "feature-extract":
            state = {k: v for k, v in state.items() if is_head_parameter(k, self.head_names)}
        return cpu_copy(state)

    def _save_checkpoint(self, epoch: int) -> None:
        self.checkpoints.submit(
            {
                "epoch": epoch,
                "model": self._snapshot(),
                "optimizer": cpu_copy(self.optimizer.state_dict()),
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
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        failed_before = self.failed_images
        train_loss, train_acc = self._run_phase(epoch, "train", self._batches("train", generator))
        val_loss, val_acc = self._run_phase(epoch, "val", self._batches("val", generator))
        self.failed_images = sum(len(c.failed) for c in self.caches.values())
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        is_best = val_acc > self.best_val_acc
        if is_best:
            self.best_val_acc, self.best_epoch = val_acc, epoch
            self.best_state = self._snapshot()
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

    def _run_phase(
        self, epoch: int, phase: str, batches: FeatureBatches | ImageBatches
    ) -> tuple[float, float]:
        training = phase == "train"
        if self.features:
            self.head.train(training)
        else:
            set_mode(self.model, self.head_names, self.config.strategy, training)
        total_loss, correct, seen = 0.0, 0, 0
        count = len(batches)
        with torch.set_grad_enabled(training):
            for index, batch in enumerate(batches, start=1):
                if self.should_stop():
                    raise TrainingCancelled("stopped by the user")
                batch_loss = float("nan")
                if batch is not None:
                    inputs, labels = batch
                    batch_loss, n_correct = self._step_or_split(inputs, labels, training)
                    total_loss += batch_loss * labels.numel()
                    correct += n_correct
                    seen += labels.numel()
                self._emit_batch(epoch, phase, index, count, batch_loss)
        if seen == 0:
            raise TransferStudioError(f"no {phase} image could be read; check the dataset")
        return total_loss / seen, correct / seen

    def _emit_batch(self, epoch: int, phase: str, index: int, count: int, loss: float) -> None:
        now = time.perf_counter()
        elapsed = now - self.start_time
        self.eta.record("features" if phase == "features" else "epoch", now)
        self.emit(
            ev.BatchProgress(
                epoch=epoch,
                phase=phase,
                batch=index,
                batches=count,
                loss=loss,
                elapsed_s=elapsed,
                eta_s=self.eta.seconds_left(),
            )
        )

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

    def _step_or_split(self, inputs: torch.Tensor, labels: torch.Tensor, training: bool) -> tuple[float, int]:
        """One step; on CUDA out-of-memory, halve the batch size from now on and split this batch."""
        try:
            return self._step(inputs, labels, training)
        except torch.cuda.OutOfMemoryError:
            self.optimizer.zero_grad(set_to_none=True)
            half = self._halve_after_oom(training, current=labels.numel())
            results = [
                self._step_or_split(inputs[i : i + half], labels[i : i + half], training)
                for i in range(0, labels.numel(), half)
            ]
            n = [labels[i : i + half].numel() for i in range(0, labels.numel(), half)]
            loss = sum(r[0] * k for r, k in zip(results, n)) / labels.numel()
            return loss, sum(r[1] for r in results)

    def _halve_after_oom(self, training: bool, current: int | None = None) -> int:
        """Halve the training (or inference) batch size after CUDA ran out of memory; returns it."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        size = current or (self.batch_size if training else self.inference_batch)
        if size <= 1:
            raise TransferStudioError(
                "out of GPU memory even with a batch of one image; choose a smaller model or train on the CPU"
            )
        half = max(1, size // 2)
        if training:
            self.batch_size = half
        else:
            self.inference_batch = half
        kind = "batch size" if training else "inference batch size"
        self.emit(ev.Message("warning", f"out of GPU memory: {kind} halved to {half}; the run goes on"))
        return half

    def _step(self, inputs: torch.Tensor, labels: torch.Tensor, training: bool) -> tuple[float, int]:
        forward = self.head if self.features else self.model
        with self._autocast():
            main, aux = split_outputs(forward(inputs))
            loss = self.criterion(main, labels)
            if training and aux:
                loss = loss + AUX_LOSS_WEIGHT * sum(self.criterion(a, labels) for a in aux)
        if training:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return float(loss.detach()), int((main.argmax(1) == labels).sum())
