"""The Data tab: open (dialog, drop, recent, typed path), the scan report, errors, lazy thumbnails."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from PySide6.QtCore import QElapsedTimer, QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent, QTextDocumentFragment
from PySide6.QtWidgets import QFileDialog, QLineEdit, QListWidget, QPushButton, QTableWidget, QWidget

from gui.views.thumbnails import ThumbnailGrid


def _scan_via_dialog(window, qtbot, monkeypatch, folder: Path) -> None:
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    qtbot.mouseClick(window.findChild(QPushButton, "openDatasetButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.data_tab.is_scanning(), timeout=120_000)


def _table(table: QTableWidget) -> list[list[str]]:
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_scan_report_shows_classes_counts_skipped_files_and_warnings(
    window, qtbot, monkeypatch, synthetic_dataset, tmp_path
):
    import shutil

    data = Path(shutil.copytree(synthetic_dataset, tmp_path / "pets"))
    (data / "train" / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (data / "train" / "dogs" / "notes.txt").write_text("hello")
    _scan_via_dialog(window, qtbot, monkeypatch, data)

    assert window.findChild(QLineEdit, "datasetPath").text() == str(data)
    table = window.findChild(QTableWidget, "classTable")
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers == ["Class", "Train", "Val", "Total", "Share"]
    assert _table(table) == [["cats", "8", "8", "16", "50.0%"], ["dogs", "8", "8", "16", "50.0%"]]
    skipped = _table(window.findChild(QTableWidget, "skippedFiles"))
    names = {Path(row[0]).name: row[1] for row in skipped}
    assert set(names) == {"broken.jpg", "notes.txt"} and all(names.values())
    warnings = window.findChild(QListWidget, "datasetWarnings")
    texts = [warnings.item(i).text() for i in range(warnings.count())]
    assert any("only 8 training images" in t for t in texts)
    assert "2 classes" in window.data_tab.summary.text()
    # The Train tab can start now.
    assert window.findChild(QPushButton, "startButton").isEnabled()


def test_flat_folder_gets_an_automatic_validation_split(window, qtbot, monkeypatch, tmp_path):
    from helpers_images import make_image_folder

    data = make_image_folder(tmp_path / "flat", {"red": 10, "blue": 10}, splits=None)
    _scan_via_dialog(window, qtbot, monkeypatch, data)
    table = window.findChild(QTableWidget, "classTable")
    assert table.horizontalHeaderItem(2).text() == "Val (auto)"
    warnings = window.findChild(QListWidget, "datasetWarnings")
    assert any("No val/ folder" in warnings.item(i).text() for i in range(warnings.count()))


def test_unusable_folder_shows_a_clear_error(window, qtbot, monkeypatch, tmp_path):
    from helpers_images import make_image_folder

    data = make_image_folder(tmp_path / "one", {"only": 4}, splits=None)
    _scan_via_dialog(window, qtbot, monkeypatch, data)
    error = window.findChild(QWidget, "dataError")
    assert error.isVisible()
    assert "at least two are needed" in error.text()
    assert "Traceback" not in error.text()
    assert not window.findChild(QPushButton, "startButton").isEnabled()


def test_error_text_with_angle_brackets_is_shown_literally(window, qtbot, monkeypatch, tmp_path):
    """Engine messages are plain text: "<folder>/<class>" must not vanish as HTML tags."""
    empty = tmp_path / "no-classes"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a photo")
    _scan_via_dialog(window, qtbot, monkeypatch, empty)
    label = window.findChild(QWidget, "dataError").label
    assert "<folder>/<class>/<images>" in label.text().replace("&lt;", "<").replace("&gt;", ">")
    label.setTextFormat(Qt.TextFormat.RichText)
    rendered = QTextDocumentFragment.fromHtml(label.text()).toPlainText()
    assert "<folder>/<class>/<images>" in rendered


def test_cancelled_dialog_changes_nothing(window, qtbot):
    qtbot.mouseClick(window.findChild(QPushButton, "openDatasetButton"), Qt.MouseButton.LeftButton)
    assert not window.data_tab.is_scanning() and window.data_tab.report is None


def test_drop_a_folder_and_reopen_it_from_the_recent_list(window, qtbot, synthetic_dataset):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(synthetic_dataset))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    window.data_tab.dropEvent(event)
    qtbot.waitUntil(lambda: window.data_tab.report is not None, timeout=120_000)
    assert window.settings.recent_datasets()[0] == str(synthetic_dataset)
    actions = [a for a in window.data_tab.recent_menu.actions() if a.data()]
    assert [a.data() for a in actions] == [str(synthetic_dataset)]
    window.data_tab.report = None
    actions[0].trigger()
    qtbot.waitUntil(lambda: window.data_tab.report is not None, timeout=120_000)


def test_last_dataset_reopens_at_start(make_window, qtbot, synthetic_dataset, tmp_path):
    path = tmp_path / "s.ini"
    first = make_window(path)
    first.data_tab.open_dataset(synthetic_dataset)
    qtbot.waitUntil(lambda: first.data_tab.report is not None, timeout=120_000)
    first.close()
    second = make_window(path)
    qtbot.waitUntil(lambda: second.data_tab.report is not None, timeout=120_000)
    assert second.findChild(QLineEdit, "datasetPath").text() == str(synthetic_dataset)


def test_thousands_of_images_stay_responsive_and_load_lazily(window, qtbot, tmp_path):
    root = tmp_path / "big"
    for name, colour in (("many", (200, 60, 60)), ("few", (60, 60, 200))):
        (root / name).mkdir(parents=True)
        for i in range(1500 if name == "many" else 30):
            Image.new("RGB", (64, 48), colour).save(root / name / f"{i:05d}.png")
    # The window's own start-up work (torch and the model catalog, loaded in the background) is done:
    # it is not what this test measures.
    qtbot.waitUntil(lambda: window.catalog != [], timeout=120_000)
    # What the scan and the thumbnail threads import, imported first: compiling a module (with
    # PYTHONDONTWRITEBYTECODE set, the project's own are compiled on every run) holds the GIL for a
    # while, which says nothing about how responsive the tab is while it loads thousands of images.
    from PIL import Image as _Image  # noqa: F401

    import engine.data.datasets  # noqa: F401

    gaps: list[int] = []
    clock = QElapsedTimer()
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: gaps.append(clock.restart()))
    clock.start()
    timer.start()
    window.data_tab.open_dataset(root)
    qtbot.waitUntil(lambda: window.data_tab.report is not None, timeout=120_000)
    grid = window.findChild(ThumbnailGrid, "thumbnailGrid")
    table = window.findChild(QTableWidget, "classTable")
    table.selectRow([table.item(r, 0).text() for r in range(table.rowCount())].index("many"))
    total = grid.model().rowCount()
    assert total == 1500
    qtbot.waitUntil(lambda: grid.thumbs.loaded_count() >= 8, timeout=30_000)
    qtbot.wait(500)
    loaded_top = grid.thumbs.loaded_count()
    assert loaded_top < total // 4  # only what is on screen (plus one screen ahead)
    grid.verticalScrollBar().setValue(grid.verticalScrollBar().maximum())
    last = grid.model().index(total - 1, 0)
    qtbot.waitUntil(lambda: grid.thumbs._cache.get(last.row()) is not None, timeout=30_000)
    timer.stop()
    print(f"data tab: longest event-loop gap {max(gaps)} ms over {len(gaps)} ticks")
    assert max(gaps) < 200
