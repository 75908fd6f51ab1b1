"""The Train form is generated from the settings' declarations: a control for every TrainConfig field,
with the command line's help as its tooltip, and every value it shows reaches config.json and the bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QComboBox
from test_gui_training import open_dataset, start, wait_until_finished

from engine.cli import build_parser
from engine.core.config import STRATEGY_NAMES, TrainConfig
from engine.core.setting import Declared, check_value, help_text
from engine.models.bundle import load_bundle

#: Values that keep the one-epoch run on 48 px photos quick; every other setting gets a generic change.
QUICK = {"epochs": 1, "batch_size": 4, "input_size": 160, "device": "cpu", "workers": 1, "feature_views": 1,
         "seed": 2**40, "image_cache_mb": 64, "warmup_epochs": 3, "early_stopping_patience": 2}  # fmt: skip


def _another_value(item: Declared, current: Any) -> Any:
    """A valid value of ``item`` other than ``current``."""
    if item.name in QUICK:
        return QUICK[item.name]
    if item.choices:
        return next(c for c in item.choices if c != current and c != "mps")
    if item.kind is bool:
        return not current
    low, high = item.setting.bounds()
    for candidate in (current * 2, current / 2, (low + high) / 2):
        value = round(candidate) if item.kind is int else candidate
        if value != current and check_value(item, value) is None:
            return value
    raise AssertionError(f"no other value for {item.name}")


def test_every_setting_has_a_form_control_whose_tooltip_is_the_command_lines_help(window):
    form = window.train_tab.form
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cli_help = {a.dest: a.help.replace("%%", "%") for a in sub.choices["train"]._actions}
    shown = {"model": form.model_picker.toolTip(), "strategy": form.strategy_picker.toolTip()}
    shown |= {name: control.widget.toolTip() for name, control in form.controls.items()}
    assert set(shown) == {item.name for item in TrainConfig.settings()}
    for item in TrainConfig.settings():
        assert shown[item.name] == cli_help[item.name] == help_text(item, STRATEGY_NAMES), item.name
    assert not form.advanced.isExpanded()  # the advanced settings are folded away at first


def test_every_value_the_form_shows_reaches_config_json_and_the_bundle(
    window, qtbot, monkeypatch, synthetic_dataset
):
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    form = window.train_tab.form
    form.strategy_picker.setCurrentIndex(form.strategy_picker.findData("feature-extract"))
    defaults = TrainConfig.for_strategy("feature-extract")
    for name, control in form.controls.items():
        control.set_value(_another_value(control.item, getattr(defaults, name)))
    asked = form.config()
    changed = {name for name in form.controls if getattr(asked, name) != getattr(defaults, name)}
    assert changed == set(form.controls)  # every setting of the form differs from its default
    start(window, qtbot)
    wait_until_finished(window, qtbot)
    run = next(p for p in Path(window.settings.runs_root()).iterdir() if p.is_dir())
    recorded = json.loads((run / "config.json").read_text(encoding="utf-8"))["config"]
    assert recorded == asked.to_dict()
    assert load_bundle(run / "model.pt").config == asked.to_dict()
    form.save()
    window.close()


def test_switching_strategy_keeps_what_the_user_chose(window):
    form = window.train_tab.form
    picker: QComboBox = form.strategy_picker
    picker.setCurrentIndex(picker.findData("feature-extract"))
    form.control("epochs").set_value(3)
    picker.setCurrentIndex(picker.findData("fine-tune"))
    assert form.config().epochs == 3  # chosen by the user: kept
    assert form.config().lr_decay_per_stage == TrainConfig.for_strategy("fine-tune").lr_decay_per_stage
    assert not form.control("feature_views").widget.isEnabled()  # feature extraction only
    assert form.control("freeze_bn").widget.isEnabled()
