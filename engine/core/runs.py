"""Every run under a runs folder, summarised from its small files (never a checkpoint or a bundle).

A run is any folder holding a run's ``config.json`` (see :mod:`engine.core.rundir`). Its summary
comes from ``config.json``, ``metrics.jsonl``, ``status.json`` and ``note.json``, so hundreds of runs
list in well under a second, with no torch import.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from engine.core.errors import TransferStudioError
from engine.core.files import atomic_write_text
from engine.core.run_lock import LOCK_FILE, is_locked
from engine.core.rundir import CONFIG_FILE, METRICS_FILE, RunDir, best_epoch
from engine.core.small_files import DamagedFile, read_json

log = logging.getLogger(__name__)

#: How deep below the root runs are looked for (a bake-off keeps its runs one level down).
MAX_DEPTH = 3
#: Config keys that do not change what a run learns (left out of ``RunSummary.settings``).
NOT_RESULT_SETTINGS = frozenset({"model", "strategy", "workers", "image_cache_mb"})
STATUSES = ("running", "finished", "stopped", "failed", "interrupted")


@dataclass(frozen=True)
class RunSummary:
    """One run as the runs table shows it."""

    path: Path
    name: str  # the user's name for it, else the folder's name
    note: str
    dataset: str  # the dataset folder
    model: str
    strategy: str
    settings: dict[str, Any]  # every config setting that can change the result (not model/strategy)
    started: str | None  # ISO 8601, from status.json (None for runs older than it)
    seconds: float  # wall time of every session (feature pass included); older runs: sum of epochs
    epochs_done: int
    epochs_planned: int
    best_val_acc: float | None
    best_epoch: int
    status: str  # one of STATUSES
    resumable: bool
    has_bundle: bool
    message: str | None  # why it failed
    problems: tuple[str, ...] = ()  # damaged parts of its files that were left out
    features_cached: bool = False  # its feature pass was read from the cache (its time is not a first run's)
    resolved: dict[str, Any] = field(default_factory=dict)
    """What its automatic settings came to, where the run recorded it: ``input_size`` (px),
    ``validation`` ("folder": the dataset's val/; "split": an automatic split) and ``device``."""

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["path"] = str(self.path)
        return payload


def find_run_dirs(root: str | Path, max_depth: int = MAX_DEPTH) -> Iterator[Path]:
    """Folders under ``root`` (itself included) that hold a run's config.json; not below a run."""
    root = Path(root)
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as entries:
                children = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
                if (folder / CONFIG_FILE).is_file():
                    yield folder
                    continue
        except OSError:
            continue
        if depth < max_depth:
            stack.extend((child, depth + 1) for child in sorted(children, reverse=True))


@dataclass(frozen=True)
class RunsListing:
    """The readable runs, newest first, and the run folders that could not be read, each with why."""

    runs: list[RunSummary]
    broken: list[tuple[Path, str]]


def list_runs(*roots: str | Path) -> list[RunSummary]:
    """Every readable run under any of ``roots``, newest first (see :func:`list_runs_and_problems`)."""
    return list_runs_and_problems(*roots).runs


def list_runs_and_problems(*roots: str | Path) -> RunsListing:
    """Every run under any of ``roots``: the readable ones newest first, and the ones left out because
    a file of theirs is damaged or unreadable (each named, with the reason). A run found under two roots
    is listed once."""
    summaries = []
    broken: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for folder in (f for root in roots for f in find_run_dirs(root)):
        key = folder.resolve()
        if key in seen:
            continue
        seen.add(key)
        try:
            summaries.append(summarize_run(folder))
        except (TransferStudioError, OSError, ValueError, TypeError, RecursionError) as exc:  # one odd folder
            log.warning("leaving %s out of the runs list: %s", folder, exc)
            broken.append((folder, str(exc)))
    ordered = sorted(summaries, key=lambda s: (_sort_time(s.started), s.path.name), reverse=True)
    return RunsListing(ordered, broken)


def parse_status_time(text: object) -> datetime | None:
    """A time written in status.json (ISO 8601), timezone-aware; None when missing or unreadable.

    Accepts ``+0000`` offsets too (written by earlier versions), which Python 3.10 does not parse.
    """
    if not isinstance(text, str) or not text:
        return None
    if len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.astimezone()


def _sort_time(started: str | None) -> float:
    moment = parse_status_time(started)
    return moment.timestamp() if moment is not None else 0.0


def summarize_run(path: str | Path) -> RunSummary:
    """The summary of one run folder; TransferStudioError if its config is missing or damaged."""
    run = RunDir(path)
    config, data_root = run.read_config()
    history, bad_lines = run.read_metrics_checked()
    status = msgspec.to_builtins(run.read_status_file())
    note = read_note(run.path, strict=True)
    epochs_done = len(history)
    planned = config.get("epochs")
    epochs_planned = planned if isinstance(planned, int) and planned > 0 else epochs_done
    best, best_acc = best_epoch(history)
    has_checkpoint, has_bundle = run.checkpoint_path.is_file(), run.bundle_path.is_file()
    state = _state_of(run.path, status, epochs_done, epochs_planned, has_checkpoint, has_bundle)
    return RunSummary(
        path=run.path,
        name=note.get("name") or run.path.name,
        note=note.get("note", ""),
        dataset=str(data_root),
        model=str(config.get("model", "?")),
        strategy=str(config.get("strategy", "?")),
        settings={k: v for k, v in config.items() if k not in NOT_RESULT_SETTINGS},
        started=status.get("started"),
        seconds=_seconds_of(status, history),
        epochs_done=epochs_done,
        epochs_planned=epochs_planned,
        best_val_acc=best_acc if best else None,
        best_epoch=best,
        status=state,
        resumable=has_checkpoint
        and state in ("stopped", "interrupted", "failed")
        and epochs_done < epochs_planned,
        has_bundle=has_bundle,
        message=status.get("message"),
        features_cached=bool(status.get("features_cached")),
        problems=tuple(f"{METRICS_FILE} line {n} is damaged (left out)" for n in bad_lines),
        resolved=_resolved(run.read_dataset()),
    )


def _resolved(dataset: dict[str, Any]) -> dict[str, Any]:
    """The ``resolved`` of a RunSummary, from what config.json recorded of the dataset."""
    kinds = {"input_size": int, "validation": str, "device": str}
    return {k: dataset[k] for k, kind in kinds.items() if isinstance(dataset.get(k), kind) and dataset[k]}


def _seconds_of(status: dict[str, Any], history: list[dict[str, Any]]) -> float:
    recorded = status.get("seconds")
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        return float(recorded)
    epochs = 0.0
    for row in history:
        seconds = row.get("seconds", 0.0)
        epochs += float(seconds) if isinstance(seconds, (int, float)) else 0.0
    started, ended = parse_status_time(status.get("started")), parse_status_time(status.get("ended"))
    if started is None or ended is None:  # a status from before "seconds" was recorded
        return round(epochs, 3)
    return round(max(epochs, (ended - started).total_seconds()), 3)


def _state_of(
    folder: Path,
    status: dict[str, Any],
    epochs_done: int,
    epochs_planned: int,
    has_checkpoint: bool,
    has_bundle: bool,
) -> str:
    recorded = status.get("status")
    if recorded == "running":
        return "running" if is_training(folder, status) else "interrupted"
    if recorded in STATUSES:
        return str(recorded)
    # A run from before status.json: judge by its files.
    if has_bundle and epochs_done >= epochs_planned:
        return "finished"
    return "interrupted" if has_checkpoint else "failed"


def is_training(folder: Path, status: dict[str, Any]) -> bool:
    """Whether a process trains in ``folder`` now: it holds the run's lock (engine.core.run_lock). A run
    of an earlier version, which had no lock, trains while the process its status names is alive."""
    if (folder / LOCK_FILE).exists():
        return is_locked(folder)
    return _process_alive(status.get("pid"))


def _process_alive(pid: Any) -> bool:
    """Whether a process with this id runs on this machine (a killed run's pid is gone)."""
    if not isinstance(pid, int) or pid <= 0 or pid > 2**31 - 1:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill(pid, 0) would end the process on Windows: ask the kernel
        return windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return False
    return True


def windows_process_alive(pid: int) -> bool:
    import ctypes

    query_limited_information, still_active = 0x1000, 259
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined,unused-ignore]  # Windows only
    handle = kernel32.OpenProcess(query_limited_information, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


def _refuse_if_running(run: RunDir) -> None:
    if is_training(run.path, run.read_status()):
        raise TransferStudioError(f"{run.path.name} is still training; stop it first")


class NoteFile(msgspec.Struct, omit_defaults=True):
    """What ``note.json`` holds: the name and note a user gave a run."""

    name: str | None = None
    note: str | None = None


def read_note(path: str | Path, *, strict: bool = False) -> dict[str, str]:
    """The ``{"name", "note"}`` a user gave a run ({} when none). A damaged note.json reads as {} (and is
    replaced by the next note), or with ``strict`` is a DamagedFile."""
    note_path = RunDir(path).note_path
    if not note_path.exists():
        return {}
    try:
        payload = read_json(note_path, NoteFile)
    except DamagedFile:
        if strict:
            raise
        return {}
    return {k: v for k, v in msgspec.to_builtins(payload).items() if isinstance(v, str)}


def set_note(path: str | Path, *, name: str | None = None, note: str | None = None) -> None:
    """Give a run a name and/or a note (an empty string clears it); kept in the run's note.json."""
    run = RunDir(path)
    if not run.config_path.is_file():
        raise TransferStudioError(f"{run.path} is not a run folder (no {CONFIG_FILE})")
    current = read_note(run.path)
    for key, value in (("name", name), ("note", note)):
        if value is not None:
            current[key] = value.strip()
    atomic_write_text(run.note_path, json.dumps({k: v for k, v in current.items() if v}, indent=2) + "\n")


def move_run_to_trash(path: str | Path) -> None:
    """Move a run folder to the platform's trash (recoverable); TransferStudioError if there is none."""
    run = RunDir(path)
    if not run.config_path.is_file():
        raise TransferStudioError(f"{run.path} is not a run folder (no {CONFIG_FILE})")
    _refuse_if_running(run)
    from send2trash import send2trash

    try:
        send2trash(run.path)
    except OSError as exc:  # including send2trash's TrashPermissionError
        raise TransferStudioError(f"cannot move {run.path} to the trash: {exc}") from None


def delete_run(path: str | Path) -> None:
    """Delete a run folder for good (after the user confirmed: the trash was not available)."""
    run = RunDir(path)
    if not run.config_path.is_file():
        raise TransferStudioError(f"{run.path} is not a run folder (no {CONFIG_FILE})")
    _refuse_if_running(run)
    try:
        shutil.rmtree(run.path)
    except OSError as exc:
        raise TransferStudioError(f"cannot delete {run.path}: {exc}") from None
