"""The Predict tab: open a bundle, classify images and folders off the GUI thread, export CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog, QLabel, QPushButton, QTableWidget, QWidget


def _open_model(window, qtbot, monkeypatch, bundle: Path) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(bundle), "")))
    window.open_model_action.trigger()
    assert window.tabs.currentWidget() is window.predict_tab
    qtbot.waitUntil(lambda: not window.predict_tab.loader.is_busy(), timeout=60_000)


def _wait_for_results(window, qtbot, rows: int) -> QTableWidget:
    table = window.findChild(QTableWidget, "predictTable")
    qtbot.waitUntil(lambda: not window.predict_tab.is_busy() and table.rowCount() == rows, timeout=60_000)
    return table


def test_open_model_and_classify_images(window, qtbot, monkeypatch, trained_bundle, synthetic_dataset):
    _open_model(window, qtbot, monkeypatch, trained_bundle)
    label = window.findChild(QLabel, "predictModel").text()
    assert "efficientnet_lite0" in label and "cats" in label and "dogs" in label
    images = [sorted((synthetic_dataset / "val" / c).iterdir())[0] for c in ("cats", "dogs")]
    monkeypatch.setattr(
        QFileDialog, "getOpenFileNames", staticmethod(lambda *a, **k: ([str(p) for p in images], ""))
    )
    qtbot.mouseClick(window.findChild(QPushButton, "predictOpenButton"), Qt.MouseButton.LeftButton)
    table = _wait_for_results(window, qtbot, 2)
    assert [table.item(r, 1).text() for r in range(2)] == ["cats", "dogs"]
    assert all(table.item(r, 2).text().endswith("%") for r in range(2))
    results = window.findChild(QTableWidget, "predictResults")
    assert results.item(0, 0).text() == "cats"  # the first row is selected
    table.selectRow(1)
    assert [results.item(r, 0).text() for r in range(results.rowCount())] == ["dogs", "cats"]
    preview = window.findChild(QLabel, "predictImage")
    qtbot.waitUntil(lambda: preview.pixmap() is not None and not preview.pixmap().isNull(), timeout=30_000)


def test_folder_results_export_to_csv(
    window, qtbot, monkeypatch, trained_bundle, synthetic_dataset, tmp_path
):
    import shutil

    folder = Path(shutil.copytree(synthetic_dataset / "val", tmp_path / "to-classify"))
    (folder / "cats" / "damaged.png").write_bytes(b"\x89PNG broken")
    _open_model(window, qtbot, monkeypatch, trained_bundle)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    qtbot.mouseClick(window.findChild(QPushButton, "predictFolderButton"), Qt.MouseButton.LeftButton)
    table = _wait_for_results(window, qtbot, 17)
    # Issue 22: each photo shows with its sub-folder, and the folder's class when it names one.
    shown = [table.item(r, 0).text() for r in range(17)]
    assert all(name.split("/")[0] in ("cats", "dogs") for name in shown), shown
    assert [table.item(r, 3).text() for r in range(17)] == [name.split("/")[0] for name in shown]
    labels = {Path(table.item(r, 0).text()).name: table.item(r, 1).text() for r in range(17)}
    assert labels["damaged.png"] == "unreadable"
    correct = sum(1 for name, label in labels.items() if name != "damaged.png" and name.startswith(label))
    assert correct >= 14
    assert "could not be read" in window.findChild(QLabel, "predictStatus").text()

    out = tmp_path / "out" / "predictions.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    export = window.findChild(QPushButton, "predictExportButton")
    assert export.isEnabled()
    qtbot.mouseClick(export, Qt.MouseButton.LeftButton)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 17
    assert {Path(r["path"]).name for r in rows} == set(labels)
    assert any(r["error"] for r in rows)


def test_images_before_a_model_are_classified_once_it_loads(
    window, qtbot, monkeypatch, trained_bundle, synthetic_dataset
):
    image = sorted((synthetic_dataset / "val" / "dogs").iterdir())[0]
    window.tabs.setCurrentWidget(window.predict_tab)
    window.predict_tab.classify([image])
    error = window.findChild(QWidget, "predictError")
    assert error.isVisible() and "No model yet" in error.text()
    _open_model(window, qtbot, monkeypatch, trained_bundle)
    table = _wait_for_results(window, qtbot, 1)
    assert table.item(0, 1).text() == "dogs"


def test_dropping_a_bundle_and_an_image(window, qtbot, trained_bundle, synthetic_dataset):
    image = sorted((synthetic_dataset / "val" / "cats").iterdir())[0]
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(trained_bundle)), QUrl.fromLocalFile(str(image))])
    event = QDropEvent(
        QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    window.predict_tab.dropEvent(event)
    table = _wait_for_results(window, qtbot, 1)
    assert table.item(0, 1).text() == "cats"


def test_a_file_that_is_not_a_bundle_is_refused_clearly(window, qtbot, monkeypatch, tmp_path):
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"definitely not torch")
    _open_model(window, qtbot, monkeypatch, fake)
    error = window.findChild(QWidget, "predictError")
    assert error.isVisible()
    assert "not a Transfer Studio model bundle" in error.text()
    assert "Traceback" not in error.text()
    assert not window.predict_tab.has_model()


def test_the_tab_names_the_loaded_model_and_pickers_start_in_the_dataset(
    window, qtbot, monkeypatch, trained_bundle, synthetic_dataset
):
    """Issue 22: two runs at the same accuracy are told apart by their run's name; the empty page stops
    asking for a model once one is loaded; the image pickers start in the open dataset's val/."""
    from engine.data.datasets import scan_dataset

    hint = window.findChild(QLabel, "predictEmptyHint")
    assert "A model is needed" in hint.text()
    _open_model(window, qtbot, monkeypatch, trained_bundle)
    run_name = trained_bundle.parent.name
    label = window.findChild(QLabel, "predictModel").text()
    assert f"Model: {run_name}" in label and "feature-extract" in label
    assert "A model is needed" not in hint.text() and run_name in hint.text()

    window.predict_tab.set_dataset(scan_dataset(synthetic_dataset))
    starts: list[str] = []
    monkeypatch.setattr(
        QFileDialog,
        "getOpenFileNames",
        staticmethod(lambda _p, _t, start, _f: (starts.append(start), ([], ""))[1]),
    )
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", staticmethod(lambda _p, _t, start: starts.append(start) or "")
    )
    window.findChild(QPushButton, "predictOpenButton").click()
    window.findChild(QPushButton, "predictFolderButton").click()
    assert [Path(s) for s in starts] == [synthetic_dataset / "val"] * 2
