"""Weight snapshots and resumable checkpoints, written on a background thread so training never waits.

A snapshot holds the weights that can change: the whole model's, or the head's alone when the
backbone is frozen (feature extraction). Loading one back is strict: a snapshot whose keys or shapes
do not match the model raises instead of leaving some layers silently untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

import torch
from torch import nn

from engine.core.errors import TransferStudioError
from engine.core.files import cpu_copy
from engine.core.rundir import RunDir
from engine.training.strategies import is_head_parameter

log = logging.getLogger(__name__)


def weights_snapshot(model: nn.Module, head_names: list[str], head_only: bool) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's state: every tensor, or only the heads' when ``head_only``."""
    state = model.state_dict()
    if head_only:
        state = {k: v for k, v in state.items() if is_head_parameter(k, head_names)}
    return cpu_copy(state)


def load_weights_snapshot(
    model: nn.Module, snapshot: dict[str, torch.Tensor], head_names: list[str], head_only: bool
) -> None:
    """Load a :func:`weights_snapshot` back; TransferStudioError when it does not fit the model exactly."""
    own = model.state_dict()
    expected = {k for k in own if is_head_parameter(k, head_names)} if head_only else set(own)
    missing, unexpected = sorted(expected - set(snapshot)), sorted(set(snapshot) - expected)
    resized = sorted(k for k in expected & set(snapshot) if own[k].shape != snapshot[k].shape)
    if missing or unexpected or resized:
        details = [
            f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", resized))
            if keys
        ]
        raise TransferStudioError(
            f"the saved weights do not fit this model ({'; '.join(details)}); start a new run instead"
        )
    model.load_state_dict(snapshot, strict=not head_only)


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
        self._pending: Future[None] | None = None

    def submit(self, state: dict[str, Any]) -> None:
        """Queue ``state`` (already copied to the CPU) to be written atomically."""
        self._wait()
        self._pending = self._pool.submit(self.run.save_checkpoint, state)

    def close(self) -> None:
        self._wait()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _wait(self) -> None:
        if self._pending is None:
            return
        try:
            self._pending.result()
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
            log.warning("checkpoint not written: %s", exc)
            self.on_error(f"could not write the checkpoint ({exc}); the previous one is kept")
        finally:
            self._pending = None
