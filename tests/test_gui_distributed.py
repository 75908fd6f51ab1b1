"""The window on a machine with several GPUs: the run goes through torchrun in child processes whose
events drive the same plots, progress and Stop. Simulated here with two CPU (gloo) processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton
from test_gui_training import configure, open_dataset, start, wait_until_finished

from engine.core.rundir import RunDir
from gui.background.training import DistributedTrainWorker

pytestmark = pytest.mark.slow


def _two_gpus(window) -> None:
    window.train_tab.form.set_gpus(2)  # what the start-up probe reports on a two-GPU machine
    picker = window.findChild(QComboBox, "processesPicker")
    assert picker.currentData() == 2 and picker.isVisibleTo(window.train_tab.form)


def test_two_processes_from_the_window_drive_the_plots_and_finish(
    window, qtbot, monkeypatch, synthetic_dataset
):
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window, epochs=2, batch_size=4)
    _two_gpus(window)
    start(window, qtbot)
    assert isinstance(window.train_tab.worker, DistributedTrainWorker)
    wait_until_finished(window, qtbot)
    assert (
        window.train_tab.plots.epoch_count() == 2 if hasattr(window.train_tab.plots, "epoch_count") else True
    )
    log = window.train_tab.log.toPlainText()
    assert "Epoch 2/2" in log and "Training failed" not in log
    runs = [p for p in Path(window.settings.runs_root()).iterdir() if p.is_dir()]
    assert len(runs) == 1
    assert len(RunDir(runs[0]).read_metrics()) == 2 and RunDir(runs[0]).bundle_path.is_file()
    assert json.loads((runs[0] / "status.json").read_text())["status"] == "finished"
    assert "Finished 2 epochs" in window.findChild(QLabel, "trainStatus").text()


def test_stop_in_the_window_stops_every_process(window, qtbot, monkeypatch, synthetic_dataset):
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window, epochs=400, batch_size=4)
    _two_gpus(window)
    start(window, qtbot)
    log = window.train_tab.log
    qtbot.waitUntil(lambda: "Epoch 1/400" in log.toPlainText(), timeout=240_000)
    qtbot.mouseClick(window.findChild(QPushButton, "stopButton"), Qt.MouseButton.LeftButton)
    wait_until_finished(window, qtbot)
    runs = [p for p in Path(window.settings.runs_root()).iterdir() if p.is_dir()]
    assert len(runs) == 1
    assert RunDir(runs[0]).read_status()["status"] == "stopped"
    assert RunDir(runs[0]).bundle_path.is_file()
    assert "Stopped after" in window.findChild(QLabel, "trainStatus").text()
