"""How honest a model's probabilities are, for the Evaluate tab: the reliability diagram
(``reliabilityPlot``), the calibration error before and after (``calibrationSummary``), accuracy and
coverage at thresholds (``coverageTable``) and how many photos "none of these" would reject."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.views.plots import TRAIN_COLOUR, make_plot

AFTER_COLOUR = TRAIN_COLOUR
BEFORE_COLOUR = "#b0b0b0"


def calibration_text(honesty: dict[str, Any]) -> str:
    """One line: the expected calibration error before and after, or that the model is uncalibrated."""
    if not honesty.get("calibrated"):
        return (
            f"Uncalibrated model (trained before calibration): calibration error {honesty['ece_before']:.3f}; "
            "its probabilities are as trained"
        )
    return (
        f"Calibration error {honesty['ece_before']:.3f} → {honesty['ece_after']:.3f} "
        f"(temperature {honesty['temperature']:.2f}): a confidence of 0.9 is right about "
        f"{_right_at(honesty, 0.9)}"
    )


def _right_at(honesty: dict[str, Any], confidence: float) -> str:
    for row in honesty["reliability_after"]:
        if row["low"] < confidence <= row["high"] and row["photos"]:
            return f"{row['accuracy']:.0%} of the time here ({row['photos']} photos in that bin)"
    return "as often as it says (no photo in that bin here)"


class ReliabilityView(QWidget):
    """The reliability diagram, the calibration error, coverage and rejections of one evaluation."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("reliabilityView")
        self.summary = QLabel()
        self.summary.setObjectName("calibrationSummary")
        self.summary.setWordWrap(True)
        self.plot = make_plot("reliabilityPlot", "Reliability diagram: accuracy against confidence",
                              "Reliability: accuracy against confidence", "accuracy")  # fmt: skip
        item = self.plot.getPlotItem()
        item.setLabel("bottom", "confidence")
        item.addLegend(offset=(10, 10))
        self.plot.setXRange(0, 1, padding=0.02)
        self.plot.setYRange(0, 1, padding=0.02)
        item.getViewBox().setMouseEnabled(x=False, y=False)
        self.ideal = self.plot.plot([0, 1], [0, 1], pen=pg.mkPen("#7f7f7f", width=1, style=pg.QtCore.Qt.PenStyle.DashLine),
                                    name="ideal")  # fmt: skip
        self.before = self.plot.plot([], [], pen=pg.mkPen(BEFORE_COLOUR, width=2), symbol="o", symbolSize=6,
                                     symbolBrush=BEFORE_COLOUR, symbolPen=None, name="before calibration")  # fmt: skip
        self.after = self.plot.plot([], [], pen=pg.mkPen(AFTER_COLOUR, width=2), symbol="o", symbolSize=7,
                                    symbolBrush=AFTER_COLOUR, symbolPen=None, name="calibrated")  # fmt: skip
        self.coverage = QTableWidget(0, 4)
        self.coverage.setObjectName("coverageTable")
        self.coverage.setAccessibleName("Accuracy and coverage when only answers above a confidence are kept")
        self.coverage.setHorizontalHeaderLabels(["Accept at ≥", "Photos kept", "Coverage", "Accuracy"])
        self.coverage.verticalHeader().hide()
        self.coverage.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.coverage.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.rejected = QLabel()
        self.rejected.setObjectName("rejectedSummary")
        self.rejected.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.plot, 2)
        accepted = QLabel("If only answers at or above a confidence are accepted:")
        accepted.setWordWrap(True)  # the tab must not widen the window
        layout.addWidget(accepted)
        layout.addWidget(self.coverage, 1)
        layout.addWidget(self.rejected)
        self.show_honesty(None)

    def show_honesty(self, honesty: dict[str, Any] | None, photos: int = 0) -> None:
        """Show an evaluation's ``honesty`` (:func:`engine.inference.evaluate.calibration_summary`)."""
        if not honesty:
            self.summary.setText("Evaluate to see how far the model's confidence can be trusted.")
            self.before.setData([], [])
            self.after.setData([], [])
            self.coverage.setRowCount(0)
            self.rejected.setText("")
            return
        self.summary.setText(calibration_text(honesty))
        for curve, key in ((self.before, "reliability_before"), (self.after, "reliability_after")):
            bins = [b for b in honesty[key] if b["photos"]]
            curve.setData([b["confidence"] for b in bins], [b["accuracy"] for b in bins])
        calibrated = bool(honesty.get("calibrated"))
        self.after.setVisible(calibrated)  # uncalibrated: one series, the probabilities as trained
        self.coverage.setRowCount(len(honesty["coverage"]))
        for row, c in enumerate(honesty["coverage"]):
            accuracy = "–" if c["accuracy"] is None else f"{c['accuracy']:.1%}"
            cells = [f"{c['threshold']:g}", str(c["kept"]), f"{c['coverage']:.0%}", accuracy]
            for column, text in enumerate(cells):
                self.coverage.setItem(row, column, QTableWidgetItem(text))
        if honesty.get("unknown_threshold") is None:
            why = "" if calibrated else " (trained before calibration)"
            self.rejected.setText(f"This model cannot say “none of these”{why}.")
        else:
            self.rejected.setText(
                f"None of these: {honesty['rejected']} of {photos} photos would be answered unknown at the "
                f"threshold {honesty['unknown_threshold']:.3f} (unlike the photos the model was trained on)."
            )
