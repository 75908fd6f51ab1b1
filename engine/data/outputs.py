"""Where the app may write: every output path is checked before anything is written to it.

A file output (a CSV, an exported model, a report) is refused when it lies inside a dataset being used,
when it is a photo, a model bundle or checkpoint, or one of a run folder's own files, and when it is a
folder.
An existing file of the output's own kind (an older CSV, report or export) is replaced only with
``force`` (``--force``, or the save dialog's "Replace"). A folder output (a run, a bake-off, a deploy
folder) is refused inside a dataset being used, and when it already holds a run, a bake-off, or
anything else. Nothing a user keeps in a dataset is ever overwritten, with or without ``force``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

from engine.core.errors import TransferStudioError
from engine.core.rundir import (
    BUNDLE_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LEADERBOARD_FILE,
    METRICS_FILE,
    NOTE_FILE,
    STATUS_FILE,
)
from engine.data.images import IMAGE_EXTENSIONS

#: A run's and a bake-off's own files: never the target of another output.
RUN_FILES = frozenset({CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, BUNDLE_FILE, STATUS_FILE, NOTE_FILE,
                       LEADERBOARD_FILE, "bakeoff.json"})  # fmt: skip


class OutputRefused(TransferStudioError):
    """An output path that would overwrite or mix with something the user keeps."""


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError):  # a link loop: compare as given
        return path.expanduser().absolute()


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or lies below it (links resolved)."""
    resolved, base = _resolved(path), _resolved(root)
    return resolved == base or resolved.is_relative_to(base)


def is_model_bundle(path: Path) -> bool:
    """Whether ``path`` is a torch.save file (a bundle or a checkpoint), not a TorchScript archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return any(n.endswith("/data.pkl") for n in names) and not any("/code/" in n for n in names)


def run_dataset(path: str | Path) -> list[Path]:
    """The dataset folder a run (or the run of a bundle inside it) trained on, when its config says so."""
    from engine.core.rundir import RunDir

    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    try:
        return [RunDir(folder).read_config()[1]] if (folder / CONFIG_FILE).is_file() else []
    except TransferStudioError:
        return []


def check_output_file(
    path: str | Path,
    *,
    what: str,
    datasets: Iterable[str | Path] = (),
    force: bool = False,
    replaceable: tuple[str, ...] = (),
) -> Path:
    """``path``, checked for writing ``what`` (e.g. "the CSV"); OutputRefused in one line otherwise.

    ``datasets``: folders being read (the dataset, the photos classified); nothing is written inside
    them. ``replaceable``: the suffixes of files an existing one may be replaced by ``force``.
    """
    out = Path(path).expanduser()
    for root in datasets:
        if inside(out, Path(root)):
            raise OutputRefused(f"{out} is inside {root}, which is being used: write {what} outside it")
    if out.is_dir():
        raise OutputRefused(f"{out} is a folder: give a file name for {what}")
    if out.is_file() and is_model_bundle(out):
        raise OutputRefused(f"{out} is a model bundle: choose another name for {what}")
    in_a_run = (out.parent / CONFIG_FILE).is_file() or (out.parent / LEADERBOARD_FILE).is_file()
    if out.name in RUN_FILES and in_a_run:
        raise OutputRefused(f"{out} is a run's own file: choose another name for {what}")
    if out.suffix.lower() in IMAGE_EXTENSIONS:
        raise OutputRefused(f"{out} is a photo's name: choose another name for {what}")
    if not out.exists() and not out.is_symlink():
        return out
    if not force:
        raise OutputRefused(f"{out} already exists: choose another name, or add --force to replace it")
    if replaceable and out.suffix.lower() not in replaceable:
        raise OutputRefused(f"{out} is not {what}'s kind of file ({', '.join(replaceable)}): it is kept")
    return out


def check_output_folder(path: str | Path, *, what: str, datasets: Iterable[str | Path] = ()) -> Path:
    """``path``, checked as a new folder for ``what`` ("the run"): outside the datasets being used, and
    missing or empty. OutputRefused in one line otherwise."""
    out = Path(path).expanduser()
    for root in datasets:
        if inside(out, Path(root)) or inside(Path(root), out):
            raise OutputRefused(
                f"{out} is inside (or holds) {root}, which is being used: put {what} elsewhere"
            )
    if out.exists() and not out.is_dir():
        raise OutputRefused(f"{out} is a file: give a folder for {what}")
    if not out.exists():
        return out
    try:
        with os.scandir(out) as entries:
            names = sorted(entry.name for entry in entries)
    except OSError as exc:
        raise OutputRefused(f"{out} cannot be read: {exc.strerror or exc}") from None
    if CONFIG_FILE in names:
        raise OutputRefused(f"{out} already holds a run: resume it (--resume) or choose another folder")
    if LEADERBOARD_FILE in names or "bakeoff.json" in names:
        raise OutputRefused(f"{out} already holds a bake-off: choose another folder")
    if names:
        raise OutputRefused(f"{out} is not empty: choose a new or empty folder for {what}")
    return out
