"""The photo map: every photo a point on a 2-D map of its features, in one pyqtgraph ScatterPlotItem.

:class:`PhotoMap` knows points (map coordinates and the photo's path), their colours and a selection,
nothing of classes: the sort panel colours them and names what is selected. Hovering a point shows the
photo's thumbnail in a small overlay (rendered by an :class:`~gui.background.images.ImageLoader`). A
click selects a point (Ctrl adds it); a free-hand lasso, drawn with Shift+drag or with the lasso mode
on (:meth:`PhotoMap.set_lasso_mode`), selects the points inside it (:func:`points_in_polygon`, in the
map's coordinates). :meth:`PhotoMap.lasso` takes a polygon in map coordinates directly.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QApplication, QGraphicsPathItem, QLabel, QVBoxLayout, QWidget

from gui.background.images import THUMB_SIZE, ImageLoader

logger = logging.getLogger(__name__)

POINT_SIZE = 7
SELECTED_SIZE = 11
#: The ring of a photo the dataset doctor thinks is wrongly labelled.
MARKED_COLOUR = QColor(215, 48, 39)
#: How near (in pixels) the pointer must be to a point to show its photo.
HOVER_RADIUS_PX = 8
_PIXMAP_CACHE = 200


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which of ``points [N, 2]`` lie inside ``polygon [K, 2]`` (even-odd rule; closed implicitly)."""
    inside = np.zeros(len(points), dtype=bool)
    if len(polygon) < 3 or len(points) == 0:
        return inside
    x, y = points[:, 0], points[:, 1]
    xj, yj = polygon[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        for xi, yi in polygon:
            crosses = (yi > y) != (yj > y)
            x_at = (xj - xi) * (y - yi) / (yj - yi) + xi
            inside ^= crosses & (x < x_at)
            xj, yj = xi, yi
    return inside


class PhotoMap(QWidget):
    """The map (``photoMap``, a PlotWidget with one scatter item); ``selectionChanged(indices)`` after
    a click, a lasso or :meth:`select`; ``pointClicked(index)`` after a click on a point."""

    selectionChanged = Signal(list)
    pointClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("photoMapView")
        palette = QApplication.palette()
        self.plot = pg.PlotWidget(background=palette.color(QPalette.ColorRole.Base))
        self.plot.setObjectName("photoMap")
        self.plot.setAccessibleName("Photo map: photos that look alike lie close together")
        item = self.plot.getPlotItem()
        item.setMenuEnabled(False)
        item.hideAxis("left")
        item.hideAxis("bottom")
        item.hideButtons()
        item.getViewBox().setAspectLocked(True)
        self.scatter = pg.ScatterPlotItem(size=POINT_SIZE, pxMode=True)
        self.plot.addItem(self.scatter)
        self.scatter.sigClicked.connect(self._on_clicked)
        self._outline = QGraphicsPathItem()
        pen = QPen(palette.color(QPalette.ColorRole.Highlight))
        pen.setCosmetic(True)
        pen.setWidth(2)
        self._outline.setPen(pen)
        item.getViewBox().addItem(self._outline, ignoreBounds=True)

        self.preview = QLabel(self.plot)
        self.preview.setObjectName("photoMapPreview")
        self.preview.setStyleSheet(
            "QLabel { background: palette(base); border: 1px solid palette(mid); padding: 3px; }"
        )
        self.preview.hide()
        self.loader = ImageLoader(self, size=THUMB_SIZE)
        self.loader.loaded.connect(self._on_thumbnail)
        self._thumbs: OrderedDict[Path, QPixmap] = OrderedDict()

        self._xy: np.ndarray = np.zeros((0, 2), dtype=np.float64)
        self._paths: list[Path] = []
        self._colours: list[QColor] = []
        self._selected: set[int] = set()
        self._marked: set[int] = set()  # the dataset doctor's likely wrong labels: drawn as diamonds
        self._hovered: int | None = None
        self._lasso_mode = False
        self._lasso: list[tuple[float, float]] | None = None
        self.plot.viewport().installEventFilter(self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)

    # -- points --------------------------------------------------------------------------------------
    def set_points(self, xy: np.ndarray, paths: Sequence[Path], colours: Sequence[QColor]) -> None:
        """Show one point per photo at ``xy [N, 2]``; the selection is cleared."""
        self._xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        self._paths = list(paths)
        self._colours = list(colours)
        self._selected = set()
        self._hide_preview()
        self._render()
        self.plot.getPlotItem().getViewBox().autoRange(padding=0.05)

    def set_paths(self, paths: Sequence[Path]) -> None:
        """The photos moved (same points, new file paths)."""
        self._paths = list(paths)

    def set_colours(self, colours: Sequence[QColor]) -> None:
        self._colours = list(colours)
        self._render()

    def set_marked(self, indices: Sequence[int]) -> None:
        """Draw these points as diamonds with a ring (photos whose label looks wrong)."""
        self._marked = set(indices)
        self._render()

    def marked(self) -> list[int]:
        return sorted(self._marked)

    def count(self) -> int:
        return len(self._paths)

    def path(self, index: int) -> Path:
        return self._paths[index]

    def position(self, index: int) -> tuple[float, float]:
        """Where point ``index`` lies, in map (view) coordinates."""
        x, y = self._xy[index]
        return float(x), float(y)

    def positions(self) -> np.ndarray:
        return self._xy.copy()

    def _render(self) -> None:
        n = len(self._xy)
        colours = self._colours if len(self._colours) == n else [QColor(150, 150, 150)] * n
        outline = pg.mkPen(QApplication.palette().color(QPalette.ColorRole.Text), width=1.5)
        none = pg.mkPen(None)
        warning = pg.mkPen(MARKED_COLOUR, width=2)
        brushes = {c.rgba(): pg.mkBrush(c) for c in colours}
        self.scatter.setData(
            pos=self._xy,
            brush=[brushes[c.rgba()] for c in colours],
            size=[
                SELECTED_SIZE if i in self._selected or i in self._marked else POINT_SIZE for i in range(n)
            ],
            pen=[
                outline if i in self._selected else warning if i in self._marked else none for i in range(n)
            ],
            symbol=["d" if i in self._marked else "o" for i in range(n)],
            data=np.arange(n),
        )

    # -- selection -----------------------------------------------------------------------------------
    def selection(self) -> list[int]:
        return sorted(self._selected)

    def select(self, indices: Sequence[int]) -> None:
        self._selected = {i for i in indices if 0 <= i < len(self._xy)}
        self._render()
        self.selectionChanged.emit(self.selection())

    def lasso(self, polygon: Sequence[tuple[float, float]]) -> list[int]:
        """Select the points inside ``polygon`` (map coordinates) and return them."""
        inside = points_in_polygon(self._xy, np.asarray(polygon, dtype=np.float64).reshape(-1, 2))
        self.select([int(i) for i in np.flatnonzero(inside)])
        return self.selection()

    def set_lasso_mode(self, on: bool) -> None:
        """Plain drags draw a lasso (else they pan the map; Shift+drag always draws one)."""
        self._lasso_mode = on

    @Slot(object, object, object)
    def _on_clicked(self, _item: object, points: Sequence[object], event: object) -> None:
        if not len(points):
            return
        index = int(points[0].index())  # type: ignore[attr-defined]
        additive = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)  # type: ignore[attr-defined]
        chosen = set(self._selected) if additive else set()
        chosen ^= {index}
        self.select(sorted(chosen))
        self.pointClicked.emit(index)

    # -- the mouse: lasso and hover ------------------------------------------------------------------
    def _to_view(self, pos: QPoint | QPointF) -> tuple[float, float]:
        scene = self.plot.mapToScene(pos.toPoint() if isinstance(pos, QPointF) else pos)
        point = self.plot.getPlotItem().getViewBox().mapSceneToView(scene)
        return float(point.x()), float(point.y())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind == QEvent.Type.Leave:
            self._hide_preview()
        if not isinstance(event, QMouseEvent):
            return super().eventFilter(watched, event)
        if kind == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            if self._lasso_mode or shift:
                self._lasso = [self._to_view(event.position())]
                self._hide_preview()
                return True
        elif kind == QEvent.Type.MouseMove:
            if self._lasso is not None:
                self._lasso.append(self._to_view(event.position()))
                self._draw_outline()
                return True
            self._hover(event.position())
        elif kind == QEvent.Type.MouseButtonRelease and self._lasso is not None:
            polygon, self._lasso = self._lasso, None
            self._outline.setPath(QPainterPath())
            if len(polygon) >= 3:
                self.lasso(polygon)
            return True
        return super().eventFilter(watched, event)

    def _draw_outline(self) -> None:
        path = QPainterPath()
        if self._lasso:
            path.moveTo(*self._lasso[0])
            for x, y in self._lasso[1:]:
                path.lineTo(x, y)
            path.closeSubpath()
        self._outline.setPath(path)

    def _hover(self, pos: QPointF) -> None:
        if not len(self._xy):
            return
        x, y = self._to_view(pos)
        sx, sy = self.plot.getPlotItem().getViewBox().viewPixelSize()
        d2 = ((self._xy[:, 0] - x) / max(sx, 1e-12)) ** 2 + ((self._xy[:, 1] - y) / max(sy, 1e-12)) ** 2
        nearest = int(np.argmin(d2))
        if d2[nearest] > HOVER_RADIUS_PX**2:
            self._hide_preview()
            return
        place = pos.toPoint() + QPoint(16, 16)
        if nearest != self._hovered:
            self._hovered = nearest
            self._show_preview(nearest)
        self._place_preview(place)

    def _show_preview(self, index: int) -> None:
        path = self._paths[index]
        thumb = self._thumbs.get(path)
        if thumb is None:
            self.preview.setText(path.name)
            self.loader.keep_only({path})  # photos hovered before and not drawn yet are not wanted
            if not self.loader.is_pending(path):
                self.loader.request(path, path)
        else:
            self.preview.setPixmap(thumb)
        self.preview.setToolTip(str(path))
        self.preview.adjustSize()
        self.preview.show()

    def _place_preview(self, place: QPoint) -> None:
        area = self.plot.rect()
        size = self.preview.size()
        x = min(place.x(), area.right() - size.width())
        y = min(place.y(), area.bottom() - size.height())
        if x < place.x():  # no room right of the pointer: go left of it
            x = max(0, place.x() - 32 - size.width())
        self.preview.move(max(0, x), max(0, y))

    def _hide_preview(self) -> None:
        self._hovered = None
        self.preview.hide()

    def hovered(self) -> int | None:
        """The point whose photo the overlay shows (None when none)."""
        return self._hovered if self.preview.isVisible() else None

    @Slot(object, QImage)
    def _on_thumbnail(self, path: Path, image: QImage) -> None:
        if image.isNull():
            return
        self._thumbs[path] = QPixmap.fromImage(image)
        while len(self._thumbs) > _PIXMAP_CACHE:
            self._thumbs.popitem(last=False)
        hovered = self._hovered
        if hovered is not None and hovered < len(self._paths) and self._paths[hovered] == path:
            top_left = self.preview.pos()
            self.preview.setPixmap(self._thumbs[path])
            self.preview.adjustSize()
            self._place_preview(top_left)

    def shutdown(self) -> None:
        self.loader.shutdown()
