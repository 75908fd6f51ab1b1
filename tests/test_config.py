"""TrainConfig: per-strategy defaults, validation, round-trip."""

import pytest

from engine.core.config import STRATEGIES, ConfigError, TrainConfig


def test_each_strategy_has_explanation_and_defaults():
    for strategy in ("feature-extract", "fine-tune", "scratch"):
        config = TrainConfig.for_strategy(strategy)
        assert config.strategy == strategy
        assert STRATEGIES[strategy]
    assert TrainConfig.for_strategy("scratch").epochs > TrainConfig.for_strategy("fine-tune").epochs
    assert not TrainConfig.for_strategy("scratch").pretrained
    assert TrainConfig.for_strategy("fine-tune").pretrained


def test_overrides_and_none_are_ignored():
    config = TrainConfig.for_strategy("fine-tune", epochs=3, lr=None, optimizer="sgd")
    assert config.epochs == 3
    assert config.lr == TrainConfig.for_strategy("fine-tune").lr
    assert config.optimizer == "sgd"


def test_config_is_frozen_and_round_trips():
    config = TrainConfig.for_strategy("feature-extract", epochs=4, seed=7)
    with pytest.raises(AttributeError):
        config.epochs = 5  # type: ignore[misc]
    assert TrainConfig.from_dict(config.to_dict() | {"unknown_future_key": 1}) == config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"strategy": "magic"}, "unknown strategy"),
        ({"optimizer": "lbfgs"}, "unknown optimizer"),
        ({"schedule": "wild"}, "unknown schedule"),
        ({"device": "tpu"}, "unknown device"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch size"),
        ({"lr": 0}, "learning rate"),
        ({"val_fraction": 1.5}, "validation fraction"),
    ],
)
def test_invalid_values_raise_config_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)
