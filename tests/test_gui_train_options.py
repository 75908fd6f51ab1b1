"""The Train tab's head, early-stopping and recipe choices reach the run and its bundle, and are remembered."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import QCheckBox, QComboBox, QSpinBox
from test_gui_training import configure, open_dataset, start, wait_until_finished

from engine.models.bundle import load_bundle


def test_head_and_early_stopping_choices_reach_the_run(window, qtbot, monkeypatch, synthetic_dataset):
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window, epochs=1)
    head = window.findChild(QComboBox, "headPicker")
    head.setCurrentIndex(head.findData("mlp"))
    window.findChild(QSpinBox, "earlyStoppingSpin").setValue(3)
    start(window, qtbot)
    wait_until_finished(window, qtbot)
    runs = [p for p in Path(window.settings.runs_root()).iterdir() if p.is_dir()]
    assert len(runs) == 1
    config = json.loads((runs[0] / "config.json").read_text(encoding="utf-8"))["config"]
    assert config["head"] == "mlp" and config["early_stopping_patience"] == 3
    assert load_bundle(runs[0] / "model.pt").head.kind == "mlp"
    window.train_tab.form.save()
    assert window.settings.get_str("train/head") == "mlp"
    assert window.settings.get_int("train/early_stopping", 0, 0, 100) == 3


def test_recipe_choices_follow_the_strategy_reach_the_run_and_are_remembered(
    make_window, qtbot, monkeypatch, synthetic_dataset, tmp_path
):
    from engine.core.config import INPUT_SIZE_AUTO

    settings_file = tmp_path / "settings.ini"
    window = make_window(settings_file)
    form = window.train_tab.form
    size = window.findChild(QComboBox, "inputSizePicker")
    tta = window.findChild(QCheckBox, "ttaCheck")
    head_first = window.findChild(QCheckBox, "headFirstCheck")
    # Feature extraction's defaults: automatic input size, flip averaging; head first is fine-tuning's.
    form.strategy_picker.setCurrentIndex(form.strategy_picker.findData("feature-extract"))
    assert size.currentData() == INPUT_SIZE_AUTO and tta.isChecked()
    assert not head_first.isEnabled() and not head_first.isChecked()
    form.strategy_picker.setCurrentIndex(form.strategy_picker.findData("fine-tune"))
    assert size.currentData() == 0 and not tta.isChecked()
    assert head_first.isEnabled() and head_first.isChecked()
    form.strategy_picker.setCurrentIndex(form.strategy_picker.findData("feature-extract"))

    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window, epochs=1)
    size.setCurrentIndex(size.findData(160))
    tta.setChecked(False)
    start(window, qtbot)
    wait_until_finished(window, qtbot)
    runs = [p for p in Path(window.settings.runs_root()).iterdir() if p.is_dir()]
    config = json.loads((runs[0] / "config.json").read_text(encoding="utf-8"))["config"]
    assert config["input_size"] == 160 and config["tta"] == "none"
    bundle = load_bundle(runs[0] / "model.pt")
    assert bundle.preprocessing.crop_size == 160 and bundle.preprocessing.tta == "none"
    form.save()
    window.close()

    again = make_window(settings_file).train_tab.form
    assert again.config().input_size == 160 and again.config().tta == "none"
