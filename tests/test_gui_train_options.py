"""The Train tab's head and early-stopping choices reach the run and its bundle, and are remembered."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import QComboBox, QSpinBox
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
