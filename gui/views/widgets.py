"""Small shared widgets and helpers: the inline message banner, drop-path parsing, time formatting."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal, Slot
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QStackedWidget, QToolButton, QWidget

_BANNER_STYLES = {
    "error": ("#fdecea", "#8a1c12", "#e0a39b"),
    "warning": ("#fff4e0", "#7a4a00", "#e8c48a"),
    "success": ("#e8f5e9", "#1b5e20", "#a5d6a7"),
    "info": ("#e8f0fe", "#174ea6", "#a8c7fa"),
}


class MessageBanner(QFrame):
    """An inline, dismissable message (error, warning, success, info): never a blocking dialog."""

    closed = Signal()

    def __init__(self, object_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setAccessibleName(object_name)
        self.level = "info"
        self.label = QLabel()
        self.label.setObjectName(f"{object_name}Text")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )
        self.label.setOpenExternalLinks(False)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss message")
        close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_message(self, text: str, level: str = "info", detail: str = "") -> None:
        """Show ``text`` (rich text, from the app) followed by ``detail`` (plain text, e.g. an error
        message that may hold ``<`` and ``>``, which is escaped)."""
        if detail:
            text = f"{text} {html.escape(detail)}"
        self.level = level
        background, foreground, border = _BANNER_STYLES.get(level, _BANNER_STYLES["info"])
        self.setStyleSheet(
            f"#{self.objectName()} {{ background: {background}; border: 1px solid {border};"
            f" border-radius: 4px; }} #{self.objectName()} QLabel {{ color: {foreground}; }}"
        )
        self.label.setText(text)
        self.setAccessibleDescription(self.label.text())
        self.show()

    def text(self) -> str:
        return self.label.text()

    @Slot()
    def dismiss(self) -> None:
        self.hide()
        self.closed.emit()


def dropped_paths(mime: QMimeData) -> list[Path]:
    """Local files and folders carried by a drag-and-drop."""
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


def format_duration(seconds: float) -> str:
    """42 -> '0:42', 3725 -> '1:02:05'."""
    if seconds != seconds or seconds < 0:  # NaN or negative
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_seconds(seconds: float) -> str:
    """E.g. ``4.2 s`` below a minute (a run of half a second is not ``0:00``), else ``1:02``."""
    return f"{seconds:.1f} s" if 0 <= seconds < 60 else format_duration(seconds)


#: Said beside the time of a run whose backbone features were all read from the cache.
CACHED_NOTE = "features from the cache"
CACHED_TIP = (
    "The backbone's features of these photos were already in the cache (an earlier run computed them), "
    "so this run skipped its feature pass: a first run of it takes longer."
)


def heading(text: str) -> QLabel:
    """A bold section heading label."""
    label = QLabel(text)
    font = QFont(label.font())
    font.setBold(True)
    label.setFont(font)
    return label


def hint_label(text: str) -> QLabel:
    """A wrapped, de-emphasised explanatory label."""
    label = QLabel(text)
    label.setWordWrap(True)
    palette = label.palette()
    palette.setColor(QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText))
    label.setPalette(palette)
    return label


def empty_state_pages(hint: str, object_name: str, content: QWidget) -> QStackedWidget:
    """A stack whose page 0 is a dashed drop-here hint (``object_name``) and page 1 is ``content``."""
    empty = QLabel(hint)
    empty.setObjectName(object_name)
    empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
    empty.setWordWrap(True)
    empty.setStyleSheet("QLabel { border: 2px dashed palette(mid); border-radius: 12px; }")
    pages = QStackedWidget()
    pages.addWidget(empty)
    pages.addWidget(content)
    return pages
