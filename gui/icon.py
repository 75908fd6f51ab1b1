"""The application icon: ``resources/transfer-studio.svg`` when present, else the bundled PNG."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtGui import QIcon

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


@cache
def app_icon() -> QIcon:
    """Transfer Studio's window icon (an empty icon if the resources folder is missing)."""
    for name in ("transfer-studio.svg", "transfer-studio.png"):
        path = RESOURCES / name
        if path.is_file():
            return QIcon(str(path))
    return QIcon()
