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

import glob
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import msgspec

from engine.core.errors import TransferStudioError
from engine.core.files import atomic_torch_save, atomic_write_text
from engine.core.locations import default_runs_root
from engine.core.small_files import DamagedFile, read_json, read_json_lines

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
BUNDLE_FILE = "model.pt"
STATUS_FILE = "status.json"
NOTE_FILE = "note.json"
#: In a bake-off folder (engine.experiments.bakeoff), beside its run folders.
LEADERBOARD_FILE = "leaderboard.json"
#: The files a run writes (each atomically, through a temporary ``.<name>.<random>.tmp`` beside it).
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, BUNDLE_FILE, STATUS_FILE, NOTE_FILE)


class ConfigFile(msgspec.Struct):
    """What ``config.json`` holds: the run's settings (checked by TrainConfig), its dataset, what the
    dataset was when it started, and each change to it that a resume went on with."""

    config: dict[str, Any]
    data_root: str
    dataset: dict[str, Any] | None = None
    dataset_changes: list[dict[str, Any]] = msgspec.field(default_factory=list)


class StatusFile(msgspec.Struct):
    """What ``status.json`` holds."""

    status: str | None = None
    started: str | None = None
    resumed: str | None = None
    ended: str | None = None
    pid: int | None = None
    seconds: float | None = None
    message: str | None = None
    stopped_early: bool | None = None
    features_cached: bool | None = None  # the run's features came from the cache (it ran faster)


class MetricsRow(msgspec.Struct, omit_defaults=True):
    """One line of ``metrics.jsonl``: a finished epoch (a loss is null when it was not a number)."""

    epoch: int
    train_loss: float | None = None
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    lr: float | None = None
    seconds: float | None = None


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _finite(value: Any) -> Any:
    """Floats that JSON has no words for (NaN, infinities) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def folder_safe(name: str) -> str:
    """A model name as part of a folder name: ``timm:convnext_atto.d2_in1k`` -> ``timm-convnext_atto.d2_in1k``
    (a colon is not allowed in Windows file names)."""
    return name.replace(":", "-").replace("/", "-").replace("\\", "-")


def new_run_dir(model: str, strategy: str, root: Path | None = None) -> Path:
    """A fresh, not yet existing run directory named after the time, model and strategy."""
    root = root or default_runs_root()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    model = folder_safe(model)
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
        """Write the run's settings and dataset folder; what :meth:`record_dataset` added is kept."""
        if not self.writes:
            return
        payload: dict[str, Any] = {"config": _finite(config), "data_root": str(data_root)}
        if self.config_path.is_file():
            kept = self.read_config_file()
            if kept.dataset is not None:
                payload["dataset"] = kept.dataset
            if kept.dataset_changes:
                payload["dataset_changes"] = kept.dataset_changes
        atomic_write_text(self.config_path, json.dumps(payload, indent=2) + "\n")

    def record_dataset(self, dataset: dict[str, Any]) -> None:
        """Add what the run trains on (images, exclusions, class balance) to ``config.json``, once: when
        the run starts. Later changes go to :meth:`record_dataset_change`."""
        if not self.writes:
            return
        payload = msgspec.to_builtins(self.read_config_file())
        payload["dataset"] = _finite(dataset)
        atomic_write_text(self.config_path, json.dumps(payload, indent=2) + "\n")

    def record_dataset_change(self, change: dict[str, Any]) -> None:
        """Append a change of the dataset that a resume went on with (what it was is kept)."""
        if not self.writes:
            return
        payload = msgspec.to_builtins(self.read_config_file())
        payload["dataset_changes"] = [*payload.get("dataset_changes", []), _finite(change)]
        atomic_write_text(self.config_path, json.dumps(payload, indent=2) + "\n")

    def read_dataset(self) -> dict[str, Any]:
        """What :meth:`record_dataset` wrote (empty for runs of earlier versions, or a damaged file)."""
        try:
            return self.read_config_file().dataset or {}
        except TransferStudioError:
            return {}

    def read_config_file(self) -> ConfigFile:
        """``config.json`` as written; TransferStudioError if it is missing or damaged."""
        if not self.config_path.exists():
            raise TransferStudioError(f"{self.path} is not a run directory (no {CONFIG_FILE})")
        return read_json(self.config_path, ConfigFile)

    def read_config(self) -> tuple[dict[str, Any], Path]:
        """The saved config dict and dataset path; TransferStudioError if missing or unreadable."""
        payload = self.read_config_file()
        return payload.config, Path(payload.data_root)

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
        atomic_write_text(self.status_path, json.dumps(_finite(payload), indent=2) + "\n")

    def read_status_file(self) -> StatusFile:
        """``status.json``; DamagedFile if it is of the wrong shape (an empty status when there is none)."""
        if not self.status_path.exists():
            return StatusFile()
        return read_json(self.status_path, StatusFile)

    def read_status(self) -> dict[str, Any]:
        """The last written status, or {} when there is none or it is damaged (it is rewritten then)."""
        try:
            return msgspec.to_builtins(self.read_status_file())
        except DamagedFile as exc:
            log.warning("%s", exc)
            return {}

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite the metrics file with ``rows`` (one per finished epoch; NaN is written as null)."""
        if not self.writes:
            return
        text = "".join(json.dumps(_finite(row)) + "\n" for row in rows)
        atomic_write_text(self.metrics_path, text)

    def read_metrics(self) -> list[dict[str, Any]]:
        """One dict per finished epoch; a damaged line (a last line cut off by a crash) is left out."""
        return self.read_metrics_checked()[0]

    def read_metrics_checked(self) -> tuple[list[dict[str, Any]], list[int]]:
        """The finished epochs, and the numbers of the damaged lines that were left out.

        A line is an epoch when it is an object with a whole-number ``epoch``; one of its numbers that is
        not a number reads as null (that value is unknown, the epoch still counts).
        """
        lines, bad = read_json_lines(self.metrics_path, dict[str, Any])
        rows: list[dict[str, Any]] = []
        for number, line in lines:
            epoch = line.get("epoch")
            if not isinstance(epoch, int) or isinstance(epoch, bool):
                bad.append(number)
                continue
            values = {
                key: _number_or_none(line.get(key)) for key in MetricsRow.__struct_fields__ if key in line
            }
            rows.append({**values, "epoch": epoch})
        if bad:
            log.warning(
                "%s: left out damaged line(s) %s", self.metrics_path, ", ".join(map(str, sorted(bad)))
            )
        return rows, sorted(bad)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        if not self.writes:
            return
        atomic_torch_save(state, self.checkpoint_path)

    def remove_stale_temp_files(self) -> None:
        """Delete the temporary files of the run's own files that a crash or kill cut off (only those:
        ``.<run file>.<random>.tmp``; nothing else in the folder is touched)."""
        if not self.writes:
            return
        for name in RUN_FILES:
            for tmp in self.path.glob(f".{glob.escape(name)}.*.tmp"):
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
