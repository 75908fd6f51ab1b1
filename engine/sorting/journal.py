"""Accepting proposals: photos moved into their class folders, in batches that can be undone.

An accepted photo moves into ``train/<class>/`` (a dataset with split folders) or ``<class>/`` (one
without); a new class gets a new folder. Nothing is ever deleted or overwritten: a name already taken
gets `` (2)``, `` (3)``… Every batch is written to a journal kept *outside* the dataset, in
``<app data>/sorting/<folder name>-<digest of its path>.jsonl`` (one JSON line per batch and per
undo), so :func:`undo_last` can put the last batch back even after the app was closed. A batch is
checked in full before the first photo moves (files exist, class names are folder names, every folder
is writable): a read-only dataset fails with one line and nothing changes. If a move fails half-way,
the photos moved so far go back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from engine.core.errors import TransferStudioError
from engine.core.files import atomic_write_text
from engine.core.locations import app_data_dir
from engine.data.datasets import SPLIT_ALIASES, UNLABELED_FOLDER
from engine.data.exclusions import free_name, move_without_overwriting

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1
_FORBIDDEN_NAMES = {"", ".", "..", UNLABELED_FOLDER} | {
    a for aliases in SPLIT_ALIASES.values() for a in aliases
}


@dataclass(frozen=True)
class Moved:
    """One accepted photo: where it was, where it is now, and its class."""

    source: Path
    destination: Path
    class_name: str


@dataclass(frozen=True)
class Batch:
    """Photos accepted together (one key press, one "accept all", one ``--accept`` file)."""

    number: int
    time: str
    moves: tuple[Moved, ...]
    undone: bool = False
    created: tuple[Path, ...] = ()  # class folders the batch made (removed by undo when empty again)


def journal_file(root: str | Path) -> Path:
    """Where the sorting journal of the dataset at ``root`` is kept (outside the dataset)."""
    resolved = str(Path(root).expanduser().resolve())
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return app_data_dir() / "sorting" / f"{Path(resolved).name or 'dataset'}-{digest}.jsonl"


def classes_folder(root: Path) -> Path:
    """The folder that holds the class folders: ``train/`` with split folders, else ``root``."""
    try:
        tops = [p for p in root.iterdir() if p.is_dir()]
    except OSError as exc:
        raise TransferStudioError(f"cannot read the dataset folder {root}: {exc.strerror or exc}") from exc
    train = next((p for p in sorted(tops) if p.name.lower() in SPLIT_ALIASES["train"]), None)
    return train or root


def class_folder(root: Path, class_name: str) -> Path:
    """The folder a photo of ``class_name`` goes to: ``train/<class>`` with split folders, else ``<class>``."""
    return classes_folder(root) / class_name


def check_class_name(name: str) -> str:
    """``name`` stripped, or a one-line error when it cannot be a class folder's name."""
    clean = name.strip()
    if clean.lower() in _FORBIDDEN_NAMES or clean.startswith(".") or any(c in clean for c in '/\\:*?"<>|\0'):
        raise TransferStudioError(
            f"'{name}' cannot be a class name (it must be a folder name: no slashes or :*?\"<>|, not "
            f"'{UNLABELED_FOLDER}' or a split's name)"
        )
    return clean


def read_journal(root: str | Path) -> list[Batch]:
    """Every batch accepted in the dataset at ``root``, oldest first (undone ones marked)."""
    path = journal_file(root)
    if not path.exists():
        return []
    batches: dict[int, Batch] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="surrogateescape").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if "undo" in record:
                number = int(record["undo"])
                old = batches[number]
                batches[number] = Batch(old.number, old.time, old.moves, True, old.created)
            else:
                moves = tuple(Moved(Path(m["from"]), Path(m["to"]), str(m["class"])) for m in record["moves"])
                created = tuple(Path(p) for p in record.get("created", []))
                batches[int(record["batch"])] = Batch(
                    int(record["batch"]), str(record["time"]), moves, False, created
                )
        except (ValueError, KeyError, TypeError) as exc:
            raise TransferStudioError(f"the sorting journal {path} is damaged at line {n}: {exc}") from None
    return list(batches.values())


def _append(root: Path, record: dict[str, object]) -> None:
    path = journal_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text(encoding="utf-8", errors="surrogateescape") if path.exists() else ""
    atomic_write_text(path, old + json.dumps(record, ensure_ascii=False) + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _writable(folder: Path) -> bool:
    existing = folder
    while not existing.exists():
        existing = existing.parent
    return os.access(existing, os.W_OK | os.X_OK)


def accept(root: str | Path, choices: Sequence[tuple[Path, str]]) -> Batch:
    """Move each photo of ``choices`` (path, class name) into its class folder, as one batch."""
    root = Path(root).expanduser().resolve()
    plan: list[tuple[Path, Path, str]] = []
    seen: set[Path] = set()
    for path, name in choices:
        source = Path(path)
        source = source if source.is_absolute() else root / source
        if not source.is_file():
            raise TransferStudioError(f"{source} is not a photo that exists; nothing was moved")
        if source in seen:
            raise TransferStudioError(f"{source} is listed twice; nothing was moved")
        seen.add(source)
        name = check_class_name(name)
        plan.append((source, class_folder(root, name), name))
    for source, folder, _ in plan:
        for needed in (folder, source.parent):
            if not _writable(needed):
                raise TransferStudioError(
                    f"{needed} is read-only: cannot move photos there; nothing was moved"
                )
    done: list[Moved] = []
    created: list[Path] = []
    try:
        for source, folder, name in plan:
            if not folder.exists():
                folder.mkdir(parents=True)
                created.append(folder)
            destination = free_name(folder / source.name)
            move_without_overwriting(source, destination)
            done.append(Moved(source, destination, name))
    except (OSError, TransferStudioError) as exc:
        _put_back(done)
        _remove_if_empty(created)
        raise TransferStudioError(f"sorting stopped, nothing was moved: {exc}") from exc
    number = max((b.number for b in read_journal(root)), default=0) + 1
    batch = Batch(number, _now(), tuple(done), False, tuple(created))
    _append(root, {
        "version": JOURNAL_VERSION, "batch": number, "time": batch.time, "root": str(root),
        "moves": [{"from": str(m.source), "to": str(m.destination), "class": m.class_name} for m in done],
        "created": [str(p) for p in created],
    })  # fmt: skip
    log.info("sorted %d photo(s) in %s (batch %d)", len(done), root, number)
    return batch


def _put_back(moves: Sequence[Moved]) -> list[Path]:
    """Move photos back where they came from (a free name there if the old one is taken again)."""
    restored = []
    for m in reversed(moves):
        target = free_name(m.source)
        m.source.parent.mkdir(parents=True, exist_ok=True)
        move_without_overwriting(m.destination, target)
        restored.append(target)
    return restored


def _remove_if_empty(folders: Sequence[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()  # only ever an empty folder this app made
        except OSError:
            pass


def undo_last(root: str | Path) -> Batch | None:
    """Put the last batch not yet undone back; None when there is nothing to undo."""
    root = Path(root).expanduser().resolve()
    batch = next((b for b in reversed(read_journal(root)) if not b.undone), None)
    if batch is None:
        return None
    missing = [m.destination for m in batch.moves if not m.destination.is_file()]
    if missing:
        raise TransferStudioError(f"cannot undo batch {batch.number}: {missing[0]} is no longer there")
    restored = _put_back(batch.moves)
    _remove_if_empty(batch.created)
    _append(root, {"undo": batch.number, "time": _now(), "restored": [str(p) for p in reversed(restored)]})
    log.info("undid batch %d in %s (%d photo(s))", batch.number, root, len(batch.moves))
    return batch
