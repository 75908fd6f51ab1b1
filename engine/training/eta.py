"""Time left in a run, estimated from measured batches of each phase.

A run has up to three kinds of batches with very different costs: the feature pass (the backbone over
each image view, once), training batches and validation batches. Each kind's seconds per batch is
measured as it runs; a kind not measured yet is priced from one that was, by a ratio that reflects
what it computes:

- on cached features, an epoch trains and validates only the head: a tiny fraction of a feature batch;
- on images, a photo's training step (forward and backward) costs about three of its forward passes,
  and a validation batch costs what a feature batch of as many photos does (both are forward passes).

So from the first feature batches on, the estimate no longer prices cheap head-only epochs like
feature batches (which once showed "about 9 minutes left" for a run that took 37 s), and fine-tuning's
first feature batches (the head-first fit's pass) already price its epochs. On images, a kind's own
measurement is blended with that price for its first batches (:data:`PRIOR_BATCHES`): the first
training batch alone, slowed by one-off work, once tripled the estimate of a fine-tune run.
"""

from __future__ import annotations

import time

KINDS = ("features", "train", "val")
#: Seconds per batch of one kind relative to another, used until the kind itself is measured.
#: A head-only batch on cached features against one backbone pass over a feature batch: lite0 on a
#: 2-core CPU measured about 0.2% (tests/data/eta_cold_feature_extract.json); on a GPU, where the
#: backbone is cheaper, the share is larger: 0.5% errs on the safe side of both.
HEAD_BATCH_PER_FEATURE_BATCH = 0.005
#: On images, per photo: a training step (forward, backward, the optimizer's step, augmentation)
#: against a forward pass (decoding included). lite0 on a 2-core CPU measured 3.3
#: (tests/data/eta_fine_tune.json: 1.5 s per training batch of 32, 0.45 s per feature batch of 32).
TRAIN_PASS_PER_FORWARD = 3.3
#: On images, how many batches' worth of the derived price a kind's first measurements are blended with.
PRIOR_BATCHES = 2.0


class Eta:
    """Seconds left: for each kind, the batches still planned times its (measured or derived) rate."""

    def __init__(self, cached_features: bool = False) -> None:
        self.cached_features = cached_features
        self.planned = dict.fromkeys(KINDS, 0)
        self.done = dict.fromkeys(KINDS, 0)
        self.spent = dict.fromkeys(KINDS, 0.0)
        self.first: dict[str, tuple[float, int]] = dict.fromkeys(KINDS, (0.0, 0))  # each kind's first batch
        self.last = time.perf_counter()
        self.train_batch = 1  # photos per training batch
        self.inference_batch = 1  # photos per feature or validation batch
        self.val_views = 1  # forward passes per validation photo

    def plan(
        self,
        *,
        features: int,
        train: int,
        val: int,
        cached_features: bool,
        train_batch: int = 1,
        inference_batch: int = 1,
        val_views: int = 1,
    ) -> None:
        """The work the run will do: batches of training and validation, and units of feature work
        (a feature batch times its views; 0 when the run trains on images); the photos per training
        batch and per batch without gradients (features, validation), and the views each validation
        photo is run through (2 with flip test-time augmentation)."""
        self.planned = {"features": features, "train": train, "val": val}
        self.cached_features = cached_features
        self.train_batch, self.inference_batch = max(1, train_batch), max(1, inference_batch)
        self.val_views = max(1, val_views)

    def restart_clock(self) -> None:
        """Start timing the next batch now (set-up work before it is not a batch)."""
        self.last = time.perf_counter()

    def record(self, kind: str, now: float, weight: int = 1) -> None:
        """One batch of ``kind`` finished at ``now`` (a ``time.perf_counter()`` value).

        ``weight`` counts it as that many units of work: a feature batch of the training split computes
        one backbone pass per cached view, so it weighs as many units as there are views.
        """
        if not self.done[kind]:
            self.first[kind] = (now - self.last, weight)
        self.done[kind] += weight
        self.spent[kind] += now - self.last
        self.last = now

    def _cost(self, kind: str) -> float:
        """One unit of ``kind`` in forward passes of a photo (its price relative to the other kinds)."""
        if self.cached_features and kind != "features":
            return HEAD_BATCH_PER_FEATURE_BATCH * self.inference_batch
        if kind == "train":
            return TRAIN_PASS_PER_FORWARD * self.train_batch
        if kind == "val":
            return float(self.inference_batch * self.val_views)
        return float(self.inference_batch)

    def _measured(self, kind: str) -> tuple[float, float] | None:
        """Seconds per unit of ``kind`` as measured, and over how many units. On images a kind's first
        batch carries one-off work (the first backward pass, the loader starting) and counts only
        until a second one is measured."""
        if not self.done[kind]:
            return None
        first_spent, first_units = self.first[kind]
        if not self.cached_features and self.done[kind] > first_units:
            units = self.done[kind] - first_units
            return (self.spent[kind] - first_spent) / units, units
        return self.spent[kind] / self.done[kind], self.done[kind]

    def _derived(self, kind: str) -> float | None:
        """Seconds per unit of ``kind`` priced from the measured kinds (the closest in cost first)."""
        measured = [k for k in KINDS if k != kind and self.done[k]]
        if self.cached_features and kind != "features":
            measured.sort(key=lambda k: k == "features")  # the other head-only kind first
        for other in measured:
            rate, _units = self._measured(other) or (0.0, 0)
            return rate * self._cost(kind) / self._cost(other)
        return None

    def rate(self, kind: str) -> float | None:
        """Seconds per batch of ``kind``: measured, else derived from a measured kind, else None.

        On images, a kind's own measurement is blended with the derived price, worth
        :data:`PRIOR_BATCHES` batches, and its first batch alone gives way to the derived price."""
        derived = self._derived(kind)
        measured = self._measured(kind)
        if measured is None:
            return derived
        own, units = measured
        if derived is None or self.cached_features:
            return own
        if units == self.done[kind] and self.done[kind] == self.first[kind][1]:  # the first batch only
            return derived
        return (own * units + PRIOR_BATCHES * derived) / (units + PRIOR_BATCHES)

    def seconds_left(self) -> float:
        total = 0.0
        for kind in KINDS:
            left = max(0, self.planned[kind] - self.done[kind])
            if left:
                total += left * (self.rate(kind) or 0.0)
        return total
