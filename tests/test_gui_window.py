"""The main window: contract names, menus, About, device in the status bar, settings that persist."""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from gui.core.settings import Settings

CONTRACT = {
    "datasetPath": QLineEdit,
    "openDatasetButton": QPushButton,
    "classTable": QAbstractItemView,
    "modelPicker": QComboBox,
    "strategyPicker": QComboBox,
    "epochsSpin": QSpinBox,
    "batchSizeSpin": QSpinBox,
    "learningRateSpin": QDoubleSpinBox,
    "startButton": QPushButton,
    "stopButton": QPushButton,
    "lossPlot": pg.PlotWidget,
    "accuracyPlot": pg.PlotWidget,
    "trainProgress": QProgressBar,
    "predictOpenButton": QPushButton,
    "predictResults": QAbstractItemView,
}


def test_contract_object_and_accessible_names(window):
    assert window.objectName() == "mainWindow"
    for name, kind in CONTRACT.items():
        widget = window.findChild(kind, name)
        assert widget is not None, name
        assert widget.accessibleName(), name
    strategies = window.findChild(QComboBox, "strategyPicker")
    texts = [strategies.itemText(i) for i in range(strategies.count())]
    assert {"feature-extract", "fine-tune", "scratch"} <= set(texts)
    assert window.findChild(QDoubleSpinBox, "learningRateSpin").decimals() >= 6
    for name in ("lossPlot", "accuracyPlot"):
        assert len(window.findChild(pg.PlotWidget, name).getPlotItem().listDataItems()) == 2
    assert [window.tabs.tabText(i).split()[-1] for i in range(3)] == ["Data", "Train", "Predict"]


def test_start_is_disabled_until_a_dataset_is_open(window):
    assert not window.findChild(QPushButton, "startButton").isEnabled()
    assert not window.findChild(QPushButton, "stopButton").isEnabled()
    assert "Data tab" in window.findChild(QLabel, "startHint").text()


def test_device_appears_in_the_status_bar_and_the_about_box(window, qtbot, dialogs):
    label = window.findChild(QLabel, "deviceLabel")
    qtbot.waitUntil(lambda: window.environment is not None, timeout=120_000)
    assert label.text().startswith(("CPU, ", "CUDA: "))
    window.about_action.trigger()
    kind, title, text = dialogs.shown[-1]
    assert kind == "about" and "Transfer Studio" in title
    import torch
    import torchvision

    for fragment in (torch.__version__, torchvision.__version__, label.text(), "PySide6"):
        assert fragment in text


def test_model_catalog_loads_in_the_background_with_offline_default(window, qtbot):
    picker = window.findChild(QComboBox, "modelPicker")
    assert picker.currentText() == "efficientnet_lite0"  # usable before the catalog arrives
    qtbot.waitUntil(lambda: picker.count() > 10, timeout=120_000)
    assert picker.currentText() == "efficientnet_lite0"
    names = window.train_tab.form.model_picker.model_names()
    assert "resnet18" in names and "efficientnet_lite0" in names
    details = window.findChild(QLabel, "modelDetails").text()
    assert "EfficientNet-Lite" in details and "offline" in details and "224" in details
    picker.setCurrentIndex(names.index("resnet18"))
    assert "ResNet" in window.findChild(QLabel, "modelDetails").text()
    tooltip_row = names.index("resnet18")
    assert "parameters" in picker.itemData(tooltip_row, 3)  # Qt.ToolTipRole


def test_model_picker_is_searchable(window, qtbot):
    picker = window.findChild(QComboBox, "modelPicker")
    qtbot.waitUntil(lambda: picker.count() > 10, timeout=120_000)
    assert picker.isEditable() and picker.completer() is not None
    picker.lineEdit().setText("mobilenet_v3_small")
    picker.lineEdit().editingFinished.emit()
    assert window.train_tab.form.model_picker.current_model() == "mobilenet_v3_small"
    picker.lineEdit().setText("no such model")
    picker.lineEdit().editingFinished.emit()
    assert picker.currentText() == "mobilenet_v3_small"  # unknown text falls back


def test_strategy_change_applies_its_defaults(window):
    from engine.core.config import STRATEGIES, TrainConfig

    strategy = window.findChild(QComboBox, "strategyPicker")
    epochs = window.findChild(QSpinBox, "epochsSpin")
    lr = window.findChild(QDoubleSpinBox, "learningRateSpin")
    for name in ("scratch", "fine-tune", "feature-extract"):
        strategy.setCurrentIndex(strategy.findText(name))
        defaults = TrainConfig.for_strategy(name)
        assert epochs.value() == defaults.epochs
        assert lr.value() == pytest.approx(defaults.lr)
        assert window.findChild(QLabel, "strategyHelp").text() == STRATEGIES[name]
    config = window.train_tab.form.config()
    assert config.strategy == "feature-extract" and config.model == "efficientnet_lite0"


def test_choices_and_geometry_persist(make_window, tmp_path):
    path = tmp_path / "persist.ini"
    first = make_window(path)
    first.findChild(QSpinBox, "epochsSpin").setValue(7)
    first.findChild(QDoubleSpinBox, "learningRateSpin").setValue(0.000123)
    first.resize(700, 500)  # inside the offscreen screen (800x600)
    first.tabs.setCurrentIndex(2)
    first.close()
    second = make_window(path)
    assert second.findChild(QSpinBox, "epochsSpin").value() == 7
    assert second.findChild(QDoubleSpinBox, "learningRateSpin").value() == pytest.approx(0.000123)
    assert second.tabs.currentIndex() == 2
    assert abs(second.width() - 700) <= 30 and abs(second.height() - 500) <= 30


@pytest.mark.parametrize(
    "content",
    [
        b"[window\ngeometry=@ByteArray(\x00\x01\ntab=[[[\n",  # not INI at all
        bytes(range(256)) * 4,  # binary garbage
        b"[train]\nepochs=lots\nlr=-nan\nbatch_size=99999999999\nstrategy=warp\n"
        b"augment=maybe\nmodel=@Variant(\\0\\0\\0\\x7f)\ninput_size=7\ntta=sideways\n"
        b"[window]\ngeometry=nonsense\ntab=9\n"
        b"[data]\nrecent=@Invalid()\nlast=42\n",  # valid INI, wrong values
    ],
)
def test_corrupt_settings_never_block_start_up(make_window, tmp_path, content):
    path = tmp_path / "settings.ini"
    path.write_bytes(content)
    window = make_window(path)
    assert window.isVisible()
    from engine.core.config import TrainConfig

    # Every unusable value falls back to its default: feature extraction's settings, the first tab,
    # no recent datasets.
    config = window.train_tab.form.config()
    defaults = TrainConfig.for_strategy("feature-extract")
    fields = (
        "strategy",
        "epochs",
        "batch_size",
        "lr",
        "optimizer",
        "schedule",
        "augment",
        "input_size",
        "tta",
    )
    assert {f: getattr(config, f) for f in fields} == {f: getattr(defaults, f) for f in fields}
    assert config.model == "efficientnet_lite0"
    assert window.tabs.currentIndex() == 0
    assert window.data_tab.settings.recent_datasets() == []
    window.close()
    # What was written back is a clean settings file.
    assert QSettings(str(path), QSettings.Format.IniFormat).status() == QSettings.Status.NoError


def test_unparsable_settings_file_is_kept_aside(tmp_path, qtbot):
    path = tmp_path / "settings.ini"
    path.write_bytes(b"[broken\nx=1\n")
    settings = Settings(path)
    assert settings.recovered_from is not None and settings.recovered_from.read_bytes() == b"[broken\nx=1\n"
    assert settings.get_int("x", 5) == 5
    settings.set("window/geometry", QByteArray(b"abc"))
    settings.sync()
    assert Settings(path).get_bytes("window/geometry") == QByteArray(b"abc")


def test_settings_path_comes_from_the_environment(window, tmp_path):
    import os

    assert str(window.settings.path) == os.environ["TRANSFER_STUDIO_SETTINGS"]
    assert str(window.settings.runs_root()) == os.environ["TRANSFER_STUDIO_RUNS"]
    assert window.findChild(QWidget, "runsFolder") is not None


def test_the_app_collects_garbage_on_the_gui_thread_only(qtbot):
    """Automatic collection is off (it could destroy Qt objects from a worker thread); a timer on the
    GUI thread runs the collection once one is due."""
    import gc

    from PySide6.QtWidgets import QWidget

    from gui.background.gc_policy import collect_on_the_gui_thread

    parent = QWidget()
    qtbot.addWidget(parent)
    try:
        timer = collect_on_the_gui_thread(parent, interval_ms=10)
        assert not gc.isenabled() and timer.isActive()
        junk = [[] for _ in range(gc.get_threshold()[0] + 100)]  # container allocations: one is due
        assert gc.get_count()[0] > gc.get_threshold()[0]
        qtbot.waitUntil(lambda: gc.get_count()[0] < gc.get_threshold()[0], timeout=5_000)
        del junk
    finally:
        gc.enable()
