"""Honest answers in the window (issue 24): the Evaluate tab's reliability diagram, and the Predict
tab's "None of these" for a photo unlike the training photos, with its threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox, QFileDialog, QLabel, QPushButton, QTableWidget
from test_gui_evaluate import _evaluate, _load
from test_gui_predict import _open_model, _wait_for_results

from engine.models.bundle import load_bundle


def test_the_evaluate_tab_draws_the_reliability_diagram(window, qtbot, synthetic_dataset, trained_bundle):
    _load(window, qtbot, synthetic_dataset, trained_bundle)
    report = _evaluate(window, qtbot)
    honesty = report.honesty
    plot = window.findChild(pg.PlotWidget, "reliabilityPlot")
    curves = {c.name(): c for c in plot.getPlotItem().listDataItems()}
    for name, key in (("calibrated", "reliability_after"), ("before calibration", "reliability_before")):
        x, y = curves[name].getData()
        bins = [b for b in honesty[key] if b["photos"]]
        assert list(x) == [b["confidence"] for b in bins] and list(y) == [b["accuracy"] for b in bins]
    assert "→" in window.findChild(QLabel, "calibrationSummary").text()
    coverage = window.findChild(QTableWidget, "coverageTable")
    assert coverage.rowCount() == len(honesty["coverage"])
    assert f"{honesty['rejected']} of {report.n_images}" in window.findChild(QLabel, "rejectedSummary").text()
    assert "calibration error" in window.findChild(QLabel, "evaluateSummary").text()


def _checkerboard(path: Path) -> Path:
    squares = (np.indices((96, 96)) // 12).sum(axis=0) % 2
    Image.fromarray((squares * 255).astype(np.uint8)).convert("RGB").save(path)
    return path


def test_a_photo_unlike_the_training_photos_is_none_of_these(
    window, qtbot, monkeypatch, trained_bundle, tmp_path
):
    odd = _checkerboard(tmp_path / "board.png")
    _open_model(window, qtbot, monkeypatch, trained_bundle)
    assert "calibrated" in window.findChild(QLabel, "predictModel").text()
    threshold = window.findChild(QDoubleSpinBox, "unknownThreshold")
    assert threshold.isEnabled()
    assert threshold.value() == round(load_bundle(trained_bundle).calibration.ood_threshold, 3)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(lambda *a, **k: ([str(odd)], "")))
    qtbot.mouseClick(window.findChild(QPushButton, "predictOpenButton"), Qt.MouseButton.LeftButton)
    table = _wait_for_results(window, qtbot, 1)
    prediction = window.predict_tab.predictions[0]
    assert prediction.unknown and prediction.ood_score > threshold.value()
    label = window.findChild(QLabel, "noneOfTheseLabel")
    assert table.item(0, 1).text() == "none of these" and label.isVisible()
    assert "None of these" in label.text()

    threshold.setValue(min(2.0, prediction.ood_score + 0.05))  # above its score: an answer again
    assert not window.predict_tab.predictions[0].unknown and not label.isVisible()
    assert table.item(0, 1).text() == prediction.label
    threshold.setValue(prediction.ood_score / 2)  # and back
    assert table.item(0, 1).text() == "none of these" and label.isVisible()
