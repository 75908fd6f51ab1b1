"""A run directory on disk: config, per-epoch metrics, the resumable checkpoint and the model bundle.

Layout::

    RUN_DIR/config.json      the TrainConfig and the dataset path
    RUN_DIR/metrics.jsonl    one JSON object per finished epoch
    RUN_DIR/checkpoint.pt    state after the last finished epoch (what --resume continues from)
    RUN_DIR/model.pt         the bundle with the best epoch's weights

Every file is written atomically (temporary file + rename), so a crash or a full disk never leaves a
half-written checkpoint in place of the previous good one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from engine.errors import TransferStudioError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
BUNDLE_FILE = "model.pt"


def default_runs_root() -> Path:
    """Where new runs go: ``$TRANSFER_STUDIO_RUNS`` or ``~/TransferStudio/runs``."""
    env = os.environ.get("TRANSFER_STUDIO_RUNS")
    return Path(env).expanduser() if env else Path.home() / "TransferStudio" / "runs"


def new_run_dir(model: str, strategy: str, root: Path | None = None) -> Path:
    """A fresh, not yet existing run directory named after the time, model and strategy."""
    root = root or default_runs_root()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = root / f"{stamp}-{model}-{strategy}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{model}-{strategy}-{n}"
    return candidate


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` that never leaves a partial file at ``path``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


class RunDir:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def bundle_path(self) -> Path:
        return self.path / BUNDLE_FILE

    def write_config(self, config: dict[str, Any], data_root: Path) -> None:
        payload = {"config": config, "data_root": str(data_root)}
        atomic_write_text(self.config_path, json.dumps(payload, indent=2) + "\n")

    def read_config(self) -> tuple[dict[str, Any], Path]:
        """The saved config dict and dataset path; TransferStudioError if missing or unreadable."""
        try:
            payload = json.loads(self.config_path.read_text(encoding="utf-8"))
            return payload["config"], Path(payload["data_root"])
        except FileNotFoundError:
            raise TransferStudioError(f"{self.path} is not a run directory (no {CONFIG_FILE})") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise TransferStudioError(f"{self.config_path} is damaged: {exc}") from None

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite the metrics file with ``rows`` (one per finished epoch)."""
        text = "".join(json.dumps(row) + "\n" for row in rows)
        atomic_write_text(self.metrics_path, text)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_torch_save(state, self.checkpoint_path)

    def remove_stale_temp_files(self) -> None:
        """Delete temporary files left by a write that a crash or kill cut off."""
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self) -> dict[str, Any]:
        """The last checkpoint (weights_only: loading never runs code)."""
        if not self.checkpoint_path.exists():
            raise TransferStudioError(f"{self.path} has no checkpoint to resume from")
        try:
            return torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
            raise TransferStudioError(f"cannot read {self.checkpoint_path}: {exc}") from None


def cpu_copy(obj: Any) -> Any:
    """A deep copy of nested dicts/lists whose tensors are detached CPU copies (safe to save later)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


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
