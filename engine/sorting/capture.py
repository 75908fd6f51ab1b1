"""Photos taken with a camera straight into a class folder (the sort view's "Capture into class").

A photo goes where an accepted one goes (:func:`engine.sorting.journal.class_folder`): ``train/<class>/``
in a dataset with split folders, else ``<class>/``; a new class gets its folder. The photo is named
after the time it was taken; a name already taken gets `` (2)``, `` (3)``… and the file is created
exclusively, so nothing is ever overwritten. A write that fails leaves no file behind.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

from engine.core.errors import TransferStudioError
from engine.data.exclusions import free_name
from engine.sorting.journal import check_class_name, class_folder, classes_folder

log = logging.getLogger(__name__)

#: Tries at a free name when other captures take each one first (two windows capturing at once).
_NAME_TRIES = 100


def existing_classes(root: str | Path) -> list[str]:
    """The class folders already in ``root`` (a folder that may not be a dataset yet), sorted; none when
    it cannot be read."""
    try:
        return sorted(
            p.name for p in classes_folder(Path(root)).iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    except (OSError, TransferStudioError):
        return []


def capture_name(when: datetime, suffix: str = ".jpg") -> str:
    """The file name of a photo taken at ``when``: ``capture 2026-12-06 10.15.03.jpg``."""
    return f"capture {when:%Y-%m-%d %H.%M.%S}{suffix}"


def save_capture(
    root: str | Path, class_name: str, data: bytes, when: datetime | None = None, suffix: str = ".jpg"
) -> Path:
    """Write the encoded photo ``data`` as a new file in the class folder of ``class_name``; its path.

    One-line :class:`TransferStudioError` for a name that cannot be a folder, an unwritable dataset or
    a full disk; nothing is written then.
    """
    name = check_class_name(class_name)
    folder = class_folder(Path(root), name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransferStudioError(f"cannot make the class folder {folder}: {exc.strerror or exc}") from exc
    wanted = folder / capture_name(when or datetime.now(), suffix)
    for _ in range(_NAME_TRIES):
        path = free_name(wanted)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue  # taken since free_name looked
        except OSError as exc:
            raise TransferStudioError(f"cannot save the photo in {folder}: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
        except BaseException as exc:
            path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise TransferStudioError(
                    f"cannot save the photo in {folder}: {exc.strerror or exc}"
                ) from exc
            raise
        log.info("captured %s", path)
        return path
    raise TransferStudioError(f"cannot find a free name for the photo in {folder}")
