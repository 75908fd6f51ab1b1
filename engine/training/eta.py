"""Time left in a run, estimated from measured batches of each phase.

A run has up to three kinds of batches with very different costs: the feature pass (the backbone over
each image view, once), training batches and validation batches. Each kind's seconds per batch is
measured as it runs; a kind not measured yet is priced from one that was, by a ratio that reflects
what it computes:

- on cached features, an epoch trains and validates only the head: a tiny fraction of a feature batch;
- on images, a training batch (forward and backward) costs about three validation batches (forward).

So from the first feature batches on, the estimate no longer prices cheap head-only epochs like
feature batches (which once showed "about 9 minutes left" for a run that took 37 s).
"""

from __future__ import annotations

import time

KINDS = ("features", "train", "val")
#: Seconds per batch of one kind relative to another, used until the kind itself is measured.
#: A head-only batch on cached features against one backbone pass over a feature batch: lite0 on a
#: 2-core CPU measured about 0.2% (tests/data/eta_cold_feature_extract.json); on a GPU, where the
#: backbone is cheaper, the share is larger: 0.5% errs on the safe side of both.
HEAD_BATCH_PER_FEATURE_BATCH = 0.005
#: On images: forward+backward against forward alone.
TRAIN_BATCH_PER_VAL_BATCH = 3.0


class Eta:
    """Seconds left: for each kind, the batches still planned times its (measured or derived) rate."""

    def __init__(self, cached_features: bool = False) -> None:
        self.cached_features = cached_features
        self.planned = dict.fromkeys(KINDS, 0)
        self.done = dict.fromkeys(KINDS, 0)
        self.spent = dict.fromkeys(KINDS, 0.0)
        self.last = time.perf_counter()

    def plan(self, *, features: int, train: int, val: int, cached_features: bool) -> None:
        """The work the run will do: batches of training and validation, and units of feature work
        (a feature batch times its views; 0 when the run trains on images)."""
        self.planned = {"features": features, "train": train, "val": val}
        self.cached_features = cached_features

    def restart_clock(self) -> None:
        """Start timing the next batch now (set-up work before it is not a batch)."""
        self.last = time.perf_counter()

    def record(self, kind: str, now: float, weight: int = 1) -> None:
        """One batch of ``kind`` finished at ``now`` (a ``time.perf_counter()`` value).

        ``weight`` counts it as that many units of work: a feature batch of the training split computes
        one backbone pass per cached view, so it weighs as many units as there are views.
        """
        self.done[kind] += weight
        self.spent[kind] += now - self.last
        self.last = now

    def rate(self, kind: str) -> float | None:
        """Seconds per batch of ``kind``: measured, else derived from a measured kind, else None."""
        measured = {k: self.spent[k] / self.done[k] for k in KINDS if self.done[k]}
        if kind in measured:
            return measured[kind]
        if self.cached_features and kind in ("train", "val"):
            other = "val" if kind == "train" else "train"
            if other in measured:  # the other head-only kind: the closest in cost
                return measured[other]
            if "features" in measured:
                return measured["features"] * HEAD_BATCH_PER_FEATURE_BATCH
        if kind == "train" and "val" in measured:
            return measured["val"] * TRAIN_BATCH_PER_VAL_BATCH
        if kind == "val" and "train" in measured:
            return measured["train"] / TRAIN_BATCH_PER_VAL_BATCH
        return next(iter(measured.values()), None)

    def seconds_left(self) -> float:
        total = 0.0
        for kind in KINDS:
            left = max(0, self.planned[kind] - self.done[kind])
            if left:
                total += left * (self.rate(kind) or 0.0)
        return total
