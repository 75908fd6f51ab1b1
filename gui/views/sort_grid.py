"""The sort view's grid: one thumbnail per photo to sort, captioned with its suggestion ("bees 0.93").

:class:`SortModel` holds :class:`GridItem` rows keyed by the photo's path, so a new order (the
proposals refreshed, a batch accepted) keeps the thumbnails already drawn. Thumbnails are rendered
lazily by an :class:`~gui.background.images.ImageLoader` for the visible rows, as in
:mod:`gui.views.thumbnails`. :class:`SortGrid` is a QListView in icon mode with extended selection
that turns the sorting keys into signals: 1 to 9 ``classKey(index)``, Enter ``acceptKey``, X
``skipKey``; the arrows, Shift/Ctrl selection and Ctrl+A are the list's own.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import (
    QAbstractListModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QDesktopServices,
    QImage,
    QKeyEvent,
    QPalette,
    QPixmap,
    QResizeEvent,
    QShowEvent,
)
from PySide6.QtWidgets import QAbstractItemView, QListView, QWidget

from gui.background.images import THUMB_SIZE, ImageLoader
from gui.views.class_colours import class_colour

if TYPE_CHECKING:
    from engine.sorting.proposals import Proposal

logger = logging.getLogger(__name__)

CACHE_LIMIT = 2000
_DIGITS = {getattr(Qt.Key, f"Key_{n}"): n - 1 for n in range(1, 10)}


@dataclass(frozen=True)
class GridItem:
    """One photo to sort as the grid shows it."""

    path: Path
    caption: str  # under the thumbnail: "bees 0.93"
    tip: str  # the tooltip: the file's path, the suggestion and the runner-up
    tint: QColor | None = None  # the suggested class's colour (the grid's grouping)
    dimmed: bool = False  # skipped


def grid_items(
    paths: Sequence[Path],
    proposals: Mapping[Path, Proposal],
    classes: Sequence[str],
    skipped: set[Path],
    review_order: bool = False,
) -> list[GridItem]:
    """The grid's items for ``paths``: by suggested class (in class order, the surest first) or in
    the proposals' review order; photos without a suggestion last."""
    last = len(classes) + len(paths) + 1

    def place(path: Path) -> tuple[int, float, str]:
        proposal = proposals.get(path)
        if proposal is None:
            return (last, 0.0, path.name)
        if review_order:
            return (proposal.review_rank, 0.0, path.name)
        where = classes.index(proposal.suggested) if proposal.suggested in classes else last - 1
        return (where, -proposal.confidence, path.name)

    return [_item(p, proposals.get(p), classes, p in skipped) for p in sorted(paths, key=place)]


def _item(path: Path, proposal: Proposal | None, classes: Sequence[str], skipped: bool) -> GridItem:
    lines = [str(path)]
    tint = None
    if proposal is None:
        caption = path.name
        lines.append("No suggestion yet")
    else:
        caption = f"{proposal.suggested} {proposal.confidence:.2f}"
        if proposal.suggested in classes:
            tint = class_colour(classes.index(proposal.suggested))
        lines.append(f"Suggested: {proposal.suggested} ({proposal.confidence:.2f})")
        if proposal.runner_up is not None:
            lines.append(f"Runner-up: {proposal.runner_up} ({proposal.runner_up_confidence:.2f})")
    if skipped:
        caption = f"skipped · {caption}"
        lines.append("Skipped (X): left out of Accept all sure; Undo brings it back")
    return GridItem(path, caption, "\n".join(lines), tint, skipped)


def _placeholder(colour: str) -> QPixmap:
    pixmap = QPixmap(THUMB_SIZE, THUMB_SIZE)
    pixmap.fill(QColor(colour))
    return pixmap


class SortModel(QAbstractListModel):
    """The photos to sort in the grid's order, thumbnails filled in as they arrive."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._items: list[GridItem] = []
        self._row: dict[Path, int] = {}
        self._cache: OrderedDict[Path, QPixmap] = OrderedDict()
        self._failed: set[Path] = set()
        self.loader = ImageLoader(self, size=THUMB_SIZE, square=True)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        self._waiting = _placeholder("#e6e6e6")
        self._broken = _placeholder("#f4c7c3")

    def set_items(self, items: Sequence[GridItem]) -> None:
        """Show ``items`` in this order; rows whose photos stay keep their thumbnails. When the order is
        unchanged only the captions change (the selection stays)."""
        items = list(items)
        if [i.path for i in items] == [i.path for i in self._items]:
            self._items = items
            if items:
                self.dataChanged.emit(self.index(0), self.index(len(items) - 1))
            return
        self.beginResetModel()
        self._items = items
        self._row = {item.path: row for row, item in enumerate(items)}
        self.loader.keep_only(set(self._row))
        self.endResetModel()

    def items(self) -> list[GridItem]:
        return list(self._items)

    def path(self, row: int) -> Path:
        return self._items[row].path

    def row_of(self, path: Path) -> int | None:
        return self._row.get(path)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._items)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if not index.isValid() or index.row() >= len(self._items):
            return None
        item = self._items[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return item.caption
        if role == Qt.ItemDataRole.ToolTipRole:
            return item.tip
        if role == Qt.ItemDataRole.DecorationRole:
            if item.path in self._cache:
                self._cache.move_to_end(item.path)
                return self._cache[item.path]
            return self._broken if item.path in self._failed else self._waiting
        if role == Qt.ItemDataRole.BackgroundRole and item.tint is not None:
            tint = QColor(item.tint)
            tint.setAlpha(40 if item.dimmed else 70)
            return QBrush(tint)
        if role == Qt.ItemDataRole.ForegroundRole and item.dimmed:
            return QBrush(QPalette().color(QPalette.ColorRole.PlaceholderText))
        return None

    def request(self, rows: Iterable[int]) -> None:
        """Queue the thumbnails of ``rows`` (those drawn or on their way are skipped)."""
        wanted = [self._items[r].path for r in rows if 0 <= r < len(self._items)]
        self.loader.keep_only(set(wanted))
        for path in wanted:
            if path not in self._cache and path not in self._failed and not self.loader.is_pending(path):
                self.loader.request(path, path)

    @Slot(object, QImage)
    def _on_loaded(self, path: Path, image: QImage) -> None:
        if image.isNull():
            self._failed.add(path)
        else:
            self._cache[path] = QPixmap.fromImage(image)
            while len(self._cache) > CACHE_LIMIT:
                self._cache.popitem(last=False)
        self._changed(path)

    @Slot(object, str)
    def _on_failed(self, path: Path, _message: str) -> None:
        self._failed.add(path)
        self._changed(path)

    def _changed(self, path: Path) -> None:
        row = self._row.get(path)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def shutdown(self) -> None:
        self.loader.shutdown()


class SortGrid(QListView):
    """The photos to sort; keys: 1-9 ``classKey(i)``, Enter ``acceptKey``, X ``skipKey``."""

    classKey = Signal(int)
    acceptKey = Signal()
    skipKey = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sortGrid")
        self.setAccessibleName("Photos to sort")
        self.photos = SortModel(self)
        self.setModel(self.photos)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.setGridSize(QSize(THUMB_SIZE + 24, THUMB_SIZE + 34))
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setWordWrap(False)
        self.setSpacing(4)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(40)
        self._debounce.timeout.connect(self.request_visible)
        self.verticalScrollBar().valueChanged.connect(self._schedule)
        self.doubleClicked.connect(self._open_external)

    # -- items and selection ---------------------------------------------------------------------
    def set_items(self, items: Sequence[GridItem]) -> None:
        """Show ``items``, keeping the selected photos and the current one selected where they stay."""
        selected = self.selected_paths()
        current = self.current_path()
        self.photos.set_items(items)
        self.select_paths(selected, current)
        self._schedule()

    def current_path(self) -> Path | None:
        index = self.currentIndex()
        return self.photos.path(index.row()) if index.isValid() else None

    def selected_paths(self) -> list[Path]:
        """The selected photos in grid order (the current one when nothing is selected)."""
        rows = sorted({index.row() for index in self.selectionModel().selectedIndexes()})
        if not rows and self.currentIndex().isValid():
            rows = [self.currentIndex().row()]
        return [self.photos.path(r) for r in rows if r < self.photos.rowCount()]

    def select_paths(self, paths: Iterable[Path], current: Path | None = None) -> None:
        """Select ``paths`` (those in the grid) and make ``current`` the current photo."""
        selection = QItemSelection()
        for path in paths:
            row = self.photos.row_of(path)
            if row is not None:
                index = self.photos.index(row)
                selection.select(index, index)
        model = self.selectionModel()
        flags = QItemSelectionModel.SelectionFlag
        row = self.photos.row_of(current) if current is not None else None
        if row is not None:
            model.setCurrentIndex(self.photos.index(row), flags.NoUpdate)
            self.scrollTo(self.photos.index(row))
        model.select(selection, flags.ClearAndSelect)

    # -- keys ----------------------------------------------------------------------------------------
    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        plain = mods == Qt.KeyboardModifier.NoModifier
        key = Qt.Key(event.key())
        if plain and key in _DIGITS:
            self.classKey.emit(_DIGITS[key])
        elif plain and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.acceptKey.emit()
        elif plain and key == Qt.Key.Key_X:
            self.skipKey.emit()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    # -- lazy thumbnails -----------------------------------------------------------------------------
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
        """Rows on screen now, plus one screen ahead (from the fixed grid)."""
        count = self.photos.rowCount()
        grid = self.gridSize()
        viewport = self.viewport().size()
        columns = max(1, viewport.width() // max(1, grid.width()))
        first_line = max(0, self.verticalScrollBar().value() // max(1, grid.height()))
        lines = viewport.height() // max(1, grid.height()) + 2
        start = first_line * columns
        return range(min(start, count), min(count, start + 2 * lines * columns))

    @Slot()
    def request_visible(self) -> None:
        if self.isVisible() and self.photos.rowCount():
            self.photos.request(self.visible_rows())

    @Slot(QModelIndex)
    def _open_external(self, index: QModelIndex) -> None:
        if index.isValid():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.photos.path(index.row()))))

    def shutdown(self) -> None:
        self.photos.shutdown()
