"""The Data tab's sort view: suggestions per photo, keys, Undo, "accept all sure", the photo map's
lasso, and bad input (one line, nothing moved)."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from helpers_images import class_colour, make_image, make_image_folder
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QComboBox, QFileDialog, QInputDialog, QLabel, QPushButton
from test_gui_training import open_dataset

from engine.sorting.features import PhotoFeatures
from engine.sorting.proposals import fit_proposals
from gui.views.photo_map import points_in_polygon

WAIT_MS = 120_000
RED, GREEN = class_colour(0), class_colour(1)  # the colours make_image_folder gives red and green


def _dataset(root: Path) -> Path:
    """train/{green,red} (6 photos each, 64 px) and unlabeled/: 4 of each colour, 3 purple ones in
    between, and one file that is no photo."""
    make_image_folder(root, {"red": 6, "green": 6}, splits=("train",), size=(64, 64))
    folder = root / "unlabeled"
    folder.mkdir()
    for i in range(4):
        make_image(RED, (64, 64), seed=50 + i).save(folder / f"r{i}.png")
        make_image(GREEN, (64, 64), seed=60 + i).save(folder / f"g{i}.png")
    for i in range(3):
        make_image((130, 55, 140), (64, 64), seed=70 + i).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
    return root


@pytest.fixture(autouse=True)
def _own_journal(tmp_path, monkeypatch):
    """The sorting journal of each test in its own app-data folder."""
    monkeypatch.setenv("TRANSFER_STUDIO_DATA", str(tmp_path / "app-data"))


def _open_failing(window, qtbot, monkeypatch, folder: Path) -> None:
    """Open ``folder`` with the Open button and wait for its scan to end (in an error)."""
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    qtbot.mouseClick(window.findChild(QPushButton, "openDatasetButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.data_tab.is_scanning(), timeout=WAIT_MS)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _open_sort(window, qtbot, monkeypatch, root: Path):
    """The dataset open, the Sort tab shown, its suggestions in."""
    open_dataset(window, qtbot, monkeypatch, root)
    data = window.data_tab
    panel = data.sort
    data.views.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: panel.proposals is not None or bool(panel.fit_problem), timeout=WAIT_MS)
    return panel


def _settled(panel, data) -> bool:
    """No fit running and the Data tab's rescan after the last batch is in."""
    return not panel.fit_job.is_busy() and not data.is_scanning() and panel.proposals is not None


def _captions(panel) -> list[str]:
    model = panel.grid.photos
    return [model.data(model.index(r)) for r in range(model.rowCount())]


def test_the_sort_view_shows_one_suggestion_per_photo_to_sort(window, qtbot, monkeypatch, tmp_path):
    root = _dataset(tmp_path / "colours")
    panel = _open_sort(window, qtbot, monkeypatch, root)
    grid = window.findChild(type(panel.grid), "sortGrid")
    assert grid is panel.grid and window.findChild(type(panel), "sortView") is panel
    assert grid.model().rowCount() == 11  # the 11 readable photos of unlabeled/, one item each
    assert {grid.photos.path(r).name for r in range(11)} == {
        p.name for p in (root / "unlabeled").glob("*.png")
    }
    captions = _captions(panel)
    assert all(re.fullmatch(r"(red|green) [01]\.\d\d", c) for c in captions), captions
    by_name = {grid.photos.path(r).name: captions[r] for r in range(11)}
    assert by_name["r0.png"].startswith("red") and by_name["g0.png"].startswith("green")
    tip = grid.model().data(grid.model().index(0), Qt.ItemDataRole.ToolTipRole)
    assert str(grid.photos.path(0)) in tip and "Runner-up:" in tip
    views = window.data_tab.views
    assert views.tabText(views.indexOf(panel)) == "&Sort (11)"
    # At 1280x800 the grid, the map and every button are in view.
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.width() == 1280)
    for name in ("sortAcceptSureButton", "sortUndoButton", "sortMapToggle", "mapNameButton"):
        button = window.findChild(QPushButton, name)
        right = button.mapTo(panel, button.rect().topRight()).x()
        assert button.isVisible() and right <= panel.width(), name
    assert panel.grid.viewport().height() > 250 and panel.map_side.map.plot.height() > 250
    status = window.findChild(QLabel, "sortStatus").text()
    assert "Sorted 0 · 11 left to sort" in status and "estimated accuracy so far" in status
    assert "1 photo(s) to sort cannot be read" in panel.notice.text()  # broken.jpg, a skipped file
    assert any(s.path.name == "broken.jpg" for s in window.data_tab.report.skipped)
    # In review order the grid starts at the photo to review first.
    panel.grid.select_paths([grid.photos.path(10)], grid.photos.path(10))
    window.findChild(QComboBox, "sortOrderPicker").setCurrentIndex(1)
    first = min(panel.proposals.proposals, key=lambda p: p.review_rank).path
    assert grid.photos.path(0) == first and panel.grid.selected_paths() == [first]


def test_key_1_moves_a_photo_and_undo_puts_it_back(window, qtbot, monkeypatch, tmp_path):
    root = _dataset(tmp_path / "colours")
    panel = _open_sort(window, qtbot, monkeypatch, root)
    data, grid = window.data_tab, panel.grid
    assert panel.classes()[0] == "green"  # the dataset's class order: key 1 is 'green'
    row = next(r for r in range(grid.photos.rowCount()) if grid.photos.path(r).name == "r0.png")
    source = grid.photos.path(row)
    before = source.read_bytes()
    grid.select_paths([source], source)
    qtbot.keyClick(grid, Qt.Key.Key_1)
    moved = root / "train" / "green" / "r0.png"
    assert moved.is_file() and not source.exists()
    assert grid.photos.rowCount() == 10 and source not in [grid.photos.path(r) for r in range(10)]
    assert grid.current_path() is not None  # on to the next photo
    qtbot.waitUntil(lambda: _settled(panel, data), timeout=WAIT_MS)
    assert sum(data.report.counts()["green"].values()) == 7
    assert "Sorted 1 · 10 left to sort" in panel.status.text()

    undo = window.findChild(QPushButton, "sortUndoButton")
    assert undo.isEnabled()
    qtbot.mouseClick(undo, Qt.MouseButton.LeftButton)
    assert source.is_file() and source.read_bytes() == before and not moved.exists()
    assert grid.photos.rowCount() == 11 and not undo.isEnabled()
    qtbot.waitUntil(lambda: _settled(panel, data), timeout=WAIT_MS)

    # X skips (in the view only) and Ctrl+Z brings it back.
    grid.select_paths([source], source)
    qtbot.keyClick(grid, Qt.Key.Key_X)
    assert source in panel.session.skipped and source.is_file()
    row = grid.photos.row_of(source)
    assert grid.model().data(grid.model().index(row)).startswith("skipped · ")
    qtbot.keyClick(grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert source not in panel.session.skipped


def test_accept_all_sure_moves_exactly_the_photos_at_the_threshold(
    window, qtbot, monkeypatch, tmp_path, dialogs
):
    root = _dataset(tmp_path / "colours")
    panel = _open_sort(window, qtbot, monkeypatch, root)
    expected = fit_proposals(panel.features)  # what the engine proposes for these features
    assert [(p.path, p.suggested, round(p.confidence, 4)) for p in expected.proposals] == [
        (p.path, p.suggested, round(p.confidence, 4)) for p in panel.proposals.proposals
    ]
    confidences = sorted({round(p.confidence, 2) for p in expected.proposals})
    assert len(confidences) > 1
    threshold = confidences[len(confidences) // 2]  # some photos above, some below
    panel.sure_spin.setValue(threshold)
    sure = [p for p in expected.proposals if p.confidence >= threshold]
    unsure = [p for p in expected.proposals if p.confidence < threshold]
    assert sure and unsure
    button = window.findChild(QPushButton, "sortAcceptSureButton")
    assert button.text() == f"Accept all sure ({len(sure)})…"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    kind, _title, text = dialogs.shown[-1]
    assert kind == "question" and f"Move {len(sure)} photo(s)" in text and "expected to be wrong" in text
    for p in sure:
        assert not p.path.exists() and (root / "train" / p.suggested / p.path.name).is_file()
    for p in unsure:
        assert p.path.is_file()
    assert panel.grid.photos.rowCount() == len(unsure)
    qtbot.waitUntil(lambda: _settled(panel, window.data_tab), timeout=WAIT_MS)
    assert len(panel.proposals.proposals) == len(unsure)  # refitted on the photos in memory
    assert panel.features.labeled.shape[0] == expected.labeled + len(sure)


def _view_to_viewport(photo_map, x: float, y: float):
    plot = photo_map.plot
    scene = plot.getPlotItem().getViewBox().mapViewToScene(QPointF(x, y))
    return plot.mapFromScene(scene)


def test_the_map_places_every_photo_and_a_lasso_names_a_group(window, qtbot, monkeypatch, tmp_path, dialogs):
    root = _dataset(tmp_path / "colours")
    panel = _open_sort(window, qtbot, monkeypatch, root)
    side = panel.map_side
    qtbot.waitUntil(lambda: bool(side.placed_paths()), timeout=WAIT_MS)
    plot = window.findChild(type(side.map.plot), "photoMap")
    import pyqtgraph as pg

    scatters = [i for i in plot.getPlotItem().items if isinstance(i, pg.ScatterPlotItem)]
    assert len(scatters) == 1
    assert len(scatters[0].data) == 12 + 11  # every labelled photo and every photo to sort
    assert set(side.placed_paths()) == set(panel.features.labeled_paths) | set(panel.features.unlabeled_paths)

    # The dataset doctor's likely wrong labels are marked (diamonds) on the same scatter item.
    suspect = panel.features.labeled_paths[0]
    window.data_tab.audit.suspectsFound.emit([suspect])
    assert side.map.marked() == [side.placed_paths().index(suspect)]
    assert scatters[0].data["symbol"][side.map.marked()[0]] == "d"
    assert sum(s == "d" for s in scatters[0].data["symbol"]) == 1
    side.set_suspects([])

    # Hovering a point shows its photo.
    x, y = side.map.position(0)
    qtbot.mouseMove(plot.viewport(), _view_to_viewport(side.map, x, y))
    qtbot.waitUntil(lambda: side.map.hovered() == 0, timeout=5_000)

    # A lasso (a polygon in map coordinates) around the left part of the map selects exactly its points.
    xy = side.map.positions()
    xs = sorted(set(xy[:, 0]))
    cut = (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
    low, high = xy[:, 1].min() - 1, xy[:, 1].max() + 1
    polygon = [(xy[:, 0].min() - 1, low), (cut, low), (cut, high), (xy[:, 0].min() - 1, high)]
    inside = [i for i in range(len(xy)) if xy[i, 0] < cut]
    assert side.map.lasso(polygon) == inside and side.map.selection() == inside
    side.map.select([])
    viewport = plot.viewport()  # the same lasso drawn with the mouse (Shift+drag)
    corners = [_view_to_viewport(side.map, px, py) for px, py in polygon]
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, corners[0])
    for corner in [*corners[1:], corners[0]]:
        qtbot.mouseMove(viewport, corner)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, corners[0])
    assert side.map.selection() == inside
    placed = side.placed_paths()
    left = set(panel.features.unlabeled_paths)
    unsorted = [placed[i] for i in inside if placed[i] in left]
    assert unsorted, "the left half holds photos to sort"
    assert set(panel.grid.selected_paths()) == set(unsorted)  # the grid follows the map's selection

    # Name it: its unsorted photos move into 'red' as one batch; sorted ones stay where they are.
    before = {p: p.read_bytes() for p in panel.features.labeled_paths}
    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(lambda *a, **k: ("red", True)))
    name = window.findChild(QPushButton, "mapNameButton")
    assert name.isEnabled()
    qtbot.mouseClick(name, Qt.MouseButton.LeftButton)
    assert (
        dialogs.shown[-1][0] == "question"
        and f"Move {len(unsorted)} unsorted photo(s)" in dialogs.shown[-1][2]
    )
    for path in unsorted:
        assert not path.exists() and (root / "train" / "red" / path.name).is_file()
    assert all(p.read_bytes() == b for p, b in before.items())
    assert len(panel.session.steps) == 1 and len(panel.session.steps[0].paths) == len(unsorted)
    assert len(side.placed_paths()) == 23  # the same points, under their new paths
    qtbot.waitUntil(lambda: _settled(panel, window.data_tab), timeout=WAIT_MS)

    # Suggested groups: a count, a colour per group, and a group selected by picking it.
    side.group_count.setValue(3)
    qtbot.mouseClick(window.findChild(QPushButton, "mapGroupsButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: side.group_picker.count() == 4, timeout=WAIT_MS)  # "Select a group…" + 3
    assert side.colour_picker.currentText() == "Colour by group"
    members = side.select_group(0)
    assert members and side.map.selection() == members


def test_points_in_polygon():
    import numpy as np

    triangle = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    points = np.array([[1.0, 1.0], [3.0, 3.0], [-1.0, 1.0], [0.5, 3.0]])
    assert points_in_polygon(points, triangle).tolist() == [True, False, False, True]


def test_a_read_only_dataset_shows_one_line_and_moves_nothing(window, qtbot, monkeypatch, tmp_path):
    root = _dataset(tmp_path / "colours")
    panel = _open_sort(window, qtbot, monkeypatch, root)
    before = _files(root)
    if os.access(root, os.W_OK) and os.geteuid() == 0:
        # Root may write anywhere: the dataset answers as a read-only one would (as in test_sorting).
        monkeypatch.setattr(
            "engine.sorting.journal._writable", lambda folder: not folder.is_relative_to(root)
        )
    folders = [p for p in [root, *root.rglob("*")] if p.is_dir()]
    for folder in folders:
        folder.chmod(0o555)
    try:
        panel.grid.select_paths([panel.grid.photos.path(0)], panel.grid.photos.path(0))
        qtbot.keyClick(panel.grid, Qt.Key.Key_1)
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert panel.error.isVisible()
    text = panel.error.text()
    assert "read-only" in text and "nothing was moved" in text and "<br" not in text and "\n" not in text
    assert _files(root) == before and panel.grid.photos.rowCount() == 11 and not panel.session.steps


def test_fewer_than_two_classes_says_so_in_one_line(window, qtbot, monkeypatch, tmp_path):
    # A folder with one class cannot be opened at all: one line, nothing moved.
    one = tmp_path / "one"
    make_image_folder(one, {"red": 4}, splits=None, size=(64, 64))
    (one / "unlabeled").mkdir()
    make_image(RED, (64, 64)).save(one / "unlabeled" / "x.png")
    before = _files(one)
    _open_failing(window, qtbot, monkeypatch, one)
    banner = window.data_tab.error
    assert banner.isVisible() and "Only one class" in banner.text() and "at least two" in banner.text()
    assert window.data_tab.report is None and _files(one) == before

    # Labelled photos of one class only (in memory): no head, the view says how to start.
    root = _dataset(tmp_path / "colours")
    panel = _open_sort(window, qtbot, monkeypatch, root)
    f = panel.features
    keep = [i for i, c in enumerate(f.labels) if c == 0]
    one_class: PhotoFeatures = dataclasses.replace(
        f, labeled_paths=[f.labeled_paths[i] for i in keep], labels=[0] * len(keep), labeled=f.labeled[keep]
    )
    panel.session.features = one_class
    panel.start_fit()
    qtbot.waitUntil(lambda: bool(panel.fit_problem), timeout=WAIT_MS)
    text = panel.notice.text()
    assert "at least two classes" in text and "Name a group on the map to start" in text
    assert panel.proposals is None and not window.findChild(QPushButton, "sortAcceptSureButton").isEnabled()
    assert all(not re.fullmatch(r"(red|green) [01]\.\d\d", c) for c in _captions(panel))
    assert panel.grid.photos.rowCount() == 11
