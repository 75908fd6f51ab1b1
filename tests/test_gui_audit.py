"""The Data tab's dataset doctor: run it, see a finding's photos, act on it (nothing deleted), Cancel."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from helpers_images import class_colour
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton, QTreeWidget
from test_gui_training import open_dataset

from engine.data.exclusions import load_exclusions

AUDIT_TIMEOUT_MS = 180_000


def _photo(colour: tuple[int, int, int], seed: int) -> Image.Image:
    """A class-coloured photo with its own random large-scale structure (so no two look alike)."""
    rng = np.random.default_rng(seed)
    pattern = Image.fromarray((rng.random((6, 7)) * 255).astype(np.uint8)).resize((96, 80), Image.BICUBIC)
    shade = np.asarray(pattern, dtype=np.float32)[..., None] / 255.0
    pixels = np.clip(np.array(colour, dtype=np.float32) * (0.35 + 0.65 * shade), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _planted(root: Path) -> dict[str, Path]:
    """Two colour classes; a train photo copied into val (a leak); a blue photo among the reds; a black one."""
    for split, count in (("train", 12), ("val", 5)):
        for index, name in enumerate(("red", "blue")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                seed = 100 * index + i + (50 if split == "val" else 0)
                _photo(class_colour(index), seed).save(folder / f"{name}_{i:02d}.png")
    leak = root / "val" / "red" / "copy_of_red_03.png"
    shutil.copy(root / "train" / "red" / "red_03.png", leak)
    wrong = root / "train" / "red" / "actually_blue.png"
    _photo(class_colour(1), seed=999).save(wrong)
    black = root / "train" / "blue" / "black.png"
    Image.new("RGB", (96, 80)).save(black)
    return {"leak": leak, "wrong": wrong, "black": black}


def _top(tree: QTreeWidget, title: str):
    for i in range(tree.topLevelItemCount()):
        if tree.topLevelItem(i).text(0).startswith(title):
            return tree.topLevelItem(i)
    raise AssertionError(f"no '{title}' section")


def _click(window, name: str, qtbot) -> None:
    button = window.findChild(QPushButton, name)
    assert button.isEnabled(), name
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_audit_finds_planted_problems_and_acts_without_deleting(window, qtbot, monkeypatch, tmp_path):
    root = tmp_path / "planted"
    planted = _planted(root)
    open_dataset(window, qtbot, monkeypatch, root)
    data = window.data_tab
    data.views.setCurrentWidget(data.audit)
    panel = data.audit
    values: list[int] = []
    panel.progress.valueChanged.connect(values.append)
    _click(window, "auditRunButton", qtbot)
    assert window.findChild(QPushButton, "auditCancelButton").isEnabled()
    assert "elapsed 0:00" in window.findChild(QLabel, "auditStatus").text()  # the clock runs from Start
    qtbot.waitUntil(lambda: panel.audit is not None and not panel.is_running(), timeout=AUDIT_TIMEOUT_MS)
    # One bar over every stage (features, then the label folds), never going back, full at the end.
    assert len(values) > 2 and values == sorted(values) and values[-1] == panel.progress.maximum()
    tree = window.findChild(QTreeWidget, "auditFindings")
    assert "finding" in window.findChild(QLabel, "auditStatus").text()

    # The leak: both copies shown; keep the train one, the val copy is excluded (never deleted).
    leaks = _top(tree, "Leaks")
    assert leaks.childCount() == 1
    tree.setCurrentItem(leaks.child(0))
    assert panel.grid.thumbs.rowCount() == 2
    names = [panel.grid.thumbs.path(r).name for r in range(2)]
    panel.grid.setCurrentIndex(panel.grid.thumbs.index(names.index("red_03.png")))
    _click(window, "auditKeepButton", qtbot)
    qtbot.waitUntil(
        lambda: data.report is not None and data.report.excluded == [planted["leak"].resolve()],
        timeout=60_000,
    )
    assert planted["leak"].is_file()
    assert "1 excluded by you" in window.findChild(QLabel, "datasetSummary").text()
    assert window.train_tab.report is data.report  # training gets the new scan at once
    # Issue 22: the photo just excluded can be included again from the same finding (Exclude greys).
    exclude, include = (
        window.findChild(QPushButton, n) for n in ("auditExcludeButton", "auditIncludeButton")
    )
    val_copy = 1 - names.index("red_03.png")
    panel.grid.setCurrentIndex(panel.grid.thumbs.index(val_copy))
    assert include.isEnabled() and not exclude.isEnabled()
    panel.grid.setCurrentIndex(panel.grid.thumbs.index(1 - val_copy))  # the kept one: not excluded
    assert exclude.isEnabled() and not include.isEnabled()

    # Include it again from the "Excluded by you" section.
    excluded = _top(tree, "Excluded by you (1)")
    tree.setCurrentItem(excluded.child(0))
    panel.grid.selectAll()
    _click(window, "auditIncludeButton", qtbot)
    qtbot.waitUntil(lambda: data.report is not None and not data.report.excluded, timeout=60_000)
    assert load_exclusions(root) == set()

    # The blue photo in the red folder: moved to the suggested class, then Undo puts it back.
    labels = _top(tree, "Likely wrong labels")
    flagged = [labels.child(i) for i in range(labels.childCount())]
    item = next(i for i in flagged if i.text(0) == "actually_blue.png")
    assert "looks like blue" in item.text(1)
    tree.setCurrentItem(item)
    _click(window, "auditMoveButton", qtbot)
    moved = root / "train" / "blue" / "actually_blue.png"
    assert moved.is_file() and not planted["wrong"].exists()
    assert "moved to blue" in item.text(1)
    qtbot.waitUntil(
        lambda: data.report is not None and data.report.counts()["blue"]["train"] == 14, timeout=60_000
    )
    _click(window, "auditUndoButton", qtbot)
    assert planted["wrong"].is_file() and not moved.exists()

    # The black photo is flagged.
    quality = _top(tree, "Photo quality")
    flagged_quality = {
        quality.child(i).text(0): quality.child(i).text(1) for i in range(quality.childCount())
    }
    assert "dark" in flagged_quality.get("black.png", "") or "uniform" in flagged_quality.get("black.png", "")


def test_audit_cancel_changes_nothing(window, qtbot, monkeypatch, tmp_path):
    root = tmp_path / "planted"
    _planted(root)
    open_dataset(window, qtbot, monkeypatch, root)
    panel = window.data_tab.audit
    window.data_tab.views.setCurrentWidget(panel)
    _click(window, "auditRunButton", qtbot)
    _click(window, "auditCancelButton", qtbot)
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=AUDIT_TIMEOUT_MS)
    status = window.findChild(QLabel, "auditStatus").text()
    assert panel.audit is None and ("Cancelled" in status or "finding" in status)
    assert load_exclusions(root) == set()
    assert window.findChild(QPushButton, "auditRunButton").isEnabled()


def test_train_tab_shows_what_automatic_balance_does_for_the_dataset(window, qtbot, monkeypatch, tmp_path):
    from helpers_images import make_image_folder
    from PySide6.QtWidgets import QComboBox

    root = make_image_folder(tmp_path / "skewed", {"many": 16, "few": 4})
    open_dataset(window, qtbot, monkeypatch, root)
    form = window.train_tab.form
    hint = window.findChild(QLabel, "balanceHelp")
    picker = window.findChild(QComboBox, "balancePicker")
    assert picker.currentData() == "auto"
    assert "largest/smallest class 4.0" in hint.text() and "class-weighted loss" in hint.text()
    picker.setCurrentIndex(picker.findData("none"))
    assert "no balancing" in hint.text() and form.config().balance == "none"
    picker.setCurrentIndex(picker.findData("sampler"))
    assert "balanced sampler" in hint.text() and form.config().balance == "sampler"
