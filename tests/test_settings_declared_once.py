"""Every training setting is declared once (engine.core.config): its command-line option, its check and
its words all come from that declaration."""

from __future__ import annotations

import argparse
import math

import pytest

from engine.cli import build_parser
from engine.cli.train import config_from_args
from engine.core.config import STRATEGY_NAMES, ConfigError, TrainConfig
from engine.core.setting import check_value, describe_value, help_text


def _train_actions() -> dict[str, argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action for action in sub.choices["train"]._actions}


@pytest.mark.parametrize("item", TrainConfig.settings(), ids=lambda item: item.name)
def test_every_setting_is_a_train_option_named_after_its_field_with_its_declared_help(item):
    action = _train_actions()[item.name]
    assert item.option in action.option_strings
    assert set(item.setting.aliases) <= set(action.option_strings)
    assert action.help.replace("%%", "%") == help_text(item, STRATEGY_NAMES)
    assert item.setting.help in action.help
    if item.choices:
        assert list(action.choices) == list(item.choices)


def test_earlier_option_spellings_still_work():
    args = build_parser().parse_args(["train", "DATA", "--early-stopping", "3", "--sync-bn", "--no-augment"])
    config = config_from_args(args)
    assert (config.early_stopping_patience, config.sync_batchnorm, config.augment) == (3, True, False)


def test_an_option_left_out_takes_the_strategys_default():
    for strategy in STRATEGY_NAMES:
        args = build_parser().parse_args(["train", "DATA", "--strategy", strategy])
        assert config_from_args(args) == TrainConfig.for_strategy(strategy)


@pytest.mark.parametrize("item", TrainConfig.settings(), ids=lambda item: item.name)
def test_every_setting_has_a_checked_range_or_choices(item):
    assert item.setting.label and item.setting.help.endswith((".", ")"))
    assert check_value(item, item.default) is None
    for strategy, value in item.setting.defaults.items():
        assert strategy in STRATEGY_NAMES and check_value(item, value) is None
    if item.kind in (int, float) and not item.choices:
        low, high = item.setting.bounds()
        assert low is not None and high is not None, f"{item.name} has no range"
        assert check_value(item, high * 2 + 1) is not None
        if item.kind is float:
            assert check_value(item, math.inf) is not None and check_value(item, math.nan) is not None
        with pytest.raises(ConfigError, match=item.setting.label.lower()):
            TrainConfig(**{item.name: high * 2 + 1})
    if item.choices:
        with pytest.raises(ConfigError, match=f"unknown {item.setting.label.lower()}"):
            TrainConfig(**{item.name: "no-such-choice"})


def test_values_in_words():
    items = {item.name: item for item in TrainConfig.settings()}
    assert describe_value(items["input_size"], -1) == "automatic"
    assert describe_value(items["input_size"], 288) == "288 px"
    assert describe_value(items["augment"], True) == "on"
    assert describe_value(items["optimizer"], "adamw") == "AdamW"
    assert describe_value(items["early_stopping_patience"], 0) == "off"


def test_a_config_read_from_disk_is_checked_with_the_same_declaration():
    good = TrainConfig().to_dict()
    assert TrainConfig.from_dict(good | {"epochs": 3.0}).epochs == 3
    for bad, message in (({"seed": 10**20}, "seed"), ({"lr": "fast"}, "learning rate"),
                         ({"augment": "yes"}, "augmentation"), ({"head_hidden": 10**8}, "mlp hidden units")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_dict(good | bad)
    with pytest.raises(ConfigError, match="JSON object"):
        TrainConfig.from_dict([1, 2])  # type: ignore[arg-type]
