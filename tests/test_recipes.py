"""Issue 15's recipes: head-first fine-tuning, stage-wise learning rates, warm-up, frozen batch norm,
flip test-time augmentation (validation, predict, evaluate, export) and another input size."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers_images import SMALL_INPUT, make_image, make_image_folder
from torch import nn

from engine.core.config import INPUT_SIZE_AUTO, ConfigError, TrainConfig
from engine.core.rundir import RunDir
from engine.data.datasets import Sample
from engine.inference.evaluate import evaluate
from engine.inference.predict import Predictor, list_images
from engine.models.build import build_model
from engine.models.bundle import load_bundle
from engine.models.preprocessing import Preprocessing
from engine.models.registry import get_model_info
from engine.models.tta import FlipAveraged, tta_logits
from engine.training import events as ev
from engine.training.data_path import auto_input_size
from engine.training.features import FeatureStore
from engine.training.linear_head import choose_weight_decay, held_out_folds
from engine.training.recipe import lr_factor, make_scheduler
from engine.training.strategies import BACKBONE_STAGES, parameter_groups, set_mode
from engine.training.trainer import resume, train

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"
FAST = {"batch_size": 8, "workers": 0, "device": "cpu", "input_size": SMALL_INPUT}  # colours: 64 px suffice


@pytest.fixture(autouse=True)
def _feature_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The engine's feature cache in a folder of this test session, never the user's."""
    root = tmp_path_factory.getbasetemp() / "recipes-cache"
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(
        tmp_path_factory.mktemp("recipes") / "data", {"red": 8, "green": 8}, splits=("train", "val")
    )


# -- configuration ----------------------------------------------------------------------------------


def test_defaults_per_strategy_and_old_configs_read_back_unchanged():
    fine = TrainConfig.for_strategy("fine-tune")
    assert fine.head_first and fine.freeze_bn and fine.tta == "none" and fine.input_size == 0
    assert 0 < fine.lr_decay_per_stage < 1 and fine.warmup_epochs >= 1
    extract = TrainConfig.for_strategy("feature-extract")
    assert extract.tta == "flip" and extract.input_size == INPUT_SIZE_AUTO
    scratch = TrainConfig.for_strategy("scratch")
    assert not scratch.head_first and scratch.tta == "none"
    # A config.json from before these fields is the run it was: no head-first fit, one backbone rate,
    # no warm-up, batch norm training, the model's input size, no test-time augmentation.
    old = {k: v for k, v in fine.to_dict().items()}
    for key in ("head_first", "freeze_bn", "lr_decay_per_stage", "warmup_epochs", "input_size", "tta"):
        old.pop(key)
    legacy = TrainConfig.from_dict(old)
    assert (legacy.head_first, legacy.freeze_bn, legacy.lr_decay_per_stage) == (False, False, 1.0)
    assert (legacy.warmup_epochs, legacy.input_size, legacy.tta) == (0, 0, "none")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lr_decay_per_stage": 0.0}, "decay per stage"),
        ({"lr_decay_per_stage": 1.5}, "decay per stage"),
        ({"warmup_epochs": -1}, "warm-up"),
        ({"input_size": 16}, "input size"),
        ({"input_size": -2}, "input size"),
        ({"input_size": 4096}, "input size"),
        ({"tta": "tencrop"}, "test-time augmentation"),
    ],
)
def test_new_fields_are_validated(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


# -- stage-wise learning rates, warm-up, frozen batch norm -----------------------------------------


def test_the_cli_sets_every_recipe_option_and_leaves_the_strategy_defaults_otherwise():
    from engine.cli import build_parser
    from engine.cli.train import config_from_args as _config_from_args

    def config(*argv: str) -> TrainConfig:
        return _config_from_args(build_parser().parse_args(["train", "DATA", *argv]))

    plain = config("--strategy", "fine-tune")
    assert plain == TrainConfig.for_strategy("fine-tune")
    tuned = config(
        "--strategy", "fine-tune", "--no-head-first", "--no-freeze-bn", "--lr-decay-per-stage", "0.5",
        "--warmup-epochs", "2", "--input-size", "256", "--tta", "flip", "--feature-views", "3",
    )  # fmt: skip
    assert (tuned.head_first, tuned.freeze_bn, tuned.lr_decay_per_stage, tuned.warmup_epochs) == (
        False, False, 0.5, 2,
    )  # fmt: skip
    assert (tuned.input_size, tuned.tta, tuned.feature_views) == (256, "flip", 3)
    assert config("--input-size", "auto").input_size == INPUT_SIZE_AUTO
    assert config("--input-size", "MODEL", "--tta", "none").input_size == 0
    assert config("--input-size", "model", "--tta", "none").tta == "none"
    with pytest.raises(SystemExit):  # argparse's own message: expected auto, model or a number
        config("--input-size", "big")
    with pytest.raises(ConfigError, match="input size"):
        config("--input-size", "8")


def test_backbone_stages_get_rates_that_shrink_toward_the_input():
    config = TrainConfig.for_strategy("fine-tune", lr=1e-3, backbone_lr_scale=0.1, lr_decay_per_stage=0.5)
    model, heads = build_model("efficientnet_lite0", 2, pretrained=False)
    groups = parameter_groups(model, heads, config)
    assert [g["name"] for g in groups] == ["head"] + [f"backbone.{i}" for i in range(BACKBONE_STAGES)]
    assert groups[0]["lr"] == 1e-3
    rates = [g["lr"] for g in groups[1:]]
    assert math.isclose(rates[-1], 1e-4)  # the stage next to the head
    for earlier, later in zip(rates, rates[1:]):
        assert math.isclose(earlier, later * 0.5)
    # Every parameter is in exactly one group, stem in the first stage and the last layers in the last.
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    first = {id(p) for p in groups[1]["params"]}
    last = {id(p) for p in groups[-1]["params"]}
    assert id(model.get_submodule("_conv_stem").weight) in first
    assert id(model.get_submodule("_conv_head").weight) in last


def test_warmup_then_cosine_and_old_schedules_without_warmup():
    config = TrainConfig.for_strategy("fine-tune", epochs=5, warmup_epochs=1, schedule="cosine")
    factors = [lr_factor(config, e) for e in range(5)]
    assert factors[0] == 0.5 and factors[1] == 1.0
    assert all(a > b for a, b in zip(factors[1:], factors[2:]))
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, config)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx(factors)
    # Warm-up never takes every epoch, and without it the schedule is the torch one runs always had.
    assert lr_factor(config.replace(epochs=1, warmup_epochs=3), 0) == 1.0
    plain = make_scheduler(optimizer, config.replace(warmup_epochs=0))
    assert isinstance(plain, torch.optim.lr_scheduler.CosineAnnealingLR)


def test_frozen_batch_norm_keeps_its_statistics_while_the_rest_trains():
    model, heads = build_model("efficientnet_lite0", 2, pretrained=False)
    set_mode(model, heads, "fine-tune", training=True, freeze_bn=True)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert model.training and model.get_submodule(heads[0]).training
    before = norms[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64) * 5)
    assert torch.equal(norms[0].running_mean, before)
    set_mode(model, heads, "fine-tune", training=True)  # without it, batch norm trains as before
    assert all(m.training for m in norms)


# -- the head-first fit -----------------------------------------------------------------------------


def test_choose_weight_decay_uses_held_out_folds_of_the_training_data():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(30, 8, generator=g) + 1.5, torch.randn(30, 8, generator=g) - 1.5])
    y = torch.arange(2).repeat_interleave(30)
    folds = held_out_folds(y, 3)
    for k in range(3):  # stratified: each fold holds both classes equally
        assert torch.bincount(y[folds == k]).tolist() == [10, 10]
    best, scores = choose_weight_decay(x, y, 2, normalize=False, grid=(1e-4, 1e-2, 10.0))
    assert best in scores and scores[10.0] > min(scores.values())
    assert choose_weight_decay(x, y, 2, normalize=False, grid=(1e-4, 1e-2, 10.0)) == (best, scores)
    assert choose_weight_decay(x[:4], y[:4], 2)[1] == {}  # too few samples to hold any out


def test_fine_tune_fits_the_head_first_deterministically(data, tmp_path):
    # A learning rate of ~0: what epoch 1 validates is the head-first fit alone.
    config = TrainConfig.for_strategy("fine-tune", epochs=1, lr=1e-12, **FAST)
    messages: list[str] = []

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.Message):
            messages.append(event.text)

    first = train(config, data, run_dir=tmp_path / "a", on_event=on_event)
    assert any(m.startswith("head first:") and "L-BFGS" in m for m in messages)
    assert first.best_val_acc == 1.0  # colours: the frozen features separate them
    second = train(config, data, run_dir=tmp_path / "b")
    a, b = load_bundle(first.bundle_path).state_dict, load_bundle(second.bundle_path).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    without = train(config.replace(head_first=False), data, run_dir=tmp_path / "c")
    assert not torch.equal(a["_fc.weight"], load_bundle(without.bundle_path).state_dict["_fc.weight"])


def test_mlp_head_trains_head_only_epochs_first(data, tmp_path):
    config = TrainConfig.for_strategy("fine-tune", epochs=1, lr=1e-2, head="mlp", head_hidden=16, **FAST)
    messages: list[str] = []
    train(
        config,
        data,
        run_dir=tmp_path / "mlp",
        on_event=lambda e: messages.append(e.text) if isinstance(e, ev.Message) else None,
    )
    assert any(m.startswith("head first:") and "head-only epochs" in m for m in messages)


def test_default_fine_tune_resumes_exactly(data, tmp_path):
    config = TrainConfig.for_strategy("fine-tune", epochs=3, seed=1, lr=1e-2, **FAST)
    assert config.head_first and config.warmup_epochs and config.lr_decay_per_stage < 1
    full = train(config, data, run_dir=tmp_path / "full")
    stop = {"flag": False}

    def stop_after_first_epoch(event: ev.Event) -> None:
        if isinstance(event, ev.EpochEnd) and event.epoch == 1:
            stop["flag"] = True

    partial = train(
        config,
        data,
        run_dir=tmp_path / "part",
        on_event=stop_after_first_epoch,
        should_stop=lambda: stop["flag"],
    )
    assert partial.cancelled and partial.epochs_completed == 1
    messages: list[str] = []
    resumed = resume(
        tmp_path / "part", on_event=lambda e: messages.append(e.text) if isinstance(e, ev.Message) else None
    )
    assert not any(m.startswith("head first:") for m in messages)  # its result is in the checkpoint

    def strip(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert strip(resumed.history) == strip(full.history)
    full_state = load_bundle(full.bundle_path).state_dict
    resumed_state = load_bundle(resumed.bundle_path).state_dict
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)


# -- test-time augmentation and input size ---------------------------------------------------------


def test_tta_logits_average_the_mirror_image():
    model, _ = build_model("efficientnet_lite0", 3, pretrained=False)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = (model(x) + model(x.flip(-1))) / 2
        assert torch.allclose(tta_logits(model, x, "flip"), expected, atol=1e-6)
        assert torch.equal(tta_logits(model, x, "none"), model(x))
        assert torch.allclose(FlipAveraged(model)(x), expected, atol=1e-6)


def test_preprocessing_records_tta_only_when_used_and_input_size_scales_the_resize():
    pre = get_model_info("efficientnet_lite0").preprocessing
    assert "tta" not in pre.to_dict()
    flip = pre.with_tta("flip")
    assert flip.to_dict()["tta"] == "flip" and Preprocessing.from_dict(flip.to_dict()) == flip
    assert Preprocessing.from_dict(pre.to_dict()).tta == "none"  # a bundle from before TTA
    bigger = pre.with_input_size(256)
    assert (bigger.crop_size, bigger.resize_size) == (256, 293)
    assert pre.with_input_size(0) is pre
    # The feature cache is the same with and without TTA (flip views are entries of their own), and
    # another input size is another cache.
    info = get_model_info("efficientnet_lite0")
    assert FeatureStore(info, 0).path == FeatureStore(info, 0, preprocessing=flip).path
    assert FeatureStore(info, 0).path != FeatureStore(info, 0, preprocessing=bigger).path


@pytest.mark.parametrize("strategy", ["feature-extract", "fine-tune"])
def test_tta_run_validates_predicts_and_evaluates_alike(strategy, data, tmp_path):
    config = TrainConfig.for_strategy(strategy, epochs=1, lr=1e-2, tta="flip", **FAST)
    result = train(config, data, run_dir=tmp_path / "run")
    bundle = load_bundle(result.bundle_path)
    assert bundle.preprocessing.tta == "flip"
    predictor = Predictor(bundle, "cpu")
    report = evaluate(predictor, data, split="val")
    assert report.accuracy == pytest.approx(result.best_val_acc)
    assert report.mean_loss == pytest.approx(RunDir(tmp_path / "run").read_metrics()[0]["val_loss"], abs=1e-4)
    image = predictor.load(list_images(data / "val")[0])
    batch = predictor.transform(image).unsqueeze(0)
    with torch.no_grad(), predictor.precision.autocast(predictor.device):  # the bundle's precision
        plain = predictor.model(batch).float()
        mirrored = predictor.model(batch.flip(-1)).float()
    temperature = bundle.calibration.temperature  # the run's calibration divides the averaged logits
    assert torch.allclose(
        predictor.probabilities([image]), torch.softmax((plain + mirrored) / 2 / temperature, 1), atol=1e-5
    )


def test_tta_bundle_exports_with_parity(data, tmp_path):
    pytest.importorskip("onnxruntime")
    from engine.inference.export import export_bundle, parity_check

    result = train(
        TrainConfig.for_strategy("feature-extract", epochs=1, **FAST), data, run_dir=tmp_path / "run"
    )
    exported = export_bundle(result.bundle_path, "onnx", tmp_path / "model.onnx")
    assert exported.metadata["preprocessing"]["tta"] == "flip"
    parity = parity_check(result.bundle_path, exported.path, list_images(data / "val"))
    assert parity.passed()


def test_automatic_input_size_grows_only_for_photos_that_have_the_pixels(tmp_path):
    pre = get_model_info("efficientnet_lite0").preprocessing
    assert TrainConfig.for_strategy("feature-extract").input_size == INPUT_SIZE_AUTO

    def samples(size: tuple[int, int], count: int = 5) -> list[Sample]:
        folder = tmp_path / f"{size[0]}x{size[1]}"
        folder.mkdir()
        paths = []
        for i in range(count):
            path = folder / f"{i}.png"
            make_image((200, 30, 30), size, seed=i).save(path)
            paths.append(Sample(path, 0))
        return paths

    assert auto_input_size(pre, samples((500, 375))) == (288, 375.0)  # resize 329 <= 375
    assert auto_input_size(pre, samples((400, 300))) == (256, 300.0)  # 329 > 300 >= 293
    assert auto_input_size(pre, samples((128, 96))) == (224, 96.0)  # small photos: never enlarged
    assert auto_input_size(pre, []) == (224, None)


def test_another_input_size_is_used_and_recorded(data, tmp_path):
    config = TrainConfig.for_strategy("feature-extract", epochs=1, lr=1e-2, **(FAST | {"input_size": 160}))
    result = train(config, data, run_dir=tmp_path / "run")
    pre = load_bundle(result.bundle_path).preprocessing
    assert (pre.crop_size, pre.resize_size) == (160, 183)
    assert result.best_val_acc == 1.0


# -- acceptance on the real dataset ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="hymenoptera dataset not present")
def test_default_feature_extraction_on_hymenoptera_reaches_095(tmp_path, monkeypatch, feature_cache):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(feature_cache))  # the acceptance runs' shared features
    config = TrainConfig.for_strategy("feature-extract", model="efficientnet_lite0", device="cpu")
    result = train(config, HYMENOPTERA, run_dir=tmp_path / "run")
    assert result.best_val_acc >= 0.95, result.history
