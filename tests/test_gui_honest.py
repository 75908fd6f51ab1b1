"""Honest answers in the window (issue 24): the Evaluate tab's reliability diagram, and the Predict
tab's "None of these" for a photo unlike the training photos, with its threshold, and what a model made
before calibration says instead."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox, QFileDialog, QLabel, QPushButton, QTableWidget
from test_gui_evaluate import _evaluate, _load
from test_gui_predict import _open_model, _wait_for_results

from engine.models.bundle import load_bundle


def _uncalibrated(bundle: Path, run: Path) -> Path:
    """A copy of ``bundle`` as a version before calibration saved it (no ``calibration``)."""
    import torch

    raw = torch.load(bundle, weights_only=True)
    del raw["calibration"]
    run.mkdir(parents=True)
    torch.save(raw, run / "model.pt")
    return run / "model.pt"


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
        assert len(x) > 0 and curves[name].isVisible()
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
    model = window.findChild(QLabel, "predictModel").text()
    assert "calibrated" in model and "uncalibrated" not in model
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
    results = window.findChild(QTableWidget, "predictResults")  # the best guesses, greyed
    assert results.item(0, 0).text() == prediction.label and not results.isEnabled()
    out = tmp_path / "shown.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))

    def exported() -> dict[str, str]:
        qtbot.mouseClick(window.findChild(QPushButton, "predictExportButton"), Qt.MouseButton.LeftButton)
        (row,) = csv.DictReader(out.open(encoding="utf-8"))
        return row

    row = exported()
    assert (row["label"], row["unknown"], row["best_guess"]) == ("unknown", "1", prediction.label)

    threshold.setValue(min(2.0, prediction.ood_score + 0.05))  # above its score: an answer again
    assert window.predict_tab.predictor.unknown_threshold == threshold.value()
    assert not window.predict_tab.predictions[0].unknown and not label.isVisible()
    assert table.item(0, 1).text() == prediction.label and results.isEnabled()
    row = exported()  # the export says what the table shows
    assert (row["label"], row["unknown"]) == (prediction.label, "0")
    threshold.setValue(prediction.ood_score / 2)  # and back
    assert table.item(0, 1).text() == "none of these" and label.isVisible()
    assert exported()["label"] == "unknown"


def test_a_model_made_before_calibration_says_so_and_never_none_of_these(
    window, qtbot, synthetic_dataset, trained_bundle, tmp_path
):
    old = _uncalibrated(trained_bundle, tmp_path / "old-run")
    _load(window, qtbot, synthetic_dataset, old)
    assert "uncalibrated (trained before calibration)" in window.findChild(QLabel, "predictModel").text()
    threshold = window.findChild(QDoubleSpinBox, "unknownThreshold")
    assert not threshold.isEnabled() and "trained before calibration" in threshold.toolTip()

    report = _evaluate(window, qtbot)
    curves = {
        c.name(): c for c in window.findChild(pg.PlotWidget, "reliabilityPlot").getPlotItem().listDataItems()
    }
    assert curves["before calibration"].isVisible() and not curves["calibrated"].isVisible()
    x, _ = curves["before calibration"].getData()
    assert len(x) == len([b for b in report.honesty["reliability_before"] if b["photos"]]) > 0
    assert "Uncalibrated" in window.findChild(QLabel, "calibrationSummary").text()
    assert "cannot say" in window.findChild(QLabel, "rejectedSummary").text()

    window.tabs.setCurrentWidget(window.predict_tab)
    window.predict_tab.classify([_checkerboard(tmp_path / "board.png")])
    table = _wait_for_results(window, qtbot, 1)
    prediction = window.predict_tab.predictions[0]
    assert not prediction.unknown and prediction.ood_score is None
    assert table.item(0, 1).text() == prediction.label
    assert window.findChild(QLabel, "noneOfTheseLabel").isHidden()
