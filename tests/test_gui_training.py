"""The real window trains on a synthetic dataset: plots, progress, predict, stop, errors, responsiveness."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyqtgraph as pg
import pytest
from PySide6.QtCore import QElapsedTimer, Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QWidget,
)

TRAIN_TIMEOUT_MS = 300_000
MAX_STALL_MS = 200


def open_dataset(window, qtbot, monkeypatch, folder: Path) -> None:
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    qtbot.mouseClick(window.findChild(QPushButton, "openDatasetButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.data_tab.report is not None, timeout=120_000)


def configure(window, epochs: int = 2, batch_size: int = 8, lr: float = 0.01, input_size: int = 64) -> None:
    """Feature extraction with the built-in model; 64 px is plenty for the synthetic colour classes."""
    window.tabs.setCurrentWidget(window.train_tab)
    strategy = window.findChild(QComboBox, "strategyPicker")
    strategy.setCurrentIndex(strategy.findText("feature-extract"))
    assert window.findChild(QComboBox, "modelPicker").currentText() == "efficientnet_lite0"
    window.findChild(QSpinBox, "epochsSpin").setValue(epochs)
    window.findChild(QSpinBox, "batchSizeSpin").setValue(batch_size)
    window.findChild(QDoubleSpinBox, "learningRateSpin").setValue(lr)
    window.train_tab.form.control("input_size").set_value(input_size)


def start(window, qtbot) -> None:
    button = window.findChild(QPushButton, "startButton")
    assert button.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def wait_until_finished(window, qtbot) -> None:
    qtbot.waitUntil(lambda: not window.train_tab.is_running(), timeout=TRAIN_TIMEOUT_MS)


def wait_for_batches(window, qtbot) -> None:
    status = window.findChild(QLabel, "trainStatus")
    qtbot.waitUntil(lambda: "batch" in status.text(), timeout=TRAIN_TIMEOUT_MS)


def test_two_epoch_training_plots_progress_and_prediction(window, qtbot, monkeypatch, synthetic_dataset):
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    assert window.findChild(QTableWidget, "classTable").rowCount() == 2
    configure(window, epochs=2)
    start(window, qtbot)
    assert not window.findChild(QPushButton, "startButton").isEnabled()  # no second run
    assert window.findChild(QPushButton, "stopButton").isEnabled()
    wait_until_finished(window, qtbot)

    assert not window.findChild(QWidget, "trainError").isVisible()
    for name in ("lossPlot", "accuracyPlot"):
        plot = window.findChild(pg.PlotWidget, name)
        items = plot.getPlotItem().listDataItems()
        assert len(items) == 2, name
        for item in items:
            x, y = item.getData()
            assert len(x) == len(y) == 2, (name, item.name())
    batch_x, _ = window.findChild(pg.PlotWidget, "batchLossPlot").getPlotItem().listDataItems()[0].getData()
    assert len(batch_x) == 4  # 16 training images, batch 8, 2 epochs
    progress = window.findChild(QProgressBar, "trainProgress")
    assert progress.value() == progress.maximum()
    result = window.findChild(QWidget, "trainResult")
    assert result.isVisible()
    assert "Best epoch" in result.text() and "model.pt" in result.text()
    bundle = Path(window.train_tab.bundle_path)
    assert bundle.is_file() and bundle.is_relative_to(Path(window.settings.runs_root()))
    assert window.findChild(QPushButton, "startButton").isEnabled()

    # The model just trained is ready on the Predict tab.
    qtbot.waitUntil(window.predict_tab.has_model, timeout=60_000)
    image = sorted((synthetic_dataset / "val" / "dogs").iterdir())[0]
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(lambda *a, **k: ([str(image)], "")))
    window.tabs.setCurrentWidget(window.predict_tab)
    qtbot.mouseClick(window.findChild(QPushButton, "predictOpenButton"), Qt.MouseButton.LeftButton)
    results = window.findChild(QTableWidget, "predictResults")
    qtbot.waitUntil(lambda: results.rowCount() == 2, timeout=60_000)
    assert results.item(0, 0).text() == "dogs"
    assert window.findChild(QTableWidget, "predictTable").item(0, 1).text() == "dogs"


def test_event_loop_never_stalls_during_training(window, qtbot, monkeypatch, synthetic_dataset, tmp_path):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))  # compute features again
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    qtbot.waitUntil(lambda: window.catalog != [], timeout=120_000)  # torch loaded in the background
    configure(window, epochs=2)
    qtbot.wait(300)  # the Train tab's first paint is not part of the run
    gaps: list[int] = []
    clock = QElapsedTimer()
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: gaps.append(clock.restart()))
    clock.start()
    timer.start()
    start(window, qtbot)
    wait_until_finished(window, qtbot)
    qtbot.waitUntil(window.predict_tab.has_model, timeout=60_000)  # the bundle loads off-thread too
    timer.stop()
    assert window.train_tab.bundle_path, window.findChild(QWidget, "trainError").text()
    assert len(gaps) > 50
    worst = max(gaps)
    print(f"event loop: {len(gaps)} ticks, longest gap {worst} ms")
    assert worst < MAX_STALL_MS


def test_stop_ends_the_run_and_allows_a_new_one(window, qtbot, monkeypatch, synthetic_dataset):
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window, epochs=50, batch_size=2)
    start(window, qtbot)
    wait_for_batches(window, qtbot)
    stop = window.findChild(QPushButton, "stopButton")
    qtbot.mouseClick(stop, Qt.MouseButton.LeftButton)
    assert not stop.isEnabled()
    wait_until_finished(window, qtbot)
    assert "Stopped" in window.findChild(QLabel, "trainStatus").text()
    progress = window.findChild(QProgressBar, "trainProgress")
    assert progress.value() < progress.maximum()
    assert window.findChild(QPushButton, "startButton").isEnabled()
    assert not window.findChild(QWidget, "trainError").isVisible()


def test_trainer_crash_shows_a_readable_message(window, qtbot, monkeypatch, synthetic_dataset):
    import engine.training.trainer

    def broken_train(*_args, **_kwargs):
        raise RuntimeError("simulated failure\nwith a second line")

    monkeypatch.setattr(engine.training.trainer, "train", broken_train)
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window)
    start(window, qtbot)
    wait_until_finished(window, qtbot)
    error = window.findChild(QWidget, "trainError")
    assert error.isVisible()
    assert "simulated failure" in error.text()
    assert "Traceback" not in error.text() and "second line" not in error.text()
    assert "simulated failure" in window.train_tab.log.toPlainText()
    assert window.findChild(QPushButton, "startButton").isEnabled()


def test_dataset_broken_after_scan_fails_with_the_engine_message(
    window, qtbot, monkeypatch, synthetic_dataset, tmp_path
):
    data = Path(shutil.copytree(synthetic_dataset, tmp_path / "data"))
    open_dataset(window, qtbot, monkeypatch, data)
    for image in (data / "val").rglob("*.*"):
        image.write_bytes(b"no longer an image")
    configure(window, epochs=1)
    start(window, qtbot)
    wait_until_finished(window, qtbot)
    error = window.findChild(QWidget, "trainError")
    assert error.isVisible()
    assert "no val image could be read" in error.text()


@pytest.mark.parametrize("answer", ["Yes", "No"])
def test_closing_during_training_asks_then_stops_cleanly(
    make_window, qtbot, monkeypatch, synthetic_dataset, dialogs, answer
):
    from PySide6.QtWidgets import QMessageBox

    window = make_window()
    button = getattr(QMessageBox.StandardButton, answer)
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: button))
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window, epochs=50, batch_size=2)
    start(window, qtbot)
    wait_for_batches(window, qtbot)
    window.close()
    if answer == "No":
        assert window.isVisible() and window.train_tab.is_running()
        window.train_tab.stop()
        wait_until_finished(window, qtbot)
        window.close()
    assert not window.isVisible()
    assert not window.runner.is_busy()


def test_the_estimate_shows_from_the_first_feature_batch(
    window, qtbot, monkeypatch, synthetic_dataset, tmp_path
):
    from PySide6.QtCore import QObject, Slot

    from gui.tabs.train_tab import TrainTab

    class Recorder(QObject):  # lives on the GUI thread: the worker's signals reach it queued
        def __init__(self) -> None:
            super().__init__()
            self.events: list = []

        @Slot(object, object)
        def on_progress(self, event, _points) -> None:
            self.events.append(event)

    recorder = Recorder()
    real_launch = TrainTab._launch

    def launch(self, worker):
        worker.progress.connect(recorder.on_progress)
        real_launch(self, worker)

    monkeypatch.setattr(TrainTab, "_launch", launch)
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))  # a cold run: features computed
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window, epochs=2, batch_size=2)
    start(window, qtbot)
    wait_until_finished(window, qtbot)
    features = [e for e in recorder.events if e.phase == "features"]
    assert features and features[0].batch == 1 and features[0].eta_s > 0  # an estimate from batch 1 on
    window.train_tab._on_progress(features[0], [])  # what the tab showed then
    text = window.train_tab.status.text()
    assert text.startswith("Computing the backbone's features once · batch 1/") and "left" in text
