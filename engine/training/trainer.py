"""The training loop, in the shape of torchvision's reference script.

:func:`train` and :func:`resume` are the entry points. Each runs :func:`set_up` (the model, optimizer,
schedule and precision, gathered in one :class:`~engine.training.state.TrainingState`), opens the run's
data path (cached features or images, :mod:`engine.training.data_path`), optionally
:func:`restore_checkpoint`, then per epoch :func:`train_one_epoch`, :func:`evaluate` and
:func:`save_checkpoint`. A Stop (``should_stop()`` turning true, polled between batches) ends the run
cleanly with the best epoch's bundle; callers read ``RunResult.cancelled``.

Callers drive it through two plain callables: ``on_event`` receives the events of
:mod:`engine.training.events` and ``should_stop`` is polled between batches. The CLI and the GUI's
QThread worker are both thin adapters over :func:`train` and :func:`resume`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.core.config import INPUT_SIZE_AUTO, ConfigError, TrainConfig
from engine.core.device import describe_device, is_accelerator, resolve_device
from engine.core.errors import Cancelled, StopCheck, TransferStudioError
from engine.core.files import cpu_copy
from engine.core.rundir import RunDir, new_run_dir
from engine.data.datasets import DatasetReport, scan_dataset
from engine.models.build import build_model
from engine.models.bundle import Bundle, save_bundle
from engine.models.heads import HeadSpec, head_spec_of, split_outputs
from engine.models.preprocessing import Preprocessing
from engine.models.registry import get_model_info
from engine.training import events as ev
from engine.training.checkpoints import CheckpointWriter, load_weights_snapshot, weights_snapshot
from engine.training.data_path import (
    DataPath,
    auto_input_size,
    cacheable_head,
    feature_views,
    open_data_path,
)
from engine.training.distributed import (
    Dist,
    agree_batch_size,
    all_reduce_sums,
    batch_halving_allowed,
    run_on_main,
    sync,
    sync_batchnorm,
    train_steps,
    training_oom_error,
    unwrap,
    wrap_ddp,
)
from engine.training.early_stopping import EarlyStopping
from engine.training.head_fit import HEAD_FIRST_VIEWS, fit_head_first, head_first_applies
from engine.training.state import EventCallback, Hooks, TrainingState
from engine.training.strategies import parameter_groups

log = logging.getLogger(__name__)

#: The training scan reports its progress every this many files (and at the end).
SCAN_PROGRESS_EVERY = 64

AUX_LOSS_WEIGHT = 0.4


@dataclass
class RunResult:
    """What a finished (or stopped) run produced."""

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
    stopped_early: bool = False  # early stopping ended the run before its planned epochs
    world_size: int = 1  # processes that trained it together (torchrun)

    def to_json(self) -> dict[str, Any]:
        return {
            "world_size": self.world_size,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs_completed,
            "epochs_planned": self.epochs,
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "bundle": str(self.bundle_path) if self.bundle_path else None,
            "run_dir": str(self.run_dir),
            "cancelled": self.cancelled,
            "stopped_early": self.stopped_early,
            "history": self.history,
        }


# -- entry points ---------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    data_root: str | Path,
    *,
    run_dir: str | Path | None = None,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    report: DatasetReport | None = None,
    dist: Dist | None = None,
) -> RunResult:
    """Train ``config.model`` on the dataset at ``data_root``; writes everything to ``run_dir``.

    ``dist``: this process's place in a multi-process run (torchrun); rank 0 alone creates and writes
    the run folder, and only its ``on_event`` should be given.
    """
    d = dist or Dist.single()

    def create() -> str:
        run = RunDir(run_dir or new_run_dir(config.model, config.strategy))
        if run.checkpoint_path.exists():
            raise TransferStudioError(f"{run.path} already holds a run; resume it or choose another folder")
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(config.to_dict(), Path(data_root).resolve())
        return str(run.path)

    run = RunDir(run_on_main(create, d, "creating the run folder"), writes=d.is_main)
    return _run(config, Path(data_root), run, Hooks(on_event, should_stop, d), report, checkpoint=None)


def resume(
    run_dir: str | Path,
    *,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    epochs: int | None = None,
    dist: Dist | None = None,
) -> RunResult:
    """Continue an interrupted run from its last finished epoch (optionally to a new epoch count).

    A multi-process run may resume with a different number of processes (``dist``): rank 0 reads the
    folder and shares the checkpoint.
    """
    d = dist or Dist.single()

    def load() -> tuple[dict[str, Any], str, dict[str, Any]]:
        run = RunDir(run_dir)
        config_dict, data_root = run.read_config()
        if epochs is not None and epochs != config_dict.get("epochs"):
            config_dict = TrainConfig.from_dict(config_dict).replace(epochs=epochs).to_dict()
            run.write_config(config_dict, data_root)
        run.remove_stale_temp_files()
        return config_dict, str(data_root), run.load_checkpoint()

    config_dict, data_root, checkpoint = run_on_main(load, d, "reading the run to resume")
    config = TrainConfig.from_dict(config_dict)
    run = RunDir(run_dir, writes=d.is_main)
    return _run(config, Path(data_root), run, Hooks(on_event, should_stop, d), None, checkpoint)


def _run(
    config: TrainConfig,
    data_root: Path,
    run: RunDir,
    hooks: Hooks,
    report: DatasetReport | None,
    checkpoint: dict[str, Any] | None,
) -> RunResult:
    """The whole lifecycle: set up, (restore), epochs; a Stop ends it like a finished run."""
    state: TrainingState | None = None
    stopper: EarlyStopping | None = None
    previous = run.read_status()  # a resumed run's: its first start and its earlier sessions' time
    earlier = previous.get("seconds")
    hooks.earlier_seconds = float(earlier) if isinstance(earlier, (int, float)) else 0.0
    run.write_status(
        "running",
        started=previous.get("started") or _now(),
        resumed=None if checkpoint is None else _now(),
        pid=os.getpid(),
        ended=None,
        message=None,
        stopped_early=None,
    )
    try:
        try:
            device = resolve_device(config.device)  # first: an unusable device is the one error to report
            if hooks.dist.distributed:
                device = hooks.dist.device(device.type)  # CUDA: the GPU of this process's LOCAL_RANK
            if report is None or not report.same_split(config.val_fraction, config.seed):
                report = scan_for_training(data_root, config, hooks)
            _report_dataset_warnings(report, hooks)
            state = set_up(config, report, run, device)
            if config.sync_batchnorm and hooks.dist.distributed and not state.head_only:
                state.model = sync_batchnorm(state.model, hooks.dist)
            _check_head(state)
            _record_dataset(run, report, state, hooks)
            start_epoch = restore_checkpoint(state, checkpoint, hooks) if checkpoint is not None else 1
            stopper = _early_stopping(state, checkpoint, hooks)
            if stopper.stopped_at is not None:  # it stopped early and no more epochs were asked for
                start_epoch = config.epochs + 1
            _plan_eta(state, report, start_epoch, hooks)
            hooks.emit(
                ev.RunStarted(
                    run_dir=str(run.path),
                    device=describe_device(state.device),
                    classes=tuple(state.classes),
                    num_train=len(report.splits["train"]),
                    num_val=len(report.splits["val"]),
                    epochs=config.epochs,
                    start_epoch=start_epoch,
                    batches_per_epoch=train_steps(
                        len(report.splits["train"]), state.batch_size, hooks.dist.world_size
                    ),
                )
            )
            hooks.eta.restart_clock()  # building the model is not a batch
            with (
                CheckpointWriter(run, hooks.warn) as checkpoints,
                open_data_path(
                    state, report, hooks, lambda: halve_batch(state, hooks, training=False)
                ) as data,
            ):
                if start_epoch == 1 and head_first_applies(state):
                    fit_head_first(state, data, hooks, lambda: halve_batch(state, hooks, training=False))
                data.forward = wrap_ddp(data.forward, hooks.dist)  # several processes: gradients averaged
                for epoch in range(start_epoch, config.epochs + 1):
                    run_epoch(state, data, epoch, hooks, checkpoints)
                    if stopper.update(epoch, state.history[-1]):
                        hooks.info(stopper.describe_stop(config.epochs))
                        break
        except Cancelled:
            return _finish(config, run, state, hooks, cancelled=True)
        stopped_early = stopper is not None and stopper.stopped_at is not None
        return _finish(config, run, state, hooks, cancelled=False, stopped_early=stopped_early)
    except TransferStudioError as exc:
        run.write_status("failed", ended=_now(), message=str(exc), seconds=hooks.total_seconds())
        hooks.emit(ev.RunFailed(str(exc)))
        raise
    except Exception as exc:
        log.exception("training failed")
        message = f"training failed: {type(exc).__name__}: {exc}"
        run.write_status("failed", ended=_now(), message=message, seconds=hooks.total_seconds())
        hooks.emit(ev.RunFailed(message))
        raise


def _now() -> str:
    """The local time as an ISO 8601 string with its UTC offset (what status.json records)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def scan_for_training(data_root: Path, config: TrainConfig, hooks: Hooks) -> DatasetReport:
    """The same scan as ``transfer-studio scan`` and the Data tab (so the same files and split), with
    progress events and Stop."""

    def progress(done: int, total: int) -> None:
        hooks.check_stop()
        if done == total or done % SCAN_PROGRESS_EVERY == 0:
            hooks.emit(ev.ScanProgress(done=done, total=total))

    return scan_dataset(data_root, val_fraction=config.val_fraction, seed=config.seed, on_progress=progress)


def _report_dataset_warnings(report: DatasetReport, hooks: Hooks) -> None:
    for warning in report.warnings:
        hooks.warn(warning)
    if report.skipped:  # each skipped file once, with its reason
        lines = [f"  {report.relative(skipped.path)}: {skipped.reason}" for skipped in report.skipped]
        hooks.warn(f"{len(report.skipped)} file(s) skipped, not used for training:\n" + "\n".join(lines))


def _record_dataset(run: RunDir, report: DatasetReport, state: TrainingState, hooks: Hooks) -> None:
    """Say and record (in config.json) what the run trains on: images, exclusions, class balance."""
    ratio = report.imbalance()
    if state.balance != "none":
        why = " (the classes are imbalanced)" if state.config.balance == "auto" else ""
        how = "a class-weighted loss" if state.balance == "weights" else "a class-balanced sampler"
        hooks.info(f"Class balance: {how}{why}; largest/smallest training class {ratio:.1f}")
    if report.excluded:
        hooks.info(f"{len(report.excluded)} photo(s) left out by the dataset's exclusion list")
    if state.config.input_size == INPUT_SIZE_AUTO:
        hooks.info(
            f"Input size {state.preprocessing.crop_size} px (automatic, from the training photos' sizes)"
        )
    run.record_dataset(
        {
            "images": {split: len(samples) for split, samples in report.splits.items()},
            "skipped": len(report.skipped),
            "excluded": sorted(map(report.relative, report.excluded)),
            "imbalance": round(ratio, 3) if math.isfinite(ratio) else None,
            "balance": state.balance,
            "input_size": state.preprocessing.crop_size,
        }
    )


def set_up(config: TrainConfig, report: DatasetReport, run: RunDir, device: torch.device) -> TrainingState:
    """The model with its new head on ``device``, its optimizer, schedule, precision and loss."""
    classes = list(report.classes)
    preprocessing = run_preprocessing(config, report)  # first: an input size the model cannot take
    torch.manual_seed(config.seed)  # the new head's (and a scratch model's) initial weights
    model, head_names = build_model(
        config.model, len(classes), pretrained=config.pretrained, head=HeadSpec.from_config(config)
    )
    # channels_last everywhere: faster convolutions on GPUs and on CPUs alike (BENCHMARKS.md, "CPU floor").
    model.to(device)
    model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    optimizer = make_optimizer(model, head_names, config)
    amp_dtype = autocast_dtype(device)
    balance = config.resolved_balance(report.imbalance())
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    train_criterion = (
        nn.CrossEntropyLoss(weight=class_weights(report).to(device), label_smoothing=config.label_smoothing)
        if balance == "weights"
        else criterion
    )
    return TrainingState(
        config=config,
        run=run,
        classes=classes,
        device=device,
        model=model,
        head_names=head_names,
        preprocessing=preprocessing,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, config),
        scaler=torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp_dtype == torch.float16),
        criterion=criterion,
        train_criterion=train_criterion,
        balance=balance,
        amp_dtype=amp_dtype,
        batch_size=config.batch_size,
        inference_batch=inference_batch_size(config.batch_size, device),
    )


def run_preprocessing(config: TrainConfig, report: DatasetReport | None = None) -> Preprocessing:
    """The model's preprocessing at the run's input size, with the run's test-time augmentation.

    An automatic input size is chosen from the sizes of ``report``'s training photos (without a
    report: the model's own size).
    """
    info = get_model_info(config.model)
    size = config.input_size
    if size == INPUT_SIZE_AUTO:
        size = auto_input_size(info.preprocessing, report.splits["train"])[0] if report is not None else 0
    elif size and size < info.min_input_size:
        raise ConfigError(f"{config.model} needs an input size of at least {info.min_input_size} pixels")
    return info.preprocessing.with_input_size(size).with_tta(config.tta)


def class_weights(report: DatasetReport) -> torch.Tensor:
    """Per-class loss weights ``N / (K * n_c)`` from the training split: each class weighs the same in
    total (1.0 for every class when balanced; a class missing from train gets weight 0)."""
    counts = torch.zeros(len(report.classes))
    for sample in report.splits["train"]:
        counts[sample.label] += 1
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = counts.sum() / (int(present.sum()) * counts[present])
    return weights


def make_optimizer(model: nn.Module, head_names: list[str], config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, head_names, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule, after ``warmup_epochs`` of linear warm-up if any.

    Without warm-up each schedule is the torch scheduler runs have always had (so their checkpoints
    resume exactly); with it, one ``LambdaLR`` of :func:`lr_factor`.
    """
    if warmup_epochs(config):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(config, epoch))
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        step = max(1, math.ceil(config.epochs / 3))
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)


def warmup_epochs(config: TrainConfig) -> int:
    """Warm-up epochs used: ``config.warmup_epochs``, leaving at least one epoch to the schedule."""
    return min(config.warmup_epochs, config.epochs - 1)


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """The learning-rate multiplier of 0-based ``epoch`` with warm-up: ``(epoch + 1) / (W + 1)`` for the
    ``W`` warm-up epochs, then the schedule over the epochs left (cosine from 1 towards 0; step: a
    tenth after each third; none: 1)."""
    warmup = warmup_epochs(config)
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    done, span = epoch - warmup, config.epochs - warmup
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * done / span))
    if config.schedule == "step":
        return 0.1 ** (done // max(1, math.ceil(span / 3)))
    return 1.0


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision where the device supports it: bf16 on CUDA GPUs that have it (else fp16, with a
    gradient scaler) and on Intel XPUs; None (full precision) on the CPU and on Apple's MPS, where
    fp16 training without a scaler is not safe and bf16 autocast depends on the macOS version."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "xpu":
        return torch.bfloat16
    return None


def inference_batch_size(batch_size: int, device: torch.device) -> int:
    """Batch size for passes without gradients (features, validation): larger on a GPU, where it is cheap.

    On a CPU bigger batches barely speed up inference but cost memory (lite0 at 64 images: +1.3 GB).
    """
    return max(batch_size, 256) if is_accelerator(device) else batch_size


def _plan_eta(state: TrainingState, report: DatasetReport, start_epoch: int, hooks: Hooks) -> None:
    n_train, n_val = len(report.splits["train"]), len(report.splits["val"])
    epochs = state.config.epochs - start_epoch + 1
    cached = cacheable_head(state) is not None
    views = feature_views(state.config.augment, state.config.feature_views, state.device)
    val_views = 2 if state.preprocessing.tta == "flip" else 1
    feature_work = views * math.ceil(n_train / state.inference_batch) + val_views * math.ceil(
        n_val / state.inference_batch
    )
    if not cached:  # only the head-first fit's pass, if any
        head_first = start_epoch == 1 and head_first_applies(state)
        feature_work = HEAD_FIRST_VIEWS * math.ceil(n_train / state.inference_batch) if head_first else 0
    hooks.eta.plan(
        features=feature_work,
        train=epochs * math.ceil(n_train / state.batch_size),
        val=epochs * math.ceil(n_val / state.inference_batch),
        cached_features=cached,
    )


# -- one epoch ------------------------------------------------------------------------------------


def run_epoch(
    state: TrainingState, data: DataPath, epoch: int, hooks: Hooks, checkpoints: CheckpointWriter
) -> None:
    """Train, validate, keep the best weights, write metrics and a checkpoint, report the epoch."""
    started = time.perf_counter()
    # Seeded from (seed, epoch), so a resumed run draws the same numbers as an uninterrupted one.
    torch.manual_seed(state.config.seed * 100_003 + epoch)
    generator = torch.Generator().manual_seed(state.config.seed * 100_003 + epoch)
    failed_before = state.failed_images
    train_loss, train_acc = train_one_epoch(state, data, epoch, generator, hooks)
    val_loss, val_acc = evaluate(state, data, epoch, hooks)
    state.failed_images = data.failed_images()
    lr = state.optimizer.param_groups[0]["lr"]
    state.scheduler.step()
    is_best = val_acc > state.best_val_acc
    if is_best:
        state.best_val_acc, state.best_epoch = val_acc, epoch
        state.best_state = weights_snapshot(state.model, state.head_names, state.head_only)
    seconds = time.perf_counter() - started
    state.history.append(
        {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            "seconds": round(seconds, 3),
        }
    )
    state.run.write_metrics(state.history)
    save_checkpoint(state, epoch, checkpoints)
    if state.failed_images > failed_before:
        hooks.warn(f"{state.failed_images - failed_before} image(s) could not be decoded and were skipped")
    hooks.emit(
        ev.EpochEnd(
            epoch=epoch,
            epochs=state.config.epochs,
            train_loss=train_loss,
            train_acc=train_acc,
            val_loss=val_loss,
            val_acc=val_acc,
            lr=lr,
            seconds=seconds,
            is_best=is_best,
        )
    )


def train_one_epoch(
    state: TrainingState, data: DataPath, epoch: int, generator: torch.Generator, hooks: Hooks
) -> tuple[float, float]:
    """One pass over the training split with gradient steps; returns (mean loss, accuracy)."""
    data.set_mode(training=True)
    batches = data.batches(
        "train", state.batch_size, generator, balanced=state.balance == "sampler", dist=hooks.dist
    )
    return _pass(state, data.forward, batches, epoch, "train", hooks)


def evaluate(state: TrainingState, data: DataPath, epoch: int, hooks: Hooks) -> tuple[float, float]:
    """One pass over the validation split without gradients; returns (mean loss, accuracy)."""
    data.set_mode(training=False)
    state.inference_batch = agree_batch_size(state.inference_batch, hooks.dist)
    batches = data.batches("val", state.inference_batch, torch.Generator(), dist=hooks.dist)
    with torch.no_grad():
        return _pass(state, unwrap(data.forward), batches, epoch, "val", hooks)


def _pass(
    state: TrainingState, forward: nn.Module, batches: Any, epoch: int, phase: str, hooks: Hooks
) -> tuple[float, float]:
    training = phase == "train"
    total_loss, correct, seen = 0.0, 0, 0
    count = len(batches)
    for index, batch in enumerate(batches, start=1):
        hooks.check_stop()
        batch_loss = math.nan
        if batch is None and training and hooks.dist.distributed:
            raise TransferStudioError(
                "every image of a training batch failed to decode; with several processes every one must "
                "take each step: check the dataset with `transfer-studio scan`"
            )
        if batch is not None:  # None: every image of the batch failed to decode (counted by the cache)
            inputs, labels = batch
            batch_loss, n_correct = step_or_split(state, forward, inputs, labels, training, hooks)
            total_loss += batch_loss * labels.numel()
            correct += n_correct
            seen += labels.numel()
        hooks.batch_done(epoch, phase, index, count, batch_loss)
    if hooks.dist.distributed:  # every process's sums: exact metrics over the whole split
        total_loss, correct_sum, seen_sum = all_reduce_sums([total_loss, correct, seen], hooks.dist).tolist()
        correct, seen = round(correct_sum), round(seen_sum)
    if seen == 0:
        raise TransferStudioError(f"no {phase} image could be read; check the dataset")
    return total_loss / seen, correct / seen


def step_or_split(
    state: TrainingState,
    forward: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    training: bool,
    hooks: Hooks,
) -> tuple[float, int]:
    """One step; on CUDA out-of-memory, halve the batch size from now on and split this batch."""
    try:
        return _step(state, forward, inputs, labels, training)
    except torch.cuda.OutOfMemoryError:
        state.optimizer.zero_grad(set_to_none=True)
        if not batch_halving_allowed(hooks.dist, training):  # the processes' steps must stay in lockstep
            raise training_oom_error(hooks.dist, labels.numel()) from None
        half = halve_batch(state, hooks, training, current=labels.numel())
        results, sizes = [], []
        for i in range(0, labels.numel(), half):
            part = slice(i, i + half)
            results.append(step_or_split(state, forward, inputs[part], labels[part], training, hooks))
            sizes.append(labels[part].numel())
        loss = sum(r[0] * n for r, n in zip(results, sizes)) / labels.numel()
        return loss, sum(r[1] for r in results)


def _step(
    state: TrainingState, forward: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, training: bool
) -> tuple[float, int]:
    with state.autocast():
        main, aux = split_outputs(forward(inputs))
        criterion = state.train_criterion if training else state.criterion
        loss = criterion(main, labels)
        if training and aux:
            loss = loss + AUX_LOSS_WEIGHT * sum(criterion(a, labels) for a in aux)
    if training:
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
    return float(loss.detach()), int((main.argmax(1) == labels).sum())


def halve_batch(state: TrainingState, hooks: Hooks, training: bool, current: int | None = None) -> int:
    """Halve the training (or inference) batch size after CUDA ran out of memory; returns it."""
    if state.device.type == "cuda":
        torch.cuda.empty_cache()
    size = current or (state.batch_size if training else state.inference_batch)
    if size <= 1:
        raise TransferStudioError(
            "out of GPU memory even with a batch of one image; choose a smaller model or train on the CPU"
        )
    half = max(1, size // 2)
    if training:
        state.batch_size = half
    else:
        state.inference_batch = half
    kind = "batch size" if training else "inference batch size"
    hooks.warn(f"out of GPU memory: {kind} halved to {half}; the run goes on")
    return half


# -- checkpoints ----------------------------------------------------------------------------------


def save_checkpoint(state: TrainingState, epoch: int, checkpoints: CheckpointWriter) -> None:
    """Queue everything a resume needs to continue exactly after ``epoch``."""
    checkpoints.submit(
        {
            "epoch": epoch,
            "model": weights_snapshot(state.model, state.head_names, state.head_only),
            "optimizer": cpu_copy(state.optimizer.state_dict()),
            "scheduler": state.scheduler.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler.is_enabled() else {},
            "history": list(state.history),  # a copy: the next epoch appends while this is written
            "best_val_acc": state.best_val_acc,
            "best_epoch": state.best_epoch,
            "best_state": state.best_state,
            "classes": state.classes,
            "failed_images": state.failed_images,
            "config": state.config.to_dict(),
        }
    )


def restore_checkpoint(state: TrainingState, checkpoint: dict[str, Any], hooks: Hooks) -> int:
    """Load a checkpoint into ``state``; returns the first epoch still to run."""
    if list(checkpoint.get("classes", [])) != state.classes:
        raise TransferStudioError(
            "the dataset's classes changed since this run started; start a new run instead"
        )
    load_weights_snapshot(state.model, checkpoint["model"], state.head_names, state.head_only)
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint.get("scaler"):
        state.scaler.load_state_dict(checkpoint["scaler"])
    state.history = list(checkpoint["history"])
    state.best_val_acc = float(checkpoint["best_val_acc"])
    state.best_epoch = int(checkpoint["best_epoch"])
    state.best_state = checkpoint["best_state"]
    state.failed_images = int(checkpoint.get("failed_images", 0))
    epoch = int(checkpoint["epoch"])
    hooks.info(f"resuming after epoch {epoch} of {state.config.epochs}")
    return epoch + 1


# -- the end --------------------------------------------------------------------------------------


def _check_head(state: TrainingState) -> None:
    """Refuse to train another head than the configured one (the bundle records the built one)."""
    built, asked = head_spec_of(state.model), HeadSpec.from_config(state.config)
    if built != asked:
        raise TransferStudioError(
            f"the model was built with the {built.kind} head, not the {asked.kind} head of the run's settings"
        )


def _early_stopping(state: TrainingState, checkpoint: dict[str, Any] | None, hooks: Hooks) -> EarlyStopping:
    """Early stopping for this session, replayed from a resumed run's history.

    A run that already stopped early stays stopped (``stopped_at`` set: nothing left to train) unless
    more epochs are now asked for than its checkpoint planned; then its patience counts again.
    """
    config = state.config
    stopper = EarlyStopping.from_config(config)
    stopper.replay(state.history)
    if stopper.stopped_at is None or checkpoint is None:
        return stopper
    stopped_at = stopper.stopped_at
    planned = int(checkpoint.get("config", {}).get("epochs", config.epochs))
    if config.epochs > planned:
        stopper.restart(stopped_at)
        hooks.info(
            f"this run stopped early after epoch {stopped_at}; it goes on to epoch {config.epochs} as asked, "
            f"and early stopping counts {config.early_stopping_patience} epoch(s) again from here"
        )
    else:
        hooks.info(
            f"this run stopped early after epoch {stopped_at} of {planned}: nothing is left to train "
            f"(ask for more than {planned} epochs to go on)"
        )
    return stopper


def _finish(
    config: TrainConfig,
    run: RunDir,
    state: TrainingState | None,
    hooks: Hooks,
    cancelled: bool,
    stopped_early: bool = False,
) -> RunResult:
    """Save the best epoch's bundle (if any epoch finished) and report the run's end."""
    bundle_path = None
    if state is not None and state.best_state is not None:
        load_weights_snapshot(state.model, state.best_state, state.head_names, state.head_only)
        bundle = Bundle(
            architecture=config.model,
            class_names=state.classes,
            state_dict=cpu_copy(state.model.state_dict()),
            preprocessing=state.preprocessing,
            metrics={
                "best_val_acc": state.best_val_acc,
                "best_epoch": state.best_epoch,
                "epochs_completed": len(state.history),
                "stopped_early": stopped_early,
                "history": state.history,
            },
            config=config.to_dict(),
            head=head_spec_of(state.model),
        )
        bundle_path = save_bundle(run.bundle_path, bundle) if run.writes else run.bundle_path
    sync(hooks.dist, "saving the model")  # the other processes return once rank 0 saved it
    seconds = time.perf_counter() - hooks.start_time
    run.write_status(
        "stopped" if cancelled else "finished",
        ended=_now(),
        seconds=hooks.total_seconds(),
        stopped_early=stopped_early,
    )
    device = describe_device(state.device) if state is not None else config.device
    history = state.history if state is not None else []
    result = RunResult(
        run_dir=run.path,
        bundle_path=bundle_path,
        best_epoch=state.best_epoch if state is not None else 0,
        best_val_acc=max(state.best_val_acc, 0.0) if state is not None else 0.0,
        epochs_completed=len(history),
        epochs=config.epochs,
        seconds=seconds,
        device=device,
        cancelled=cancelled,
        history=history,
        stopped_early=stopped_early,
        world_size=hooks.dist.world_size,
    )
    hooks.emit(
        ev.RunFinished(
            best_epoch=result.best_epoch,
            best_val_acc=result.best_val_acc,
            epochs_completed=result.epochs_completed,
            seconds=seconds,
            bundle_path=str(bundle_path) if bundle_path else None,
            cancelled=cancelled,
            device=device,
            run_dir=str(run.path),
            stopped_early=stopped_early,
        )
    )
    return result
