"""The application icon, read from the ``resources`` package: the SVG when present, else the PNG.

``resources/`` is an importable package whose icon files are package data, so the same
``importlib.resources.files("resources")`` lookup works from a source tree, an editable or wheel
install, and the PyInstaller bundle (which collects the package's data files).
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QIcon, QPixmap

if TYPE_CHECKING:  # importlib.resources.abc is new in Python 3.11
    from importlib.resources.abc import Traversable

logger = logging.getLogger(__name__)

PACKAGE = "resources"
NAMES = ("transfer-studio.svg", "transfer-studio.png")


def resource(name: str) -> Traversable | None:
    """The file ``name`` of the ``resources`` package, or None when it (or the package) is missing."""
    try:
        found = files(PACKAGE).joinpath(name)
    except (ModuleNotFoundError, TypeError, ValueError) as exc:  # not installed, or a namespace without files
        logger.warning("no %s package: %s", PACKAGE, exc)
        return None
    return found if found.is_file() else None


def _load(found: Traversable) -> QIcon:
    if isinstance(found, Path):  # a plain folder: Qt reads the file itself (and scales an SVG)
        return QIcon(str(found))
    pixmap = QPixmap()  # inside a zip: decode the bytes
    pixmap.loadFromData(found.read_bytes())
    return QIcon(pixmap)


@cache
def app_icon() -> QIcon:
    """Transfer Studio's window icon (an empty icon if the resources are missing)."""
    for name in NAMES:
        found = resource(name)
        if found is not None:
            icon = _load(found)
            if not icon.isNull():
                return icon
    return QIcon()
