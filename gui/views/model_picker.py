"""The searchable model picker: a combo box whose pop-up is a table of the whole model catalog.

Columns: model name, family, parameter count, input size, and whether the pretrained weights work
offline (built in), are cached, or need a download. Typing filters by name (a contains-completer).
The catalog itself is loaded off the GUI thread by the window and handed over with :meth:`set_catalog`.

:class:`RecommendedModels` sits under it: "Recommended for your photos", one button per model that
``engine.experiments.recommend`` suggests for the open dataset, on one row (the Train tab must still fit
a 1280 x 800 screen), each with its reason in words, its time here and its download as its tooltip; a
click picks it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QCompleter,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeView,
    QWidget,
)

if TYPE_CHECKING:
    from engine.experiments.recommend import Recommendation
    from engine.models.registry import ModelInfo

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
NAME_ROLE = Qt.ItemDataRole.UserRole + 1
COLUMNS = ("Model", "Family", "Parameters", "Input", "Weights")
WEIGHTS_TEXT = {
    "offline": "built in (offline)",
    "cached": "cached",
    "download": "needs download",
}


def format_params(n: int) -> str:
    """4_700_000 -> '4.7 M'."""
    if n >= 1_000_000_000:
        return f"{n / 1e9:.1f} B"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    return f"{n / 1e3:.0f} k"


def describe_model(info: ModelInfo, status: str) -> str:
    """One line for the label under the picker: size, input, published figure, cost, licence, weights."""
    from engine.models.costs import model_cost

    published = f" · ImageNet {info.published_top1:.1f}%" if info.published_top1 is not None else ""
    cost = model_cost(info.name)
    weights = WEIGHTS_TEXT.get(status, status)
    if status == "download" and info.download_bytes:
        weights += f" ({info.download_bytes / 1e6:.0f} MB)"
    return (
        f"{info.family} · {format_params(info.num_params)} parameters · {info.input_size} px{published} · "
        f"{'~' if not cost.measured else ''}{cost.forward_ms:.0f} ms/photo · {info.licence} · {weights}"
    )


class ModelPicker(QComboBox):
    """Editable, searchable model combo box; ``modelChanged(name)`` when the choice changes."""

    modelChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelPicker")
        self.setAccessibleName("Model")
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.setMaxVisibleItems(16)
        self._details: dict[str, str] = {}
        self._status: dict[str, str] = {}
        self._last = DEFAULT_MODEL
        self._model = QStandardItemModel(0, len(COLUMNS), self)
        self._model.setHorizontalHeaderLabels(list(COLUMNS))
        self.setModel(self._model)
        view = QTreeView(self)
        view.setRootIsDecorated(False)
        view.setUniformRowHeights(True)
        view.setAllColumnsShowFocus(True)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setMinimumWidth(620)
        self.setView(view)
        self.setModelColumn(0)

        completer = QCompleter(self)
        completer.setModel(self._model)
        completer.setCompletionColumn(0)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        completer.setMaxVisibleItems(12)
        self.setCompleter(completer)
        completer.activated.connect(self._on_completed)
        search = self.lineEdit()
        assert search is not None  # an editable combo box has one
        self.search = search
        self.search.editingFinished.connect(self._on_editing_finished)
        self.search.setPlaceholderText("Type to search models…")
        self.currentIndexChanged.connect(self._on_index_changed)

        self._add_row(DEFAULT_MODEL, "EfficientNet-Lite", "", "", "offline")

    # -- content -------------------------------------------------------------------------------
    def _add_row(self, name: str, family: str, params: str, size: str, status: str) -> None:
        cells = [QStandardItem(text) for text in (name, family, params, size)]
        weights = QStandardItem(WEIGHTS_TEXT.get(status, status))
        if status == "download":
            weights.setForeground(QBrush(QColor("#b35900")))
        cells.append(weights)
        for cell in cells:
            cell.setEditable(False)
            cell.setData(name, NAME_ROLE)
        cells[0].setToolTip(self._details.get(name, name))
        self._model.appendRow(cells)

    def set_catalog(self, entries: Iterable[tuple[ModelInfo, str]]) -> None:
        """Fill from ``(ModelInfo, weights_status)`` pairs, keeping the current choice."""
        current = self.current_model()
        self.blockSignals(True)
        try:
            self._model.removeRows(0, self._model.rowCount())
            for info, status in entries:
                self._status[info.name] = status
                self._details[info.name] = describe_model(info, status)
                self._add_row(
                    info.name,
                    info.family,
                    format_params(info.num_params),
                    f"{info.input_size} px",
                    status,
                )
        finally:
            self.blockSignals(False)
        view = self.view()
        if isinstance(view, QTreeView):
            for column in range(len(COLUMNS)):
                view.resizeColumnToContents(column)
        if not self.select_model(current):
            self.select_model(DEFAULT_MODEL)
        self.modelChanged.emit(self.current_model())

    def model_names(self) -> list[str]:
        return [self._model.item(r, 0).text() for r in range(self._model.rowCount())]

    def details(self, name: str) -> str:
        """The one-line description of ``name`` ('' until the catalog has loaded)."""
        return self._details.get(name, "")

    def weights_status(self, name: str) -> str:
        return self._status.get(name, "offline" if name == DEFAULT_MODEL else "")

    def current_model(self) -> str:
        index = self.currentIndex()
        if index < 0:
            return self._last
        return str(self.itemData(index, NAME_ROLE) or self.itemText(index))

    def select_model(self, name: str) -> bool:
        """Select ``name``; False if the catalog has no such model."""
        matches = self._model.findItems(name, Qt.MatchFlag.MatchExactly, 0)
        if not matches:
            return False
        self.setCurrentIndex(matches[0].row())
        return True

    # -- interaction -------------------------------------------------------------------------------
    @Slot(int)
    def _on_index_changed(self, index: int) -> None:
        if index < 0:
            return
        name = self.current_model()
        if name != self._last:
            self._last = name
            self.modelChanged.emit(name)

    @Slot(str)
    def _on_completed(self, text: str) -> None:
        self.select_model(text)

    @Slot()
    def _on_editing_finished(self) -> None:
        text = self.search.text().strip()
        if not self.select_model(text):
            self.search.setText(self.itemText(self.currentIndex()))


class RecommendedModels(QWidget):
    """“Recommended:” and a button per recommended model on one row (so the Train tab still fits a
    1280 x 800 screen); each button's tooltip is the reason in words, with its time here and its
    download; ``chosen(name)`` when one is clicked. Hidden until there are recommendations."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("recommendedModels")
        self.setAccessibleName("Recommended models for your photos")
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.heading = QLabel("<b>Recommended:</b>")
        self.heading.setToolTip(
            "Recommended for your photos: the models most likely to do best on them within a few minutes "
            "here (hover over a model for why)"
        )
        self._layout.addWidget(self.heading)
        self._layout.addStretch(1)
        self.buttons: list[QPushButton] = []
        self.recommendations: list[Recommendation] = []
        self.hide()

    def set_recommendations(self, recommendations: list[Recommendation]) -> None:
        from engine.core.sizes import format_size
        from engine.experiments.estimates import describe_seconds

        for widget in self.buttons:
            self._layout.removeWidget(widget)
            widget.deleteLater()
        self.buttons = []
        self.recommendations = list(recommendations)
        for n, rec in enumerate(self.recommendations):
            short = rec.model.removeprefix("timm:").split(".", 1)[0]
            button = QPushButton(short)
            button.setObjectName(f"recommendedModel{n}")
            button.setAccessibleName(f"Use the recommended model {rec.model}")
            where = (
                f"a {format_size(rec.download_bytes)} download" if rec.download_bytes else "on this computer"
            )
            button.setToolTip(
                f"Use {rec.model}: about {describe_seconds(rec.seconds)} here, {where}.\n\n{rec.reason}"
            )
            button.setAccessibleDescription(rec.reason)
            button.setStatusTip(rec.reason)  # the window's status bar says why while the pointer is on it
            button.clicked.connect(lambda _checked=False, name=rec.model: self.chosen.emit(name))
            self._layout.insertWidget(1 + n, button)
            self.buttons.append(button)
        self.setVisible(bool(self.recommendations))

    def clear(self) -> None:
        self.set_recommendations([])
