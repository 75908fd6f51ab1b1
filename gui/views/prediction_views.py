"""Views for predictions: the top-k table with probability bars (``predictResults``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

if TYPE_CHECKING:
    from engine.inference.predict import Prediction

PROBABILITY_ROLE = Qt.ItemDataRole.UserRole + 7


def confidence_item(probability: float | None) -> QTableWidgetItem:
    """A right-aligned '97.3%' cell that sorts by the number."""
    item = QTableWidgetItem("" if probability is None else f"{probability:.1%}")
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if probability is not None:
        item.setData(PROBABILITY_ROLE, probability)
    return item


class ProbabilityBarDelegate(QStyledItemDelegate):
    """Paints a cell's probability as a progress bar with the percentage on it."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:  # fmt: skip
        value = index.data(PROBABILITY_ROLE)
        if value is None:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(4, 4, -4, -4)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = round(float(value) * 1000)
        bar.text = f"{float(value):.1%}"
        bar.textVisible = True
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        bar.state = option.state | QStyle.StateFlag.State_Horizontal
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)


class ProbabilityTable(QTableWidget):
    """Top-k classes of one image, best first, each with a probability bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setObjectName("predictResults")
        self.setAccessibleName("Top classes for the selected image")
        self.setHorizontalHeaderLabels(["Class", "Probability"])
        self.verticalHeader().hide()
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.setItemDelegateForColumn(1, ProbabilityBarDelegate(self))
        self.verticalHeader().setDefaultSectionSize(28)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def show_prediction(self, prediction: Prediction) -> None:
        """Fill from an ``engine.inference.predict.Prediction`` (or show why it has none)."""
        self.clear_results()
        if prediction.error:
            self.setRowCount(1)
            self.setItem(0, 0, QTableWidgetItem("unreadable"))
            self.setItem(0, 1, QTableWidgetItem(prediction.error))
            return
        self.setRowCount(len(prediction.top))
        for row, (name, probability) in enumerate(prediction.top):
            self.setItem(row, 0, QTableWidgetItem(name))
            self.setItem(row, 1, confidence_item(probability))
        self.updateGeometry()

    def clear_results(self) -> None:
        self.setRowCount(0)
        self.updateGeometry()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override: exactly as tall as its rows
        rows = max(2, self.rowCount())
        height = self.horizontalHeader().height() + rows * self.verticalHeader().defaultSectionSize()
        return QSize(super().sizeHint().width(), height + 2 * self.frameWidth())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self.sizeHint()

    def class_names(self) -> list[str]:
        items = (self.item(r, 0) for r in range(self.rowCount()))
        return [item.text() for item in items if item is not None]
