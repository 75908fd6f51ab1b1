"""File → Export report… (pytest-qt, offscreen): asks for the run and the file, writes it off the GUI thread.

The run is the session's trained efficientnet_lite0 run (``trained_bundle``'s folder); the file
dialogs are replaced by the test, so nothing blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import QFileDialog, QPushButton

WAIT_MS = 120_000


@pytest.fixture
def run_dir(trained_bundle: Path) -> Path:
    return trained_bundle.parent


def _patch_dialogs(monkeypatch: pytest.MonkeyPatch, folder: str, out: str) -> dict[str, list[Any]]:
    """Folder and save dialogs that answer ``folder`` and ``out`` and remember how they were asked."""
    asked: dict[str, list[Any]] = {"folder": [], "save": []}

    def folder_dialog(*args: Any, **_kwargs: Any) -> str:
        asked["folder"].append(args)
        return folder

    def save_dialog(*args: Any, **_kwargs: Any) -> tuple[str, str]:
        asked["save"].append(args)
        return out, "HTML files (*.html *.htm)"

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(folder_dialog))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_dialog))
    return asked


def _wait_until_written(window: Any, qtbot: Any) -> Any:
    exporter = window._report_exporter
    assert exporter is not None
    qtbot.waitUntil(lambda: not exporter.is_busy(), timeout=WAIT_MS)
    return exporter


def test_the_menu_action_writes_the_report_and_offers_to_open_it(
    window, qtbot, run_dir, tmp_path, monkeypatch, dialogs
):
    asked = _patch_dialogs(monkeypatch, str(run_dir), str(tmp_path / "my-report"))
    opened: list[Any] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url) or True))

    action = window.findChild(QAction, "exportReportAction")
    assert action is not None and action.isEnabled()
    action.trigger()
    exporter = _wait_until_written(window, qtbot)

    out = tmp_path / "my-report.html"  # the suffix is added
    assert out.is_file() and dialogs.shown == []
    text = out.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert 'id="confusion-matrix"' in text and 'id="chart-accuracy"' in text
    assert asked["save"][0][2] == str(run_dir / "report.html")  # suggested: beside the run
    assert str(out) in window.statusBar().currentMessage()

    box = exporter.done_box
    assert box is not None and box.isVisible() and str(out) in box.text()
    open_button = box.findChild(QPushButton, "openReportButton")
    qtbot.mouseClick(open_button, Qt.MouseButton.LeftButton)
    assert [url.toLocalFile() for url in opened] == [str(out)]
    qtbot.waitUntil(lambda: not box.isVisible())


def test_the_folder_dialog_starts_at_the_current_models_run(
    window, qtbot, run_dir, trained_bundle, monkeypatch
):
    asked = _patch_dialogs(monkeypatch, "", "")  # the user cancels the folder dialog
    window.predict_tab.load_model(trained_bundle)
    qtbot.waitUntil(window.predict_tab.has_model, timeout=WAIT_MS)
    window.export_report_action.trigger()
    assert asked["folder"][0][2] == str(run_dir) and asked["save"] == []
    assert window._report_exporter is not None and not window._report_exporter.is_busy()


def test_export_report_of_a_given_run_asks_only_for_the_file(window, qtbot, run_dir, tmp_path, monkeypatch):
    """What the Runs tab calls: ``export_report(run_dir)``."""
    asked = _patch_dialogs(monkeypatch, "/nowhere", str(tmp_path / "r.htm"))
    window.export_report(run_dir)
    _wait_until_written(window, qtbot)
    assert asked["folder"] == [] and (tmp_path / "r.htm").is_file()
    window._report_exporter.done_box.close()


def test_a_folder_that_is_no_run_is_refused(window, run_dir, tmp_path, monkeypatch, dialogs):
    asked = _patch_dialogs(monkeypatch, str(tmp_path), str(tmp_path / "r.html"))
    window.export_report_action.trigger()
    assert [kind for kind, _title, _text in dialogs.shown] == ["warning"]
    assert asked["save"] == [] and not (tmp_path / "r.html").exists()


def test_cancel_writes_nothing(window, qtbot, run_dir, tmp_path, monkeypatch, dialogs):
    _patch_dialogs(monkeypatch, str(run_dir), str(tmp_path / "r.html"))
    window.export_report_action.trigger()
    exporter = window._report_exporter
    with qtbot.waitSignal(exporter.failed, timeout=WAIT_MS) as blocker:
        exporter.cancel()  # before the worker thread got far: the report stops at its first check
    assert blocker.args == ["cancelled"]
    _wait_until_written(window, qtbot)
    assert not (tmp_path / "r.html").exists() and exporter.done_box is None and dialogs.shown == []
