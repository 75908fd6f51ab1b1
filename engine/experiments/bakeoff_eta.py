"""Time left in a whole bake-off: the running candidate's own estimate plus a price for each one to come.

The running candidate's seconds left come from its run (engine.training.eta, measured batch by batch).
A candidate not started yet is priced from what it will compute, counted before the bake-off starts in
*image passes*: one photo forward through the model at its input size, where a training step (forward
and backward) counts :data:`TRAIN_PASS` passes and a head-only epoch on cached features nothing. The
seconds per pass are measured on the candidates so far (finished ones by their wall time, the running
one by its elapsed time plus its own estimate), so a bake-off's first seconds already price the rest.
Another model is priced by its parameter count relative to the measured ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.core.config import TrainConfig
from engine.data.datasets import DatasetReport
from engine.models.registry import get_model_info
from engine.training.eta import TRAIN_PASS_PER_FORWARD

#: A training pass against a forward pass of the frozen backbone: the run's own ratio (engine.training.eta).
TRAIN_PASS = TRAIN_PASS_PER_FORWARD
#: The input size a pass is counted at; other sizes scale by their pixels.
REFERENCE_PX = 224


@dataclass(frozen=True)
class CandidateWork:
    """What one candidate will compute, in photos: through the frozen backbone once (the feature pass
    or fine-tuning's head-first pass), trained on (over all epochs) and validated on images (over all
    epochs); ``px`` its input size, ``params`` its model's parameter count."""

    feature_images: int
    train_images: int
    val_images: int
    px: int
    params: int

    def passes(self) -> float:
        """Image passes at :data:`REFERENCE_PX` (a training pass counts :data:`TRAIN_PASS`)."""
        scale = (self.px / REFERENCE_PX) ** 2
        return scale * (self.feature_images + TRAIN_PASS * self.train_images + self.val_images)


def candidate_work(
    config: TrainConfig, report: DatasetReport, *, views: int, input_px: int, cached_features: bool
) -> CandidateWork:
    """The work of training ``config`` on ``report``'s split: ``views`` cached views per training photo,
    at ``input_px``; ``cached_features`` when its head trains on cached backbone features."""
    n_train, n_val = len(report.splits["train"]), len(report.splits["val"])
    val_views = 2 if config.tta == "flip" else 1
    params = get_model_info(config.model).num_params
    if cached_features:
        return CandidateWork(views * n_train + val_views * n_val, 0, 0, input_px, params)
    head_first = n_train if config.strategy == "fine-tune" and config.head_first else 0
    return CandidateWork(
        head_first, config.epochs * n_train, config.epochs * val_views * n_val, input_px, params
    )


class BakeoffEta:
    """Seconds left in a bake-off of candidates with ``works`` (in their order)."""

    def __init__(self, works: list[CandidateWork]) -> None:
        self.works = list(works)
        self.seconds: dict[int, float] = {}  # finished (or stopped, failed) candidates' wall time
        self.skipped: set[int] = set()

    def skip(self, index: int) -> None:
        """Candidate ``index`` will not run (over the time budget, or the bake-off stopped)."""
        self.skipped.add(index)

    def ended(self, index: int, seconds: float, features_cached: bool = False) -> None:
        """Candidate ``index`` ended after ``seconds`` of wall time. One whose features came from the
        cache did less than it was counted for: its time prices nothing."""
        if features_cached:
            self.skip(index)
        else:
            self.seconds[index] = seconds

    def _per_pass(self, index: int, elapsed: float, left: float) -> float | None:
        """Seconds per image pass of a one-parameter model: measured on the finished candidates and the
        running one (``index``, ``elapsed`` so far, its own estimate ``left``)."""
        seconds = sum(self.seconds.values()) + elapsed + left
        passes = sum(self._params_passes(i) for i in self.seconds) + self._params_passes(index)
        return seconds / passes if passes > 0 and math.isfinite(seconds) else None

    def _params_passes(self, index: int) -> float:
        work = self.works[index]
        return work.passes() * work.params

    def seconds_left(self, index: int, elapsed: float, left: float) -> float:
        """Seconds left in the whole bake-off while candidate ``index`` runs, ``elapsed`` seconds into
        it, with ``left`` seconds left by its own estimate."""
        rate = self._per_pass(index, elapsed, left)
        later = [i for i in range(index + 1, len(self.works)) if i not in self.skipped]
        if rate is None:
            return left
        return left + sum(rate * self._params_passes(i) for i in later)
