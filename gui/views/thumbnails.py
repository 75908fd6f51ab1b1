"""A lazily loaded thumbnail grid: only the visible images are decoded, by the window's image loader.

:class:`ThumbnailGrid` is a QListView in icon mode with a fixed grid, so its layout costs nothing
even for tens of thousands of files. After each scroll or resize (debounced) it asks the loader
(:class:`gui.background.images.ImageLoader`) for the thumbnails of the visible rows plus one screen
ahead; queued requests for rows that scrolled away are dropped. The GUI thread only turns finished
images into pixmaps. A bounded cache keeps memory flat for large folders.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Slot,
)
from PySide6.QtGui import QColor, QDesktopServices, QImage, QPainter, QPixmap, QResizeEvent, QShowEvent
from PySide6.QtWidgets import QAbstractItemView, QListView, QWidget

from gui.background.images import THUMB_SIZE, ImageLoader

logger = logging.getLogger(__name__)

CACHE_LIMIT = 2000


class ThumbnailModel(QAbstractListModel):
    """File names with decoded thumbnails filled in as they arrive."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._paths: list[Path] = []
        self._tips: list[str] = []
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self._failed: set[int] = set()
        self.loader = ImageLoader(self, size=THUMB_SIZE, square=True)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        self._placeholder = self._make_placeholder(QColor("#e6e6e6"))
        self._broken = self._make_placeholder(QColor("#f4c7c3"), "?")

    @staticmethod
    def _make_placeholder(colour: QColor, text: str = "") -> QPixmap:
        pixmap = QPixmap(THUMB_SIZE, THUMB_SIZE)
        pixmap.fill(colour)
        if text:
            painter = QPainter(pixmap)
            painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, text)
            painter.end()
        return pixmap

    def set_paths(self, paths: Sequence[Path], tips: Sequence[str] | None = None) -> None:
        self.beginResetModel()
        self.loader.clear()
        self._paths = list(paths)
        self._tips = list(tips) if tips is not None else [str(p) for p in self._paths]
        self._cache.clear()
        self._failed.clear()
        self.endResetModel()

    def path(self, row: int) -> Path:
        return self._paths[row]

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._paths)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> str | QPixmap | None:
        if not index.isValid() or index.row() >= len(self._paths):
            return None
        row = index.row()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._paths[row].name
        if role == Qt.ItemDataRole.DecorationRole:
            if row in self._cache:
                self._cache.move_to_end(row)
                return self._cache[row]
            return self._broken if row in self._failed else self._placeholder
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tips[row]
        return None

    def loaded_count(self) -> int:
        return len(self._cache) + len(self._failed)

    def request(self, rows: Sequence[int]) -> None:
        """Queue decoding of ``rows`` (already cached or pending rows are skipped)."""
        wanted = set(rows)
        self.loader.keep_only(wanted)  # rows asked for earlier but not started have scrolled away
        for row in rows:
            if row in self._cache or row in self._failed or self.loader.is_pending(row):
                continue
            if 0 <= row < len(self._paths):
                self.loader.request(row, self._paths[row])

    @Slot(object, QImage)
    def _on_loaded(self, row: int, image: QImage) -> None:
        if image.isNull():
            self._failed.add(row)
        else:
            self._cache[row] = QPixmap.fromImage(image)
            while len(self._cache) > CACHE_LIMIT:
                self._cache.popitem(last=False)
        self._changed(row)

    @Slot(object, str)
    def _on_failed(self, row: int, _message: str) -> None:
        self._failed.add(row)
        self._changed(row)

    def _changed(self, row: int) -> None:
        index = self.index(row)
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def shutdown(self) -> None:
        """Drop queued jobs and wait for running ones (called when the window closes)."""
        self.loader.shutdown()


class ThumbnailGrid(QListView):
    """Icon-mode list of the selected class's images; double-click opens an image in the system viewer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("thumbnailGrid")
        self.setAccessibleName("Images of the selected class")
        self.thumbs = ThumbnailModel(self)
        self.setModel(self.thumbs)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(500)
        self.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.setGridSize(QSize(THUMB_SIZE + 24, THUMB_SIZE + 34))
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setWordWrap(False)
        self.setSpacing(4)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(40)
        self._debounce.timeout.connect(self.request_visible)
        self.verticalScrollBar().valueChanged.connect(self._schedule)
        self.doubleClicked.connect(self._open_external)

    def set_paths(self, paths: Sequence[Path], tips: Sequence[str] | None = None) -> None:
        self.thumbs.set_paths(paths, tips)
        self.scrollToTop()
        self._schedule()

    @Slot()
    def _schedule(self) -> None:
        self._debounce.start()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._schedule()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._schedule()

    def visible_rows(self) -> range:
        """Rows on screen now, plus one screen ahead (computed from the fixed grid, O(1))."""
        count = self.thumbs.rowCount()
        grid = self.gridSize()
        viewport = self.viewport().size()
        columns = max(1, viewport.width() // max(1, grid.width()))
        first_line = max(0, self.verticalScrollBar().value() // max(1, grid.height()))
        lines = viewport.height() // max(1, grid.height()) + 2
        start = first_line * columns
        stop = min(count, start + 2 * lines * columns)
        return range(min(start, count), stop)

    @Slot()
    def request_visible(self) -> None:
        if self.isVisible() and self.thumbs.rowCount():
            self.thumbs.request(list(self.visible_rows()))

    @Slot(QModelIndex)
    def _open_external(self, index: QModelIndex) -> None:
        if index.isValid():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.thumbs.path(index.row()))))

    def shutdown(self) -> None:
        self.thumbs.shutdown()
