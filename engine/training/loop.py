"""The training loop: one epoch of training, one validation pass, the step that halves its batch on
CUDA out-of-memory, and the checkpoint that lets a run resume exactly after any finished epoch.

The functions read like torchvision's reference script (``train_one_epoch``, ``evaluate``); each takes
the run's :class:`~engine.training.state.TrainingState`, its data path and its :class:`~engine.training.state.Caller`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from engine.core.errors import TransferStudioError
from engine.core.files import cpu_copy
from engine.data.datasets import DatasetReport
from engine.models.heads import split_outputs
from engine.training import events as ev
from engine.training.checkpoints import CheckpointWriter, load_weights_snapshot, weights_snapshot
from engine.training.data_path import DataPath, cacheable_head, feature_views
from engine.training.distributed import (
    agree_batch_size,
    all_reduce_sums,
    batch_halving_allowed,
    training_oom_error,
    unwrap,
)
from engine.training.head_fit import HEAD_FIRST_VIEWS, head_first_applies
from engine.training.state import Caller, TrainingState

AUX_LOSS_WEIGHT = 0.4


def plan_eta(state: TrainingState, report: DatasetReport, start_epoch: int, caller: Caller) -> None:
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
    caller.eta.plan(
        features=feature_work,
        train=epochs * math.ceil(n_train / state.batch_size),
        val=epochs * math.ceil(n_val / state.inference_batch),
        cached_features=cached,
        train_batch=state.batch_size,
        inference_batch=state.inference_batch,
        val_views=val_views,
    )


def run_epoch(
    state: TrainingState, data: DataPath, epoch: int, caller: Caller, checkpoints: CheckpointWriter
) -> None:
    """Train, validate, keep the best weights, write metrics and a checkpoint, report the epoch."""
    started = time.perf_counter()
    # Seeded from (seed, epoch), so a resumed run draws the same numbers as an uninterrupted one.
    torch.manual_seed(state.config.seed * 100_003 + epoch)
    generator = torch.Generator().manual_seed(state.config.seed * 100_003 + epoch)
    failed_before = state.failed_images
    train_loss, train_acc = train_one_epoch(state, data, epoch, generator, caller)
    val_loss, val_acc = evaluate(state, data, epoch, caller)
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
        caller.warn(f"{state.failed_images - failed_before} image(s) could not be decoded and were skipped")
    caller.emit(
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
    state: TrainingState, data: DataPath, epoch: int, generator: torch.Generator, caller: Caller
) -> tuple[float, float]:
    """One pass over the training split with gradient steps; returns (mean loss, accuracy)."""
    data.set_mode(training=True)
    batches = data.batches(
        "train", state.batch_size, generator, balanced=state.balance == "sampler", dist=caller.dist
    )
    return _pass(state, data.forward, batches, epoch, "train", caller)


def evaluate(state: TrainingState, data: DataPath, epoch: int, caller: Caller) -> tuple[float, float]:
    """One pass over the validation split without gradients; returns (mean loss, accuracy)."""
    data.set_mode(training=False)
    state.inference_batch = agree_batch_size(state.inference_batch, caller.dist)
    batches = data.batches("val", state.inference_batch, torch.Generator(), dist=caller.dist)
    with torch.no_grad():
        return _pass(state, unwrap(data.forward), batches, epoch, "val", caller)


def _pass(
    state: TrainingState, forward: nn.Module, batches: Any, epoch: int, phase: str, caller: Caller
) -> tuple[float, float]:
    training = phase == "train"
    total_loss, correct, seen = 0.0, 0, 0
    count = len(batches)
    for index, batch in enumerate(batches, start=1):
        caller.check_stop()
        batch_loss = math.nan
        if batch is None and training and caller.dist.distributed:
            raise TransferStudioError(
                "every image of a training batch failed to decode; with several processes every one must "
                "take each step: check the dataset with `transfer-studio scan`"
            )
        if batch is not None:  # None: every image of the batch failed to decode (counted by the cache)
            inputs, labels = batch
            batch_loss, n_correct = step_or_split(state, forward, inputs, labels, training, caller)
            if training and not math.isfinite(batch_loss):
                raise TransferStudioError(
                    f"training diverged in epoch {epoch}: the loss is no longer a number; lower the learning "
                    f"rate (it is {state.config.lr:g}) and start again"
                )
            total_loss += batch_loss * labels.numel()
            correct += n_correct
            seen += labels.numel()
        caller.batch_done(epoch, phase, index, count, batch_loss)
    if caller.dist.distributed:  # every process's sums: exact metrics over the whole split
        total_loss, correct_sum, seen_sum = all_reduce_sums([total_loss, correct, seen], caller.dist).tolist()
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
    caller: Caller,
) -> tuple[float, int]:
    """One step; on CUDA out-of-memory, halve the batch size from now on and split this batch."""
    try:
        return _step(state, forward, inputs, labels, training)
    except torch.cuda.OutOfMemoryError:
        state.optimizer.zero_grad(set_to_none=True)
        if not batch_halving_allowed(caller.dist, training):  # the processes' steps must stay in lockstep
            raise training_oom_error(caller.dist, labels.numel()) from None
        half = halve_batch(state, caller, training, current=labels.numel())
        results, sizes = [], []
        for i in range(0, labels.numel(), half):
            part = slice(i, i + half)
            results.append(step_or_split(state, forward, inputs[part], labels[part], training, caller))
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


def halve_batch(state: TrainingState, caller: Caller, training: bool, current: int | None = None) -> int:
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
    caller.warn(f"out of GPU memory: {kind} halved to {half}; the run goes on")
    return half


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
            "precision": state.precision,  # what a resume computes in
        }
    )


def restore_checkpoint(state: TrainingState, checkpoint: dict[str, Any], caller: Caller) -> int:
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
    caller.info(f"resuming after epoch {epoch} of {state.config.epochs}")
    return epoch + 1
