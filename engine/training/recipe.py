"""A run's recipe: the model with its new head, the optimizer and its parameter groups, the learning-rate
schedule with warm-up, the loss (class-weighted when asked), the precision, the batch sizes and the
preprocessing at the run's input size. :func:`set_up` gathers them into one
:class:`~engine.training.state.TrainingState`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from engine.core.config import INPUT_SIZE_AUTO, ConfigError, TrainConfig
from engine.core.device import is_accelerator
from engine.core.memory import fit_batch
from engine.core.precision import PRECISION_NAMES, Precision, for_bundle, resolve_precision
from engine.core.rundir import RunDir
from engine.data.datasets import DatasetReport
from engine.models.build import build_model
from engine.models.heads import HeadSpec
from engine.models.preprocessing import Preprocessing
from engine.models.registry import get_model_info
from engine.training.data_path import auto_input_size
from engine.training.state import TrainingState
from engine.training.strategies import parameter_groups

log = logging.getLogger(__name__)


def set_up(
    config: TrainConfig,
    report: DatasetReport,
    run: RunDir,
    device: torch.device,
    warn: Callable[[str], None] | None = None,
    precision: Precision | None = None,
) -> TrainingState:
    """The model with its new head on ``device``, its optimizer, schedule, precision and loss.

    ``precision``: what the run computes in (:func:`run_precision`); by default the config's setting
    resolved on ``device``.

    On the CPU the batches are fitted to the memory that is free (:func:`engine.core.memory.fit_batch`;
    ``warn`` hears when one is halved); a GPU halves them when it runs out instead.
    """
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

    def make_optimizers() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        optimizer = make_optimizer(model, head_names, config)
        return optimizer, make_scheduler(optimizer, config)

    amp_dtype = (precision or run_precision(config, device, None)).dtype
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
        make_optimizer=make_optimizers,
        scaler=torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp_dtype == torch.float16),
        criterion=criterion,
        train_criterion=train_criterion,
        balance=balance,
        amp_dtype=amp_dtype,
        batch_size=_fitted(
            config.batch_size, preprocessing, device, config.strategy != "feature-extract", warn
        ),
        inference_batch=_fitted(
            inference_batch_size(config.batch_size, device), preprocessing, device, False, warn
        ),
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
    if size and size % info.size_multiple:
        rounded = max(info.min_input_size, round(size / info.size_multiple) * info.size_multiple)
        log.info(
            "%s takes input sizes in multiples of %d px (its patch size): %d px becomes %d px",
            config.model, info.size_multiple, size, rounded,
        )  # fmt: skip
        size = rounded
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


def run_precision(config: TrainConfig, device: torch.device, checkpoint: dict[str, Any] | None) -> Precision:
    """What a run computes in: a resumed run what its checkpoint records (a run from before precisions
    were recorded: float32 on a CPU, mixed precision on a GPU, as it began), else its setting on
    ``device`` (:func:`engine.core.precision.resolve_precision`)."""
    if checkpoint is None:
        return resolve_precision(
            config.precision, device, trains_backbone=config.strategy != "feature-extract"
        )
    recorded = checkpoint.get("precision")
    if isinstance(recorded, str) and recorded in PRECISION_NAMES:
        return for_bundle(recorded, device)
    if device.type in ("cuda", "xpu"):
        return resolve_precision("auto", device)
    return Precision(None, "the run began before precisions were recorded, in float32")


def inference_batch_size(batch_size: int, device: torch.device) -> int:
    """Batch size for passes without gradients (features, validation): larger on a GPU, where it is cheap.

    On a CPU, the batch this machine's sweep found fastest (:func:`engine.core.machine.cpu_inference_choice`;
    bigger batches barely speed up inference there but cost memory: lite0 at 64 images, +1.3 GB).
    """
    if is_accelerator(device):
        return max(batch_size, 256)
    from engine.core.machine import cpu_inference_choice

    return int(cpu_inference_choice()["batch"])


def _fitted(
    batch: int,
    preprocessing: Preprocessing,
    device: torch.device,
    training: bool,
    warn: Callable[[str], None] | None,
) -> int:
    """``batch`` fitted to the free memory on the CPU (whole images that train need the most)."""
    if device.type != "cpu":
        return batch
    what = "the training batch" if training else "the inference batch"
    return fit_batch(batch, preprocessing.crop_size, training=training, what=what, warn=warn)
