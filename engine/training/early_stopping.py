"""Early stopping: end a run once its validation metric has stopped improving.

``TrainConfig.early_stopping_patience = N`` (0: off) ends the run after N epochs in a row without a
better ``early_stopping_metric`` on the validation split: the mean ``loss`` by default (lower is
better; on a small validation split it moves smoothly where accuracy moves in coarse steps and
often ties), or the ``accuracy`` (higher is better). Any improvement counts, however small; a NaN
loss never does.

Stopping only decides *when* the run ends. Which weights the bundle keeps does not change: always the
epoch with the best validation accuracy (the first of equals), as for any run
(:func:`engine.core.rundir.best_epoch`).

The decision is a function of the metrics history alone, so a resumed run rebuilds it by
:meth:`EarlyStopping.replay` and needs nothing more in its checkpoint. A run that stopped early is
finished: resuming it trains no further unless more epochs are asked for than it had planned, and
then the patience counts again from the resumed epoch. A stop that was later followed by more epochs
(in the history) is replayed the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.core.config import TrainConfig


@dataclass
class EarlyStopping:
    """Tracks the best value of the watched metric and the epochs since it last improved."""

    patience: int  # 0: never stop
    metric: str = "loss"  # "loss" or "accuracy"
    best: float | None = None  # the best value so far
    best_epoch: int = 0  # the epoch that reached it
    since: int = 0  # the epoch the patience counts from (the best epoch, or a restart)
    stopped_at: int | None = None  # the epoch after which the run stops (None: it goes on)

    @classmethod
    def from_config(cls, config: TrainConfig) -> EarlyStopping:
        return cls(config.early_stopping_patience, config.early_stopping_metric)

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    def value_of(self, row: Mapping[str, Any]) -> float:
        """The watched metric of one metrics row (``val_loss`` or ``val_acc``)."""
        return float(row["val_loss" if self.metric == "loss" else "val_acc"])

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.metric == "loss" else value > self.best

    def update(self, epoch: int, row: Mapping[str, Any]) -> bool:
        """Record finished ``epoch``'s metrics row; True when the run should stop after it."""
        value = self.value_of(row)
        if self._improves(value):
            self.best, self.best_epoch, self.since = value, epoch, epoch
        if self.enabled and self.stopped_at is None and epoch - self.since >= self.patience:
            self.stopped_at = epoch
        return self.stopped_at == epoch

    def restart(self, epoch: int) -> None:
        """Go on after a stop (more epochs were asked for): the patience counts again from ``epoch``."""
        self.since = max(self.since, epoch)
        self.stopped_at = None

    def replay(self, history: Iterable[Mapping[str, Any]]) -> None:
        """Rebuild the state from a run's metrics rows (a resume). A stop followed by more epochs in
        the history was overridden by a request for more epochs: the patience restarted there."""
        for row in history:
            epoch = int(row["epoch"])
            if self.stopped_at is not None:
                self.restart(self.stopped_at)
            self.update(epoch, row)

    def describe_stop(self, epochs: int) -> str:
        """The message that says why the run ended after epoch ``stopped_at`` of ``epochs``."""
        what = "validation loss" if self.metric == "loss" else "validation accuracy"
        best = f"{self.best:.4f}" if self.metric == "loss" and self.best is not None else _pct(self.best)
        return (
            f"early stopping: the {what} has not improved for {self.patience} epoch(s) "
            f"(best {best} at epoch {self.best_epoch}); the run ends after epoch {self.stopped_at} of {epochs}"
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
