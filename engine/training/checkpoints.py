"""Resumable checkpoints written on a background thread, so training never waits on the disk."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from engine.core.rundir import RunDir

log = logging.getLogger(__name__)


class CheckpointWriter:
    """Writes checkpoints on a background thread, one at a time, so training never waits on the disk.

    ``submit`` first waits for the previous write, so at most one is in flight and each epoch's
    checkpoint lands in order. A failed write (a full disk, say) leaves the previous checkpoint in place
    and is reported by the next ``submit`` or ``close`` through ``on_error``.
    """

    def __init__(self, run: RunDir, on_error: Callable[[str], None]) -> None:
        self.run = run
        self.on_error = on_error
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: Future | None = None

    def submit(self, state: dict[str, Any]) -> None:
        """Queue ``state`` (already copied to the CPU) to be written atomically."""
        self._wait()
        self._pending = self._pool.submit(self.run.save_checkpoint, state)

    def close(self) -> None:
        self._wait()
        self._pool.shutdown(wait=True)

    def _wait(self) -> None:
        if self._pending is None:
            return
        try:
            self._pending.result()
        except OSError as exc:
            log.warning("checkpoint not written: %s", exc)
            self.on_error(f"could not write the checkpoint ({exc}); the previous one is kept")
        finally:
            self._pending = None
