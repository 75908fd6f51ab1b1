"""Photos a user chose to leave out of training, and moving a photo to another class folder (with undo).

Nothing here ever deletes a user's file. An exclusion list is kept per dataset *outside* the dataset
folder, in ``<app data>/exclusions/<digest of the folder's path>.json`` (see
:func:`engine.core.locations.app_data_dir`), as paths relative to the dataset folder, so the photos
themselves are untouched. :func:`engine.data.datasets.scan_dataset` reads the list: excluded photos
are left out after the split is made (so excluding one never moves another between train and val)
and reported as excluded; a run records the list it trained without in its ``config.json``.

:func:`move_to_class` moves one photo into a sibling class folder (renaming it if the name is taken)
and returns a :class:`Move` that :func:`undo_move` reverses.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from engine.core.errors import TransferStudioError
from engine.core.files import atomic_write_text
from engine.core.locations import app_data_dir
from engine.core.small_files import DamagedFile, read_json

log = logging.getLogger(__name__)

EXCLUSIONS_VERSION = 1


def exclusions_file(root: str | Path) -> Path:
    """Where the exclusion list of the dataset at ``root`` is kept."""
    resolved = str(Path(root).expanduser().resolve())
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return app_data_dir() / "exclusions" / f"{Path(resolved).name or 'dataset'}-{digest}.json"


def _relative(root: Path, path: Path) -> str:
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        try:
            return path.resolve().relative_to(root).as_posix()
        except ValueError:
            raise TransferStudioError(f"{path} is not inside the dataset folder {root}") from None


class ExclusionsFile(msgspec.Struct):
    """What an exclusion list holds: the dataset it is for, and its photos left out (relative paths)."""

    excluded: list[str]
    version: int = EXCLUSIONS_VERSION
    root: str = ""


def load_exclusions(root: str | Path) -> set[Path]:
    """The excluded photos of the dataset at ``root`` (absolute paths); empty when there is no list or
    it is damaged (see :func:`read_exclusions`)."""
    return read_exclusions(root)[0]


def read_exclusions(root: str | Path) -> tuple[set[Path], str | None]:
    """The excluded photos of the dataset at ``root``, and why the list was not read when it is damaged
    (one line naming it: ``scan`` and training show it as a warning; the list is not overwritten until
    the next change)."""
    root = Path(root).expanduser().resolve()
    path = exclusions_file(root)
    if not path.exists():
        return set(), None
    try:
        payload = read_json(path, ExclusionsFile)
    except DamagedFile as exc:
        log.warning("ignoring the exclusion list: %s", exc)
        return set(), f"the exclusion list is not used: {exc}"
    return {root / name for name in payload.excluded if name}, None


def save_exclusions(root: str | Path, paths: Iterable[str | Path]) -> Path:
    """Replace the exclusion list of the dataset at ``root``; returns the list's file."""
    root = Path(root).expanduser().resolve()
    names = sorted({_relative(root, Path(p)) for p in paths})
    path = exclusions_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": EXCLUSIONS_VERSION, "root": str(root), "excluded": names}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def exclude(root: str | Path, paths: Iterable[str | Path]) -> set[Path]:
    """Add ``paths`` to the dataset's exclusion list; returns the whole list."""
    resolved = Path(root).expanduser().resolve()
    current = load_exclusions(resolved) | {resolved / _relative(resolved, Path(p)) for p in paths}
    save_exclusions(resolved, current)
    return current


def include(root: str | Path, paths: Iterable[str | Path]) -> set[Path]:
    """Take ``paths`` off the dataset's exclusion list (use them again); returns the whole list."""
    resolved = Path(root).expanduser().resolve()
    drop = {resolved / _relative(resolved, Path(p)) for p in paths}
    current = load_exclusions(resolved) - drop
    save_exclusions(resolved, current)
    return current


@dataclass(frozen=True)
class Move:
    """A photo moved from ``source`` to ``destination`` by :func:`move_to_class`."""

    source: Path
    destination: Path


def class_folder_of(path: Path, class_name: str) -> Path:
    """The class folder named ``class_name`` that holds ``path`` (it may sit in sub-folders of it)."""
    for parent in path.parents:
        if parent.name == class_name:
            return parent
    raise TransferStudioError(f"{path} is not inside a class folder named '{class_name}'")


def move_to_class(path: str | Path, given: str, target: str) -> Move:
    """Move the photo at ``path`` from its class folder ``given`` into the sibling folder ``target``
    (created if needed). A name already taken there gets `` (2)``, `` (3)``… Never overwrites."""
    source = Path(path)
    if given == target:
        raise TransferStudioError(f"{source.name} is already in '{target}'")
    if not source.is_file():
        raise TransferStudioError(f"{source} no longer exists")
    folder = class_folder_of(source, given).parent / target
    folder.mkdir(exist_ok=True)
    destination = free_name(folder / source.name)
    move_without_overwriting(source, destination)
    log.info("moved %s to %s", source, destination)
    return Move(source, destination)


def undo_move(move: Move) -> None:
    """Put a moved photo back where it was (refuses if something else took its old name)."""
    if not move.destination.exists():
        raise TransferStudioError(f"cannot undo: {move.destination} is gone")
    if move.source.exists():
        raise TransferStudioError(f"cannot undo: {move.source} exists again")
    move.source.parent.mkdir(parents=True, exist_ok=True)
    move_without_overwriting(move.destination, move.source)
    log.info("moved %s back to %s", move.destination, move.source)


def free_name(path: Path) -> Path:
    """``path``, or ``name (2).ext``, ``name (3).ext``… : the first that nothing takes."""
    candidate, n = path, 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
    return candidate


def move_without_overwriting(source: Path, destination: Path) -> None:
    """Move a file; refuses (one line) when ``destination`` is taken. Across file systems: copy, then
    remove the original."""
    if destination.exists() or destination.is_symlink():
        raise TransferStudioError(f"{destination} already exists")
    try:
        os.rename(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise TransferStudioError(f"cannot move {source.name}: {exc.strerror or exc}") from exc
        shutil.move(str(source), str(destination))  # another file system: copy, then remove the original
