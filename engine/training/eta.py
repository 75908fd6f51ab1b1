"""Time left in a run, estimated from measured batches of each kind of work."""

from __future__ import annotations

import time

#: The kinds of batches a run times separately: feature caching (a backbone pass per image) costs far
#: more per batch than an epoch batch that trains only a head on cached features.
KINDS = ("features", "epoch")


class Eta:
    """Seconds left: for each kind, the batches still planned times the mean measured seconds per batch."""

    def __init__(self) -> None:
        self.planned = dict.fromkeys(KINDS, 0)
        self.done = dict.fromkeys(KINDS, 0)
        self.spent = dict.fromkeys(KINDS, 0.0)
        self.last = time.perf_counter()

    def restart_clock(self) -> None:
        """Start timing the next batch now (set-up work before it is not a batch)."""
        self.last = time.perf_counter()

    def record(self, kind: str, now: float) -> None:
        """One batch of ``kind`` finished at ``now`` (a ``time.perf_counter()`` value)."""
        self.done[kind] += 1
        self.spent[kind] += now - self.last
        self.last = now

    def seconds_left(self) -> float:
        rates = {k: self.spent[k] / self.done[k] for k in KINDS if self.done[k]}
        fallback = next(iter(rates.values()), 0.0)
        return sum(max(0, self.planned[k] - self.done[k]) * rates.get(k, fallback) for k in KINDS)
