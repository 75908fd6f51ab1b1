"""The bake-off's leaderboard: one row per finished candidate, best validation accuracy first.

``openRequested`` when a row is double-clicked or "Open in Predict" is chosen from its menu; each row
carries its candidate's bundle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QPoint, Qt, Signal, Slot
from PySide6.QtGui import QAction, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QHeaderView,
    QMenu,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from engine.core.sizes import format_size
from gui.views.widgets import CACHED_NOTE, CACHED_TIP, format_seconds

if TYPE_CHECKING:
    from engine.experiments.bakeoff import Entry

COLUMNS = ("#", "Model", "Strategy", "Best val accuracy", "Time", "Size")
TIME = COLUMNS.index("Time")


class Leaderboard(QTableWidget):
    """The ranked candidates of a bake-off (``leaderboard``)."""

    openRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setObjectName("leaderboard")
        self.setAccessibleName("Leaderboard")
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)
        self.setMinimumHeight(72)
        self.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        header = self.horizontalHeader()
        for column in range(len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._show_menu)
        self.doubleClicked.connect(self._on_double_clicked)

    def fill(self, board: list[Entry], final: bool) -> None:
        """Show ``board`` (best first); ``final`` stars the winner."""
        self.setRowCount(len(board))
        bold = QFont(self.font())
        bold.setBold(True)
        for row, entry in enumerate(board):
            winner = final and row == 0
            texts = (
                f"★ {row + 1}" if winner else str(row + 1),
                entry.model,
                entry.strategy,
                f"{entry.best_val_acc:.1%}",
                format_seconds(entry.seconds) + (f" · {CACHED_NOTE}" if entry.features_cached else ""),
                format_size(entry.size_bytes) if entry.size_bytes else "–",
            )
            for column, text in enumerate(texts):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, entry.bundle)
                item.setToolTip(
                    f"Best epoch {entry.best_epoch} of {entry.epochs} · run folder: {entry.run_dir}"
                    + (f"\n{CACHED_TIP}" if entry.features_cached and column == TIME else "")
                )
                if column in (0, 3, 4, 5):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if winner:
                    item.setFont(bold)
                self.setItem(row, column, item)

    def selected_bundle(self) -> str | None:
        model = self.selectionModel()
        rows = model.selectedRows() if model is not None else []
        return self.bundle_at(rows[0].row()) if rows else None

    def bundle_at(self, row: int) -> str | None:
        """The bundle of row ``row`` (None if it has none)."""
        item = self.item(row, 0)
        bundle: Any = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        return str(bundle) if bundle else None

    @Slot(QModelIndex)
    def _on_double_clicked(self, _index: QModelIndex) -> None:
        self.openRequested.emit()

    @Slot(QPoint)
    def _show_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if not index.isValid() or self.bundle_at(index.row()) is None:
            return
        self.selectRow(index.row())
        menu = QMenu(self)
        action = QAction("Open in Predict", menu)
        action.triggered.connect(self.openRequested)
        menu.addAction(action)
        menu.exec(self.viewport().mapToGlobal(pos))
