"""A lazily loaded thumbnail grid: only the visible images are decoded, on a private thread pool.

:class:`ThumbnailGrid` is a QListView in icon mode with a fixed grid, so its layout costs nothing
even for tens of thousands of files. After each scroll or resize (debounced) it asks the loader for
the thumbnails of the visible rows plus one screen ahead; pending jobs for rows that scrolled away
are dropped. Decoding uses PIL's JPEG draft mode (fast, downscaled DCT) and produces a QImage in the
pool thread; the GUI thread only turns finished images into pixmaps. A bounded cache keeps memory
flat for large folders.
"""

from __future__ import annotations

import functools
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
    QThreadPool,
    QTimer,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QDesktopServices, QImage, QPainter, QPixmap, QResizeEvent, QShowEvent
from PySide6.QtWidgets import QAbstractItemView, QListView, QWidget

from gui.background.worker import lower_thread_priority

logger = logging.getLogger(__name__)

THUMB_SIZE = 112
CACHE_LIMIT = 2000


def _centred(image: QImage, size: int) -> QImage:
    """``image`` centred on a transparent ``size`` x ``size`` canvas (so grid labels line up)."""
    canvas = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    canvas.fill(Qt.GlobalColor.transparent)
    painter = QPainter(canvas)
    painter.drawImage((size - image.width()) // 2, (size - image.height()) // 2, image)
    painter.end()
    return canvas


def load_thumbnail(path: str | Path, size: int = THUMB_SIZE, square: bool = False) -> QImage:
    """Decode ``path`` into a QImage whose longer side is at most ``size`` (null on failure).

    ``square`` centres it on a transparent square canvas. Safe on any thread (QImage, not QPixmap).
    """
    from PIL import Image, ImageOps  # only on pool threads

    try:
        with Image.open(path) as im:
            im.draft("RGB", (size * 2, size * 2))
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA", "P"):
                im = im.convert("RGBA")
                flat = Image.new("RGB", im.size, (255, 255, 255))
                flat.paste(im, mask=im.getchannel("A"))
                im = flat
            else:
                im = im.convert("RGB")
            im.thumbnail((size, size))
            data = im.tobytes()
            image = QImage(data, im.width, im.height, 3 * im.width, QImage.Format.Format_RGB888)
            return _centred(image, size) if square else image.copy()
    except Exception as exc:  # noqa: BLE001 - a broken file just shows a placeholder
        logger.debug("no thumbnail for %s: %s", path, exc)
        return QImage()


class _Carrier(QObject):
    loaded = Signal(int, int, QImage)  # generation, row, image


def _load_job(carrier: _Carrier, generation: int, row: int, path: Path) -> None:
    """Runs on a pool thread: decode, then hand the image to the GUI thread (queued signal)."""
    lower_thread_priority()
    carrier.loaded.emit(generation, row, load_thumbnail(path, square=True))


class ThumbnailModel(QAbstractListModel):
    """File names with decoded thumbnails filled in as they arrive."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._paths: list[Path] = []
        self._tips: list[str] = []
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self._failed: set[int] = set()
        self._pending: set[int] = set()
        self.generation = 0
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._carrier = _Carrier(self)
        self._carrier.loaded.connect(self._on_loaded)
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
        self.generation += 1
        self.pool.clear()
        self._paths = list(paths)
        self._tips = list(tips) if tips is not None else [str(p) for p in self._paths]
        self._cache.clear()
        self._failed.clear()
        self._pending.clear()
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
        self.pool.clear()  # rows asked for earlier but not started have scrolled away
        wanted = set(rows)
        self._pending = {r for r in self._pending if r in wanted}
        generation = self.generation
        for row in rows:
            if row in self._cache or row in self._failed or row in self._pending:
                continue
            if not 0 <= row < len(self._paths):
                continue
            self._pending.add(row)
            self.pool.start(functools.partial(_load_job, self._carrier, generation, row, self._paths[row]))

    @Slot(int, int, QImage)
    def _on_loaded(self, generation: int, row: int, image: QImage) -> None:
        if generation != self.generation:
            return
        self._pending.discard(row)
        if image.isNull():
            self._failed.add(row)
        else:
            self._cache[row] = QPixmap.fromImage(image)
            while len(self._cache) > CACHE_LIMIT:
                self._cache.popitem(last=False)
        index = self.index(row)
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def shutdown(self) -> None:
        """Drop queued jobs and wait for running ones (called when the window closes)."""
        self.generation += 1
        self.pool.clear()
        self.pool.waitForDone(5000)


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
