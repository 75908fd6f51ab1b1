"""Events a training run reports to whoever drives it (the CLI's progress bar, the GUI's worker).

Plain frozen dataclasses, so they cross threads safely and are easy to assert on in tests.
Epoch numbers are 1-based. :func:`to_json` / :func:`from_json` carry them across processes (a
multi-process run's rank 0 writes them as JSON lines for the window that launched it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


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


_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (RunStarted, ScanProgress, BatchProgress, EpochEnd, Message, RunFinished, RunFailed)
}


def to_json(event: Event) -> dict[str, Any]:
    """``{"event": <class name>, **fields}``, JSON-able (NaN and infinities become null)."""
    fields = {
        name: (None if isinstance(value, float) and not math.isfinite(value) else value)
        for name, value in dataclasses.asdict(event).items()
    }
    return {"event": type(event).__name__, **fields}


def from_json(payload: dict[str, Any]) -> Event:
    """The event :func:`to_json` described (null floats come back as NaN); ValueError when unknown."""
    kind = _EVENT_TYPES.get(str(payload.get("event")))
    if kind is None:
        raise ValueError(f"unknown event {payload.get('event')!r}")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(kind):
        if field.name not in payload:
            continue
        value = payload[field.name]
        if value is None and field.type in ("float", float):
            value = math.nan
        elif isinstance(value, list):
            value = tuple(value)
        values[field.name] = value
    event: Event = kind(**values)
    return event
