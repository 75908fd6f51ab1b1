"""Events a training run reports to whoever drives it (the CLI's progress bar, the GUI's worker).

Plain frozen dataclasses, so they cross threads safely and are easy to assert on in tests.
Epoch numbers are 1-based.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunStarted:
    run_dir: str
    device: str
    classes: tuple[str, ...]
    num_train: int
    num_val: int
    epochs: int
    start_epoch: int
    batches_per_epoch: int


@dataclass(frozen=True)
class ScanProgress:
    """Files of the dataset checked so far, before training starts (the same check as ``scan``)."""

    done: int
    total: int


@dataclass(frozen=True)
class BatchProgress:
    epoch: int
    phase: str  # "train", "val" or "features" (feature caching)
    batch: int  # 1-based index of the batch just finished
    batches: int
    loss: float  # this batch's mean loss (nan when every image in it failed to decode)
    elapsed_s: float
    eta_s: float  # estimated seconds left in the whole run


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    epochs: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    is_best: bool


@dataclass(frozen=True)
class Message:
    level: str  # "info" or "warning"
    text: str


@dataclass(frozen=True)
class RunFinished:
    best_epoch: int
    best_val_acc: float
    epochs_completed: int
    seconds: float
    bundle_path: str | None  # None when cancelled before any epoch finished
    cancelled: bool
    device: str
    run_dir: str
    stopped_early: bool = False  # early stopping ended it before its planned epochs (epochs_completed)


@dataclass(frozen=True)
class RunFailed:
    message: str


Event = RunStarted | ScanProgress | BatchProgress | EpochEnd | Message | RunFinished | RunFailed
