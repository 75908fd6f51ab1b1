"""A run directory on disk: config, per-epoch metrics, the resumable checkpoint and the model bundle.

Layout::

    RUN_DIR/config.json      the TrainConfig and the dataset path
    RUN_DIR/metrics.jsonl    one JSON object per finished epoch
    RUN_DIR/checkpoint.pt    state after the last finished epoch (what --resume continues from)
    RUN_DIR/model.pt         the bundle with the best epoch's weights
    RUN_DIR/status.json      running / finished / stopped / failed, with start and end times
    RUN_DIR/note.json        the name and note a user gave the run (optional)

Every file is written atomically (temporary file + rename), so a crash or a full disk never leaves a
half-written checkpoint in place of the previous good one. Importing this module does not import torch.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from engine.core.errors import TransferStudioError
from engine.core.files import atomic_torch_save, atomic_write_text
from engine.core.locations import default_runs_root

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
BUNDLE_FILE = "model.pt"
STATUS_FILE = "status.json"
NOTE_FILE = "note.json"
#: In a bake-off folder (engine.experiments.bakeoff), beside its run folders.
LEADERBOARD_FILE = "leaderboard.json"


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


class RunDir:
    """Reads and writes the files of one run directory.

    ``writes=False`` makes every write a no-op: the other processes of a multi-process run share rank
    0's folder but never write to it.
    """

    def __init__(self, path: str | Path, *, writes: bool = True) -> None:
        self.path = Path(path)
        self.writes = writes

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

    def is_resumable(self) -> bool:
        """Whether the folder holds a run that ``resume`` can continue (a config and a checkpoint)."""
        return self.config_path.is_file() and self.checkpoint_path.is_file()

    def write_config(self, config: dict[str, Any], data_root: Path) -> None:
        if not self.writes:
            return
        payload = {"config": config, "data_root": str(data_root)}
        atomic_write_text(self.config_path, json.dumps(payload, indent=2) + "\n")

    def record_dataset(self, dataset: dict[str, Any]) -> None:
        """Add what the run trained on (images, exclusions, class balance) to ``config.json``."""
        if not self.writes:
            return
        payload = json.loads(self.config_path.read_text(encoding="utf-8"))
        payload["dataset"] = dataset
        atomic_write_text(self.config_path, json.dumps(payload, indent=2) + "\n")

    def read_dataset(self) -> dict[str, Any]:
        """What :meth:`record_dataset` wrote (empty for runs of earlier versions)."""
        try:
            payload = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        dataset = payload.get("dataset") if isinstance(payload, dict) else None
        return dataset if isinstance(dataset, dict) else {}

    def read_config(self) -> tuple[dict[str, Any], Path]:
        """The saved config dict and dataset path; TransferStudioError if missing or unreadable."""
        try:
            payload = json.loads(self.config_path.read_text(encoding="utf-8"))
            return payload["config"], Path(payload["data_root"])
        except FileNotFoundError:
            raise TransferStudioError(f"{self.path} is not a run directory (no {CONFIG_FILE})") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise TransferStudioError(f"{self.config_path} is damaged: {exc}") from None

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def note_path(self) -> Path:
        return self.path / NOTE_FILE

    def write_status(self, status: str, **details: Any) -> None:
        """Record the run's state: "running" (with the process id), "finished", "stopped" or "failed".

        Keeps the fields of the previous status (e.g. when it started) that ``details`` does not replace.
        """
        if not self.writes:
            return
        payload = {**self.read_status(), **details, "status": status}
        atomic_write_text(self.status_path, json.dumps(payload, indent=2) + "\n")

    def read_status(self) -> dict[str, Any]:
        """The last written status, or {} when there is none or it cannot be read."""
        try:
            payload = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return payload if isinstance(payload, dict) else {}

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite the metrics file with ``rows`` (one per finished epoch)."""
        if not self.writes:
            return
        text = "".join(json.dumps(row) + "\n" for row in rows)
        atomic_write_text(self.metrics_path, text)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        if not self.writes:
            return
        atomic_torch_save(state, self.checkpoint_path)

    def remove_stale_temp_files(self) -> None:
        """Delete temporary files left by a write that a crash or kill cut off."""
        if not self.writes:
            return
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self) -> dict[str, Any]:
        """The last checkpoint (weights_only: loading never runs code)."""
        if not self.checkpoint_path.exists():
            raise TransferStudioError(f"{self.path} has no checkpoint to resume from")
        try:
            import torch  # lazily: listing and reading run folders needs no torch

            return torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
            raise TransferStudioError(f"cannot read {self.checkpoint_path}: {exc}") from None


def best_epoch(history: list[dict[str, Any]]) -> tuple[int, float]:
    """``(epoch, val_acc)`` of the best row of a run's metrics (the first of equals), ``(0, -1.0)`` if none.

    The same rule the trainer uses to pick the epoch whose weights go into the bundle.
    """
    best, best_acc = 0, -1.0
    for row in history:
        try:
            epoch, acc = int(row["epoch"]), float(row["val_acc"])
        except (KeyError, TypeError, ValueError):
            continue
        if acc > best_acc:
            best, best_acc = epoch, acc
    return best, best_acc
