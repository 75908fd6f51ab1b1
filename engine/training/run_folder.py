"""A run's folder while a process trains in it: created or reopened under its lock, and checked before
anything in it is written.

- :func:`create` refuses a folder inside the dataset, or one that already holds a run or anything else,
  then takes the folder's lock (:mod:`engine.core.run_lock`) and writes ``config.json``.
- :func:`open_for_resume` takes the lock first (a run still training is refused), then reads the
  config, checks every setting in it, and reads the checkpoint; it writes nothing.
- :func:`check_dataset` compares the dataset as it is now with what the run recorded when it started:
  other classes end the resume; other photos (counts, or which files) end it too unless
  ``allow_changed_data``, and then the change is recorded as a new entry, never written over the old.

Only after these checks does the trainer write the config (a new epoch count), the status and the
dataset record, and clear its own leftover temporary files.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.core.config import TrainConfig
from engine.core.errors import DatasetChanged, DatasetError, TransferStudioError
from engine.core.run_lock import RunLock
from engine.core.rundir import CONFIG_FILE, RunDir, new_run_dir
from engine.data.datasets import DatasetReport
from engine.data.outputs import OutputRefused, check_output_folder


@dataclass
class OpenedRun:
    """A run folder reopened to go on training, with what it holds."""

    run: RunDir
    config: TrainConfig
    data_root: Path
    checkpoint: dict[str, Any]
    epochs_changed: bool


def create(config: TrainConfig, data_root: Path, run_dir: str | Path | None) -> tuple[RunDir, RunLock]:
    """A new run folder for ``config`` (``run_dir``, else a fresh one under the runs folder), locked,
    with its ``config.json``; OutputRefused or RunBusy (nothing written) when it cannot be used."""
    if not data_root.is_dir():
        raise DatasetError(f"Dataset folder does not exist: {data_root}")
    path = Path(run_dir) if run_dir else new_run_dir(config.model, config.strategy)
    check_output_folder(path, what="the run", datasets=[data_root])
    lock = RunLock.acquire(path)
    run = RunDir(path)
    if run.config_path.exists():  # another process made a run here while this one looked
        lock.release()
        raise OutputRefused(f"{path} already holds a run: resume it (--resume) or choose another folder")
    run.write_config(config.to_dict(), data_root.resolve())
    return run, lock


def open_for_resume(run_dir: str | Path, epochs: int | None) -> tuple[OpenedRun, RunLock]:
    """The run in ``run_dir``, locked and read (nothing written); TransferStudioError when it is not a
    run, is training in another process, or its files are damaged."""
    run = RunDir(run_dir)
    if not run.config_path.is_file():
        raise TransferStudioError(f"{run.path} is not a run directory (no {CONFIG_FILE})")
    lock = RunLock.acquire(run.path)
    try:
        config_dict, data_root = run.read_config()
        config = TrainConfig.from_dict(config_dict)
        changed = epochs is not None and epochs != config.epochs
        if changed:
            config = config.replace(epochs=epochs)
        checkpoint = run.load_checkpoint()
    except BaseException:
        lock.release()
        raise
    return OpenedRun(run, config, data_root, checkpoint, changed), lock


def fingerprint(report: DatasetReport) -> str:
    """A digest of which photos are in which split and class (names, not contents)."""
    digest = hashlib.sha256()
    for split in sorted(report.splits):
        for sample in sorted(report.splits[split], key=lambda s: str(s.path)):
            digest.update(
                f"{split}\0{sample.label}\0{report.relative(sample.path)}\n".encode("utf-8", "replace")
            )
    return digest.hexdigest()[:16]


def counts(report: DatasetReport) -> dict[str, int]:
    return {split: len(samples) for split, samples in report.splits.items()}


def check_dataset(
    opened: OpenedRun, report: DatasetReport, allow_changed_data: bool
) -> dict[str, Any] | None:
    """None when the dataset is as the run recorded it; the change (to record) when it differs and
    ``allow_changed_data``; DatasetChanged (or TransferStudioError for other classes) otherwise."""
    recorded_classes = list(opened.checkpoint.get("classes", []))
    if recorded_classes and recorded_classes != list(report.classes):
        raise TransferStudioError(
            f"the dataset's classes changed since this run started ({', '.join(recorded_classes)} → "
            f"{', '.join(report.classes)}); start a new run instead"
        )
    before = opened.run.read_dataset()
    images_before = before.get("images")
    now = counts(report)
    changed = isinstance(images_before, dict) and images_before != now
    print_before = before.get("fingerprint")
    now_print = fingerprint(report)
    if isinstance(print_before, str) and print_before != now_print:
        changed = True
    if not changed:
        return None
    what = ", ".join(
        f"{split} {images_before.get(split, 0) if isinstance(images_before, dict) else '?'} → {n}"
        for split, n in now.items()
    )
    if not allow_changed_data:
        raise DatasetChanged(
            f"the dataset's photos changed since this run started ({what} photos); add --allow-changed-data "
            "to go on with them as they are now (the change is recorded in the run)"
        )
    return {
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "images_before": images_before,
        "images": now,
        "fingerprint": now_print,
        "summary": what,
    }


def dataset_record(report: DatasetReport, balance: str, input_size: int, device: str = "") -> dict[str, Any]:
    """What a run trains on, as ``config.json`` records it when the run starts: besides the photos,
    what its automatic settings came to (input size, where validation photos come from, device)."""
    ratio = report.imbalance()
    return {
        "validation": "split" if report.auto_split else "folder",
        "device": device,
        "images": counts(report),
        "fingerprint": fingerprint(report),
        "skipped": len(report.skipped),
        "excluded": sorted(map(report.relative, report.excluded)),
        "imbalance": round(ratio, 3) if math.isfinite(ratio) else None,
        "balance": balance,
        "input_size": input_size,
    }
