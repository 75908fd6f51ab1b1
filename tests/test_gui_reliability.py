"""Reliability of the window (issue 7): hostile data, a second Start, Resume of a stopped run.

Covered elsewhere, not repeated here:
- the window closed during training stops the worker cleanly:
  ``tests/test_gui_training.py::test_closing_during_training_asks_then_stops_cleanly``;
- a corrupted settings file never blocks start-up:
  ``tests/test_gui_window.py::test_corrupt_settings_never_block_start_up``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyqtgraph as pg
from helpers_hostile import make_hostile_dataset
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QWidget,
)
from test_gui_training import configure, open_dataset, start, wait_for_batches, wait_until_finished

from engine.data.datasets import scan_dataset


def _rows(table: QTableWidget) -> list[list[str]]:
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_hostile_dataset_report_lists_every_skipped_file_with_its_reason_and_trains(
    window, qtbot, monkeypatch, tmp_path
):
    root = tmp_path / "hostile"
    cases, expected = make_hostile_dataset(root)
    open_dataset(window, qtbot, monkeypatch, root)
    assert window.isVisible()
    rows = _rows(window.findChild(QTableWidget, "skippedFiles"))
    shown = {Path(file).name: reason for file, reason in rows}
    assert {p.name for p in expected} <= set(shown)
    assert all(shown[p.name] for p in expected)
    classes = [r[0] for r in _rows(window.findChild(QTableWidget, "classTable"))]
    assert classes == ["ants", "bees"]
    # The window's files and split are exactly the command line's (one shared scan).
    cli_report = scan_dataset(root)
    for split, samples in cli_report.splits.items():
        assert window.data_tab.report.splits[split] == samples
    # It trains to completion on the good photos, naming each bad file once in the log.
    configure(window, epochs=1)
    start(window, qtbot)
    wait_until_finished(window, qtbot)
    log = window.findChild(QPlainTextEdit, "trainLog").toPlainText()
    assert "Training failed" not in log and "Error" not in log
    for path in expected:
        assert log.count(f"{path.relative_to(cli_report.root)}: ") == 1, path
    runs = [p for p in Path(window.settings.runs_root()).iterdir() if p.is_dir()]
    assert len(runs) == 1 and (runs[0] / "model.pt").is_file()


def test_an_unexpected_error_is_shown_and_logged_with_its_traceback(window, qtbot, monkeypatch, tmp_path):
    import logging

    from engine.core import logs
    from gui.shell import app

    monkeypatch.setenv("TRANSFER_STUDIO_LOGS", str(tmp_path / "logs"))
    root_logger = logging.getLogger()
    before = root_logger.handlers[:]
    path = logs.set_up_logging(logging.CRITICAL)
    shown: list[str] = []
    monkeypatch.setattr(
        QMessageBox, "exec", lambda box: shown.append(box.informativeText() + box.detailedText())
    )
    try:
        try:
            raise RuntimeError("a bug in a slot")
        except RuntimeError as exc:
            app.show_unexpected_error(type(exc), exc, exc.__traceback__)
        for handler in root_logger.handlers:
            handler.flush()
        text = path.read_text(encoding="utf-8")
    finally:
        for handler in root_logger.handlers[:]:
            if handler not in before:
                root_logger.removeHandler(handler)
                handler.close()
    assert "unexpected error" in text and "RuntimeError: a bug in a slot" in text and "Traceback" in text
    assert shown and "a bug in a slot" in shown[0] and str(path) in shown[0]


def test_start_while_a_run_is_going_starts_no_second_run(window, qtbot, monkeypatch, synthetic_dataset):
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window, epochs=50, batch_size=2)
    start(window, qtbot)
    wait_for_batches(window, qtbot)
    first = window.train_tab.worker
    button = window.findChild(QPushButton, "startButton")
    resume = window.findChild(QPushButton, "resumeButton")
    assert not button.isEnabled() and not resume.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    window.train_tab.start()  # even a direct call (a shortcut, a queued click) is refused
    window.train_tab.resume(window.train_tab.run_dir)
    assert window.train_tab.worker is first
    training = [w for w in window.runner.workers() if type(w).__name__ == "TrainWorker"]
    assert training == [first]
    window.train_tab.stop()
    wait_until_finished(window, qtbot)
    runs = [p for p in Path(window.settings.runs_root()).iterdir() if p.is_dir()]
    assert len(runs) == 1


def _stopped_run(data: Path, runs: Path, stop_after: int, epochs: int) -> Path:
    """A seeded CPU feature-extraction run of ``epochs`` stopped after epoch ``stop_after``."""
    from engine.core.config import TrainConfig
    from engine.training.trainer import train

    config = TrainConfig.for_strategy(
        "feature-extract",
        epochs=epochs,
        batch_size=8,
        lr=1e-2,
        device="cpu",
        workers=0,
        seed=3,
        input_size=64,
    )
    finished: list[int] = []

    def on_event(event: Any) -> None:
        if type(event).__name__ == "EpochEnd":
            finished.append(event.epoch)

    result = train(
        config, data, run_dir=runs, on_event=on_event, should_stop=lambda: len(finished) >= stop_after
    )
    assert result.epochs_completed == min(stop_after, epochs)
    assert result.cancelled == (stop_after < epochs)
    return runs


def test_resume_continues_a_stopped_run_to_completion(
    window, qtbot, monkeypatch, synthetic_dataset, tmp_path
):
    from engine.core.rundir import RunDir

    run = _stopped_run(synthetic_dataset, tmp_path / "runs" / "stopped", stop_after=2, epochs=4)
    reference = _stopped_run(synthetic_dataset, tmp_path / "runs" / "whole", stop_after=99, epochs=4)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(run)))
    window.tabs.setCurrentWidget(window.train_tab)
    qtbot.mouseClick(window.findChild(QPushButton, "resumeButton"), Qt.MouseButton.LeftButton)
    assert window.train_tab.is_running()
    loss = window.findChild(pg.PlotWidget, "lossPlot")
    # The two finished epochs are drawn from metrics.jsonl before training goes on.
    qtbot.waitUntil(lambda: window.train_tab.plots.series_lengths()["val_acc"] >= 2, timeout=60_000)
    wait_until_finished(window, qtbot)

    assert not window.findChild(QWidget, "trainError").isVisible(), window.findChild(
        QWidget, "trainError"
    ).text()
    assert "Finished 4 epochs" in window.findChild(QLabel, "trainStatus").text()
    for item in loss.getPlotItem().listDataItems():
        x, _ = item.getData()
        assert list(x) == [1.0, 2.0, 3.0, 4.0], item.name()
    assert "Continuing from epoch 3 of 4" in window.train_tab.log.toPlainText()
    assert Path(window.train_tab.bundle_path) == RunDir(run).bundle_path
    resumed = RunDir(run).read_metrics()
    whole = RunDir(reference).read_metrics()
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(resumed, whole, strict=True):
        assert abs(a["val_acc"] - b["val_acc"]) < 1e-6 and abs(a["train_loss"] - b["train_loss"]) < 1e-4


def test_resume_of_a_folder_that_is_not_a_run_says_so_inline(window, qtbot, monkeypatch, tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    window.tabs.setCurrentWidget(window.train_tab)
    qtbot.mouseClick(window.findChild(QPushButton, "resumeButton"), Qt.MouseButton.LeftButton)
    error = window.findChild(QWidget, "trainError")
    assert error.isVisible() and "Cannot resume" in error.text() and "Traceback" not in error.text()
    assert not window.train_tab.is_running()
