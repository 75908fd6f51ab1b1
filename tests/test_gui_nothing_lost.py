"""Nothing lost, in the window: Stop answers within 5 s during a runaway feature pass; the export and
report dialogs never write over a bundle or a dataset's photo; the Runs tab names a run whose files are
damaged; a resume whose dataset changed asks first and writes nothing until the user agrees."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, Qt
from PySide6.QtWidgets import QLabel, QMessageBox, QPushButton
from test_gui_training import configure, open_dataset, start, wait_until_finished

from engine.core.rundir import RunDir

STOP_WITHIN_MS = 5_000


def test_stop_during_a_runaway_feature_pass_answers_within_five_seconds(
    window, qtbot, monkeypatch, synthetic_dataset, tmp_path
):
    import engine.training.features as features

    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cold-cache"))  # every feature to compute
    real_call = features.FeatureExtractor.__call__

    def slow(self, batch, **options):  # a backbone that takes 1.5 s a batch: minutes for the whole pass
        time.sleep(1.5)
        return real_call(self, batch, **options)

    monkeypatch.setattr(features.FeatureExtractor, "__call__", slow)
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window, epochs=3, batch_size=2)
    start(window, qtbot)
    status = window.findChild(QLabel, "trainStatus")
    qtbot.waitUntil(lambda: "features" in status.text(), timeout=120_000)
    clock = QElapsedTimer()
    clock.start()
    qtbot.mouseClick(window.findChild(QPushButton, "stopButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.train_tab.is_running(), timeout=STOP_WITHIN_MS + 5_000)
    assert clock.elapsed() < STOP_WITHIN_MS, clock.elapsed()
    assert window.findChild(QPushButton, "startButton").isEnabled()


def test_the_export_dialog_refuses_the_bundle_and_a_dataset_photo(qtbot, trained_bundle, synthetic_dataset):
    from engine.models.bundle import load_bundle
    from gui.background.jobs import ThreadRunner
    from gui.core.settings import Settings
    from gui.dialogs.export_dialog import ExportDialog

    photo = next((synthetic_dataset / "val" / "cats").iterdir())
    before = photo.read_bytes(), Path(trained_bundle).read_bytes()
    runner = ThreadRunner()
    dialog = ExportDialog(load_bundle(trained_bundle), [], runner, Settings(), protect=[synthetic_dataset])
    qtbot.addWidget(dialog)
    for target, words in ((trained_bundle, "model bundle"), (photo, "being used"),
                          (synthetic_dataset / "x.onnx", "being used")):  # fmt: skip
        dialog.path_edit.setText(str(target))
        dialog.start()
        assert not dialog.is_busy()
        assert "Not exported" in dialog.result_label.text() and words in dialog.result_label.text()
    assert (photo.read_bytes(), Path(trained_bundle).read_bytes()) == before
    assert not (synthetic_dataset / "x.onnx").exists()
    assert runner.wait_all(10)


def test_the_report_dialog_refuses_to_write_over_a_dataset_photo(
    window, qtbot, monkeypatch, trained_bundle, synthetic_dataset, dialogs
):
    from PySide6.QtWidgets import QFileDialog

    run = Path(trained_bundle).parent
    photo = next((synthetic_dataset / "train" / "dogs").iterdir())
    before = photo.read_bytes()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(photo), "")))
    window.export_report(run)
    qtbot.waitUntil(lambda: any(kind == "warning" for kind, _t, _x in dialogs.shown), timeout=60_000)
    (warning,) = [text for kind, _title, text in dialogs.shown if kind == "warning"]
    assert "being used" in warning or "photo" in warning
    assert photo.read_bytes() == before


def test_the_runs_tab_names_a_run_whose_files_are_damaged(
    window, qtbot, trained_bundle, tmp_path, monkeypatch
):
    root = tmp_path / "runs"
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(root))
    shutil.copytree(Path(trained_bundle).parent, root / "good")
    shutil.copytree(Path(trained_bundle).parent, root / "damaged")
    (root / "damaged" / "status.json").write_text("[" * 50_000 + "]" * 50_000)
    window.tabs.setCurrentWidget(window.runs_tab)
    window.runs_tab.refresh()
    qtbot.waitUntil(lambda: not window.runs_tab.is_listing(), timeout=30_000)
    assert [Path(p).name for p in window.runs_tab.runs] == ["good"]
    banner = window.runs_tab.message
    assert banner.isVisible() and "damaged" in banner.label.text() and "1 run folder" in banner.label.text()


def test_a_resume_whose_dataset_changed_asks_and_changes_nothing_until_yes(
    window, qtbot, monkeypatch, trained_bundle, synthetic_dataset, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(Path(trained_bundle).parent, run)
    fewer = tmp_path / "fewer"
    shutil.copytree(synthetic_dataset, fewer)
    for photo in sorted((fewer / "train" / "cats").iterdir())[:3]:
        photo.unlink()
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(config, data_root=str(fewer))))
    before = (run / "config.json").read_text(), (run / "status.json").read_text()
    asked: list[str] = []

    def answer(*args, **_kwargs):
        asked.append(str(args[2]))
        return QMessageBox.StandardButton.No if len(asked) == 1 else QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", staticmethod(answer))
    window.train_tab.resume(run)
    qtbot.waitUntil(lambda: len(asked) == 1 and not window.train_tab.is_running(), timeout=60_000)
    assert "train 16 → 13" in asked[0]
    assert ((run / "config.json").read_text(), (run / "status.json").read_text()) == before
    window.train_tab.resume(run)  # this time: Yes, go on with the photos as they are now
    wait_until_finished(window, qtbot)
    qtbot.waitUntil(lambda: not window.train_tab.is_running(), timeout=120_000)
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["dataset_changes"][0]["images"]["train"] == 13
    assert recorded["dataset"]["images"]["train"] == 16  # what it started with is kept
    assert RunDir(run).read_status()["status"] == "finished"
