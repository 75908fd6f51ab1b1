"""Live training plots (pyqtgraph): loss and accuracy per epoch, and the loss of every batch.

Exactly one PlotDataItem per series, updated with ``setData`` from whole arrays on the GUI thread:
``lossPlot`` holds train loss and val loss, ``accuracyPlot`` train and val accuracy (in %), and the
smaller ``batchLossPlot`` the training loss of each batch (x = fractional epoch, so both line up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QSplitter, QVBoxLayout, QWidget

TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#ff7f0e"
BATCH_COLOUR = "#7f7f7f"


def make_plot(name: str, accessible: str, title: str, y_label: str) -> pg.PlotWidget:
    palette = QApplication.palette()
    background = palette.color(QPalette.ColorRole.Base)
    foreground = palette.color(QPalette.ColorRole.Text)
    plot = pg.PlotWidget(background=background)
    plot.setObjectName(name)
    plot.setAccessibleName(accessible)
    item = plot.getPlotItem()
    item.setTitle(title, color=foreground.name(), size="10pt")
    item.setLabel("left", y_label, color=foreground.name())
    item.setLabel("bottom", "epoch", color=foreground.name())
    item.showGrid(x=True, y=True, alpha=0.25)
    item.setMenuEnabled(False)
    for axis in ("left", "bottom"):
        item.getAxis(axis).setTextPen(foreground)
        item.getAxis(axis).setPen(QColor(foreground).lighter(150))
        # Major ticks only: minor grid lines made each repaint several times slower.
        item.getAxis(axis).setStyle(maxTickLevel=0)
        item.getAxis(axis).enableAutoSIPrefix(False)
    plot.setMinimumHeight(150)
    return plot


#: Room right of the last epoch on the x axes, in epochs.
X_MARGIN_EPOCHS = 0.5
#: The share of a plot's height kept free of data for its legend.
LEGEND_BAND = 0.3
#: Below this (in the axis' units, % for accuracy), the floor comes into view.
NEAR_FLOOR = 10.0


def fit_y(
    plot: pg.PlotWidget,
    values: Sequence[float],
    *,
    legend: str,
    floor: float | None = None,
    ceiling: float | None = None,
) -> None:
    """Fit the y axis to ``values`` with a margin, and a free band at the ``legend`` side ("top" or
    "bottom") so that the legend covers no point. ``floor`` is shown when the values come near it."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    span = max(high - low, 1e-3 * max(1.0, abs(high)), 2.0 if ceiling else 0.0)
    low, high = low - 0.08 * span, high + 0.08 * span
    if floor is not None and low - floor < NEAR_FLOOR:
        low = floor
    if ceiling is not None:
        high = min(high, ceiling + 0.02 * span)
    band = (high - low) * LEGEND_BAND / (1 - LEGEND_BAND)
    if legend == "top":
        high += band
    else:
        low -= band
    plot.setYRange(low, high, padding=0)


def _curve(plot: pg.PlotWidget, name: str, colour: str, symbol: str | None = "o") -> pg.PlotDataItem:
    pen = pg.mkPen(colour, width=2)
    curve = plot.plot(
        [], [], pen=pen, name=name, symbol=symbol, symbolSize=6, symbolBrush=colour, symbolPen=None
    )
    curve.setClipToView(True)
    return curve


class TrainingPlots(QWidget):
    """The three plots of the Train tab; :meth:`clear` before a run, then feed epoch and batch values."""

    def __init__(self, parent: QWidget | None = None, name_prefix: str = "") -> None:
        """``name_prefix`` tells a second set apart (the Bake-off tab's ``bakeoffLossPlot``...)."""
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)

        def name(base: str) -> str:
            return f"{name_prefix}{base[0].upper()}{base[1:]}" if name_prefix else base

        self.loss_plot = make_plot(name("lossPlot"), "Loss per epoch", "Loss", "loss")
        self.accuracy_plot = make_plot(name("accuracyPlot"), "Accuracy per epoch", "Accuracy", "%")
        self.batch_plot = make_plot(
            name("batchLossPlot"), "Training loss per batch", "Training loss per batch", "loss"
        )
        # Loss falls and accuracy rises: keep each legend out of its curves' way.
        self.loss_plot.addLegend(offset=(-10, 10))
        self.accuracy_plot.addLegend(offset=(-10, -10))
        self.accuracy_plot.setYRange(0, 100, padding=0.02)  # until the first epoch: then fitted to it
        self.accuracy_plot.getPlotItem().getViewBox().setLimits(yMin=-5, yMax=105)
        self.train_loss = _curve(self.loss_plot, "train", TRAIN_COLOUR)
        self.val_loss = _curve(self.loss_plot, "val", VAL_COLOUR)
        self.train_acc = _curve(self.accuracy_plot, "train", TRAIN_COLOUR)
        self.val_acc = _curve(self.accuracy_plot, "val", VAL_COLOUR)
        self.batch_loss = _curve(self.batch_plot, "batch loss", BATCH_COLOUR, symbol=None)
        self.batch_loss.setPen(pg.mkPen(BATCH_COLOUR, width=1))
        self.batch_loss.setDownsampling(auto=True, method="peak")
        self.best_marker = pg.InfiniteLine(
            angle=90, movable=False, pen=pg.mkPen("#2ca02c", width=1, style=Qt.PenStyle.DashLine)
        )
        self.best_marker.setVisible(False)
        self.accuracy_plot.addItem(self.best_marker)

        top = QSplitter(Qt.Orientation.Horizontal)
        top.setObjectName("plotsTopSplitter")
        top.addWidget(self.loss_plot)
        top.addWidget(self.accuracy_plot)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setObjectName("plotsSplitter")
        splitter.addWidget(top)
        splitter.addWidget(self.batch_plot)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._epochs: list[float] = []
        self._series: dict[str, list[float]] = {}
        self._batch_x: list[float] = []
        self._batch_y: list[float] = []
        self.clear()

    def clear(self, epochs: int | None = None) -> None:
        self._epochs = []
        self._series = {"train_loss": [], "val_loss": [], "train_acc": [], "val_acc": []}
        self._batch_x, self._batch_y = [], []
        for curve in (self.train_loss, self.val_loss, self.train_acc, self.val_acc, self.batch_loss):
            curve.setData([], [])
        self.best_marker.setVisible(False)
        self.accuracy_plot.setYRange(0, 100, padding=0.02)
        self.loss_plot.enableAutoRange(axis="y")
        self.set_epoch_axes(epochs or 1)

    def set_epoch_axes(self, epochs: int) -> None:
        """0 to half an epoch past the last one on every x axis: the last point never sits on the edge."""
        for plot in (self.loss_plot, self.accuracy_plot, self.batch_plot):
            plot.setXRange(0, max(1, epochs) + X_MARGIN_EPOCHS, padding=0)

    def set_planned_epochs(self, epochs: int) -> None:
        """Show 0..epochs on the x axes while no run has drawn anything yet."""
        if not self._epochs and not self._batch_x:
            self.set_epoch_axes(epochs)

    def add_epoch(self, epoch: int, train_loss: float, val_loss: float, train_acc: float,
                  val_acc: float) -> None:  # fmt: skip
        """Append one epoch (accuracies as fractions 0..1) and redraw the four epoch curves."""
        self._epochs.append(float(epoch))
        for key, value in (("train_loss", train_loss), ("val_loss", val_loss),
                           ("train_acc", train_acc * 100), ("val_acc", val_acc * 100)):  # fmt: skip
            self._series[key].append(value if math.isfinite(value) else float("nan"))
        x = self._epochs
        self.train_loss.setData(x, self._series["train_loss"])
        self.val_loss.setData(x, self._series["val_loss"])
        self.train_acc.setData(x, self._series["train_acc"])
        self.val_acc.setData(x, self._series["val_acc"])
        # Each legend has a band of its own: the loss plot's at the top (losses fall), the accuracy
        # plot's at the bottom (accuracies rise); accuracy fits its values, with 0 in view only when
        # the values come near it.
        losses = self._series["train_loss"] + self._series["val_loss"]
        accuracies = self._series["train_acc"] + self._series["val_acc"]
        fit_y(self.loss_plot, losses, legend="top")
        fit_y(self.accuracy_plot, accuracies, legend="bottom", floor=0.0, ceiling=100.0)

    def mark_best(self, epoch: int) -> None:
        self.best_marker.setValue(epoch)
        self.best_marker.setVisible(True)

    def add_batches(self, points: Sequence[tuple[float, float]]) -> None:
        """Append per-batch (fractional epoch, loss) points."""
        finite = [(x, y) for x, y in points if math.isfinite(y)]
        if not finite:
            return
        self._batch_x.extend(x for x, _ in finite)
        self._batch_y.extend(y for _, y in finite)
        self.batch_loss.setData(self._batch_x, self._batch_y)

    def series_lengths(self) -> dict[str, int]:
        return {key: len(values) for key, values in self._series.items()}
