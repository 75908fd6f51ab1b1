"""What one training run holds, declared in one place, and the caller it answers to.

:class:`TrainingState` is built once by :func:`engine.training.recipe.set_up` and then passed to the
trainer's small functions (one epoch of training, one evaluation pass, checkpoint save and restore).
:class:`Caller` carries the caller's two callables (``on_event`` and ``should_stop``), the processes of
the run and its ETA.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from engine.core.config import TrainConfig
from engine.core.errors import Cancelled, StopCheck
from engine.core.precision import autocast
from engine.core.rundir import RunDir
from engine.models.calibration import Calibration
from engine.models.preprocessing import Preprocessing
from engine.training import events as ev
from engine.training.distributed import Dist, agree_to_stop
from engine.training.eta import Eta

EventCallback = Callable[[ev.Event], None]


@dataclass
class TrainingState:
    """Everything a run trains with and everything that changes while it trains."""

    config: TrainConfig
    run: RunDir
    classes: list[str]
    device: torch.device
    model: nn.Module
    head_names: list[str]
    preprocessing: Preprocessing
    #: Makes the optimizer and its schedule, at their first use: torch.optim imports torch._dynamo
    #: (about 1 s) when an optimizer is first made, so a feature-extract run's first batch need not wait.
    make_optimizer: Callable[[], tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]]
    scaler: torch.amp.GradScaler
    criterion: nn.Module  # validation's loss (every image counts the same)
    train_criterion: nn.Module  # training's loss: class-weighted with balance "weights"
    balance: str  # "none", "weights" or "sampler" (config.balance resolved for this dataset)
    amp_dtype: torch.dtype | None  # None: full precision
    batch_size: int  # training batches; halved on CUDA out-of-memory
    inference_batch: int  # batches without gradients (features, validation); halved likewise
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics row per finished epoch
    best_val_acc: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights snapshot
    calibration: Calibration | None = None  # fitted at the end of the run (engine.training.calibrate)
    failed_images: int = 0  # images that could not be decoded so far
    #: Whether validation scores features of the fused backbone (engine.models.fusion): the bundle's ``fused``.
    features_fused: bool = False

    _optimizers: tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler] | None = field(
        default=None, init=False, repr=False
    )

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The run's optimizer (made at first use: :attr:`make_optimizer`)."""
        if self._optimizers is None:
            self._optimizers = self.make_optimizer()
        return self._optimizers[0]

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        """The learning-rate schedule of :attr:`optimizer`."""
        self.optimizer  # noqa: B018 - made together
        assert self._optimizers is not None
        return self._optimizers[1]

    @property
    def head_only(self) -> bool:
        """Whether only the heads learn (the backbone is frozen), so snapshots hold the heads alone."""
        return self.config.strategy == "feature-extract"

    @property
    def precision(self) -> str:
        """The compute dtype's name (``float32``, ``bfloat16`` or ``float16``): what the run records."""
        return str(self.amp_dtype or torch.float32).removeprefix("torch.")

    def autocast(self) -> torch.autocast:
        """Autocast to the run's precision (a no-op in float32)."""
        return autocast(self.device, self.amp_dtype)


class Caller:
    """Whoever started the run, as the run sees it: where its events go (``emit``, ``warn``, ``info``,
    ``batch_done``), whether it should stop (``check_stop``), the processes it trains with, and the
    clock and ETA that every batch updates."""

    def __init__(
        self, on_event: EventCallback | None, should_stop: StopCheck | None, dist: Dist | None = None
    ) -> None:
        self.emit: EventCallback = on_event or (lambda _event: None)
        self.should_stop: StopCheck = should_stop or (lambda: False)
        self.dist = dist or Dist.single()  # several processes: stops are agreed, so all stop together
        self.eta = Eta()
        self.start_time = time.perf_counter()
        self.earlier_seconds = 0.0  # time spent in earlier sessions of a resumed run
        self.features_cached = False  # every backbone feature came from the cache (no feature pass ran)

    def total_seconds(self) -> float:
        """Wall time of the run so far, earlier sessions included, rounded to milliseconds."""
        return round(self.earlier_seconds + time.perf_counter() - self.start_time, 3)

    def check_stop(self) -> None:
        """Raise :class:`~engine.core.errors.Cancelled` when the caller asked to stop (with several
        processes: when any of them was asked; every process calls this at the same steps)."""
        if agree_to_stop(self.should_stop(), self.dist):
            raise Cancelled("training stopped")

    def warn(self, text: str) -> None:
        self.emit(ev.Message("warning", text))

    def info(self, text: str) -> None:
        self.emit(ev.Message("info", text))

    def batch_done(
        self, epoch: int, phase: str, index: int, count: int, loss: float = math.nan, weight: int = 1
    ) -> None:
        """Record one finished batch of ``phase`` ("features", "train" or "val") and report it.

        ``weight``: how many units of work the batch was for the ETA (a feature batch: its views).
        """
        now = time.perf_counter()
        self.eta.record(phase, now, weight)
        self.emit(
            ev.BatchProgress(
                epoch=epoch,
                phase=phase,
                batch=index,
                batches=count,
                loss=loss,
                elapsed_s=now - self.start_time,
                eta_s=self.eta.seconds_left(),
            )
        )
