"""Head variants (issue 15, item 4): ``replace``, ``append`` and ``mlp`` heads.

Each variant builds the same network pretrained or not (so bundles rebuild it), trains the right
parameters under each strategy, feeds the feature cache the trainable part's input, and its bundle
records it, so that predicting, evaluating, ONNX export (with parity) and Grad-CAM rebuild the exact
architecture. Bundles from before head variants load as ``replace``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_images import SMALL_INPUT, make_image_folder
from torch import nn

from engine.core.config import HEADS, ConfigError, TrainConfig
from engine.core.errors import BundleError, ModelError
from engine.core.rundir import RunDir
from engine.inference.evaluate import evaluate
from engine.inference.export import export_bundle, parity_check, parity_images
from engine.inference.gradcam import find_target_layer, grad_cam_for_image
from engine.inference.predict import Predictor, list_images
from engine.models import lite0
from engine.models.build import build_model
from engine.models.bundle import Bundle, load_bundle, save_bundle
from engine.models.heads import AppendedHead, HeadSpec, MLPHead, head_container, head_spec_of
from engine.models.registry import get_model_info
from engine.training import events as ev
from engine.training.features import FeatureStore
from engine.training.strategies import parameter_groups
from engine.training.trainer import resume, train

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"
FAST = {"batch_size": 8, "workers": 0, "device": "cpu", "lr": 1e-2, "input_size": SMALL_INPUT}


@pytest.fixture(autouse=True)
def _feature_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The engine's feature cache in a folder of this test session, never the user's."""
    root = tmp_path_factory.getbasetemp() / "head-variants-cache"
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(
        tmp_path_factory.mktemp("heads") / "data", {"red": 6, "green": 6}, splits=("train", "val")
    )


def _sizes(layer: nn.Module) -> tuple[int, int]:
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    assert isinstance(layer, nn.Conv2d)
    return layer.in_channels, layer.out_channels


# -- building ---------------------------------------------------------------------------------------


def test_append_keeps_the_pretrained_layer_and_trains_only_the_new_one():
    model, heads = build_model("efficientnet_lite0", 3, pretrained=True, head=HeadSpec("append"))
    assert heads == ["_fc.1"]
    container = model.get_submodule("_fc")
    assert isinstance(container, AppendedHead)
    assert _sizes(container[0]) == (1280, 1000) and _sizes(container[1]) == (1000, 3)
    file_state = torch.load(lite0.weights_file(), map_location="cpu", weights_only=True)
    assert torch.equal(model.state_dict()["_fc.0.weight"], file_state["_fc.weight"])  # kept as trained

    frozen = parameter_groups(model, heads, TrainConfig(strategy="feature-extract", head="append"))
    assert [id(p) for p in frozen[0]["params"]] == [id(container[1].weight), id(container[1].bias)]
    assert not container[0].weight.requires_grad and container[1].weight.requires_grad

    config = TrainConfig(strategy="fine-tune", head="append", lr=1e-3, backbone_lr_scale=0.1)
    head_group, backbone_group = parameter_groups(model, heads, config)
    assert {id(p) for p in head_group["params"]} == {id(container[1].weight), id(container[1].bias)}
    assert id(container[0].weight) in {id(p) for p in backbone_group["params"]}  # backbone's rate
    assert backbone_group["lr"] == pytest.approx(1e-4)


def test_mlp_replaces_the_layer_with_a_small_network():
    model, heads = build_model(
        "efficientnet_lite0", 4, pretrained=False, head=HeadSpec("mlp", hidden=32, dropout=0.3)
    )
    assert heads == ["_fc"]
    mlp = model.get_submodule("_fc")
    assert isinstance(mlp, MLPHead)
    first, relu, dropout, last = mlp
    assert _sizes(first) == (1280, 32) and isinstance(relu, nn.ReLU) and _sizes(last) == (32, 4)
    assert isinstance(dropout, nn.Dropout) and dropout.p == pytest.approx(0.3)
    frozen = parameter_groups(model, heads, TrainConfig(head="mlp"))
    assert len(frozen[0]["params"]) == 4  # both layers' weights and biases


@pytest.mark.parametrize("kind", HEADS)
def test_convolutional_head_variants(kind):
    """squeezenet's head is a 1x1 convolution followed by pooling: the variants stay convolutional."""
    model, heads = build_model("squeezenet1_1", 3, pretrained=False, head=HeadSpec(kind, hidden=8))
    expected = {"replace": ["classifier.1"], "append": ["classifier.1.1"], "mlp": ["classifier.1"]}
    assert heads == expected[kind]
    assert head_spec_of(model) == HeadSpec(kind, hidden=8)
    layers = [m for m in model.get_submodule("classifier.1").modules() if isinstance(m, nn.Conv2d)]
    assert all(m.kernel_size == (1, 1) for m in layers)
    assert _sizes(layers[-1])[1] == 3
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 96, 96)).shape == (2, 3)
    # Grad-CAM explains the backbone's last map, not a map inside the classifier.
    assert find_target_layer(model, 96).name == "classifier.0"
    assert head_container(model, f"classifier.1{'.1' if kind == 'append' else ''}") == "classifier.1"


@pytest.mark.parametrize("kind", ["append", "mlp"])
def test_auxiliary_heads_get_the_same_variant(kind):
    model, heads = build_model("inception_v3", 3, pretrained=False, head=HeadSpec(kind, hidden=8))
    suffix = ".1" if kind == "append" else ""
    assert heads == [f"AuxLogits.fc{suffix}", f"fc{suffix}"]
    model.train()
    main, aux = model(torch.randn(2, 3, 299, 299))
    assert main.shape == aux.shape == (2, 3)


@pytest.mark.parametrize("kind", ["append", "mlp"])
def test_pretrained_and_scratch_builds_are_the_same_network(kind):
    """What a bundle relies on: it is rebuilt with pretrained=False and loaded strictly."""
    spec = HeadSpec(kind, hidden=16)
    pretrained, heads = build_model("efficientnet_lite0", 2, pretrained=True, head=spec)
    scratch, scratch_heads = build_model("efficientnet_lite0", 2, pretrained=False, head=spec)
    assert heads == scratch_heads
    scratch.load_state_dict(pretrained.state_dict())
    assert head_spec_of(pretrained) == head_spec_of(scratch) == spec  # what a bundle records


def test_head_settings_are_validated_and_round_trip():
    for kind in HEADS:
        spec = HeadSpec(kind, hidden=64, dropout=0.5)
        assert HeadSpec.from_dict(spec.to_dict()).to_dict() == spec.to_dict()
    assert HeadSpec.from_dict(None) == HeadSpec.from_dict({}) == HeadSpec()
    assert HeadSpec().kind == "replace" and HeadSpec("replace").to_dict() == {"kind": "replace"}
    assert HeadSpec.from_config(TrainConfig(head="mlp", head_hidden=64, head_dropout=0.1)) == HeadSpec(
        "mlp", 64, 0.1
    )
    assert HeadSpec("append").head_input == "logits" and HeadSpec("mlp").head_input == "features"
    with pytest.raises(ModelError):
        HeadSpec("deep")
    with pytest.raises(ModelError):
        HeadSpec("mlp", hidden=0)
    defaults = TrainConfig()
    assert (defaults.head, defaults.head_hidden, defaults.head_dropout) == ("replace", 256, 0.2)
    for bad in ({"head": "deep"}, {"head_hidden": 0}, {"head_dropout": 1.0}, {"head_dropout": -0.1}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


def test_feature_store_key_says_what_the_head_receives(tmp_path):
    info = get_model_info("efficientnet_lite0")
    plain = FeatureStore(info, 0, tmp_path)
    assert FeatureStore(info, 0, tmp_path, head_input="features").path == plain.path  # old caches stay valid
    assert FeatureStore(info, 0, tmp_path, head_input="logits").path != plain.path


# -- bundles ----------------------------------------------------------------------------------------


def _bundle(kind: str, classes: list[str]) -> Bundle:
    torch.manual_seed(0)
    spec = HeadSpec(kind, hidden=16)
    model, _ = build_model("mobilenet_v3_small", len(classes), pretrained=False, head=spec)
    pre = get_model_info("mobilenet_v3_small").preprocessing
    return Bundle("mobilenet_v3_small", classes, model.state_dict(), pre, head=spec)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_bundles_record_the_head_and_old_bundles_load_as_replace(tmp_path, data):
    classes = ["green", "red"]
    for kind in HEADS:
        path = save_bundle(tmp_path / f"{kind}.pt", _bundle(kind, classes))
        raw = torch.load(path, weights_only=True)
        assert raw["head"]["kind"] == kind
        assert raw["version"] == (1 if kind == "replace" else 2)  # earlier versions refuse the others
        loaded = load_bundle(path)
        assert loaded.head == HeadSpec(kind, hidden=16)
        assert head_spec_of(loaded.build_model()) == loaded.head  # strict load of the same network
        if kind != "replace":  # TorchScript too (ONNX: the training tests below)
            exported = export_bundle(loaded, "torchscript", tmp_path / f"{kind}-torchscript.pt")
            parity = parity_check(loaded, exported.path, list_images(data / "val"), batch_size=4)
            assert parity.passed(), parity.to_json()

    # A bundle written before head variants: no "head" key, version 1.
    raw = torch.load(tmp_path / "replace.pt", weights_only=True)
    del raw["head"]
    torch.save(raw, tmp_path / "old.pt")
    old = load_bundle(tmp_path / "old.pt")
    assert old.head == HeadSpec()
    images = list_images(data / "val")
    predictions = Predictor(old, device="cpu").predict_paths(images)
    assert all(p.error is None and p.label in classes for p in predictions)

    # The wrong head for the weights, and a head this version does not know, fail clearly.
    wrong = _bundle("mlp", classes)
    wrong.head = HeadSpec("append")
    with pytest.raises(BundleError, match="append head"):
        wrong.build_model()
    raw["head"] = {"kind": "transformer"}
    torch.save(raw, tmp_path / "future.pt")
    with pytest.raises(BundleError, match="head"):
        load_bundle(tmp_path / "future.pt")


# -- training, then everything that uses the bundle -------------------------------------------------

CASES = [
    pytest.param("efficientnet_lite0", "feature-extract", id="lite0-feature-extract"),
    pytest.param("mobilenet_v3_small", "scratch", id="mobilenet-scratch"),
    pytest.param("efficientnet_lite0", "fine-tune", id="lite0-fine-tune"),
]


def _use_the_bundle(bundle_path: Path, data: Path, tmp_path: Path, best_val_acc: float) -> None:
    """Predict, evaluate, export to ONNX with parity, and Grad-CAM, all from the bundle."""
    predictor = Predictor.from_bundle(bundle_path, device="cpu")
    images = list_images(data / "val")
    predictions = predictor.predict_paths(images)
    assert all(p.error is None and p.label in predictor.class_names for p in predictions)

    report = evaluate(predictor, data, split="val", device="cpu")
    assert report.n_images == len(images) and report.source["head"] == predictor.bundle.head.kind
    assert report.accuracy == pytest.approx(best_val_acc)  # the very weights of the best epoch

    exported = export_bundle(predictor.bundle, "onnx", tmp_path / "model.onnx")
    assert exported.metadata["head"] == predictor.bundle.head.to_dict()
    parity = parity_check(predictor, exported.path, parity_images(data), batch_size=4)
    assert parity.n_images == len(images) and parity.passed(), parity.to_json()

    photo = images[0]
    heat = grad_cam_for_image(predictor, photo)
    assert heat.shape == (48, 48) and heat.dtype == np.float32
    assert float(heat.min()) >= 0.0 and float(heat.max()) <= 1.0


@pytest.mark.parametrize("kind", ["append", "mlp"])
@pytest.mark.parametrize(("model", "strategy"), CASES)
def test_head_variant_trains_predicts_evaluates_exports_and_explains(model, strategy, kind, data, tmp_path):
    config = TrainConfig.for_strategy(
        strategy, model=model, head=kind, head_hidden=32, epochs=1, augment=False, **FAST
    )
    events: list[ev.Event] = []
    result = train(config, data, run_dir=tmp_path / "run", on_event=events.append)
    assert result.bundle_path is not None and result.epochs_completed == 1
    bundle = load_bundle(result.bundle_path)
    assert bundle.head == HeadSpec.from_config(config) and bundle.config["head"] == kind

    texts = [e.text for e in events if isinstance(e, ev.Message)]
    cached = any("each epoch now trains only the head" in t for t in texts)
    assert cached == (strategy == "feature-extract")  # the fast path, for every head variant
    if strategy == "feature-extract":
        # Only the trainable head learned; the backbone, and append's kept 1000-way layer, did not.
        pretrained, heads = build_model(model, 2, pretrained=True, head=HeadSpec.from_config(config))
        for name, tensor in pretrained.state_dict().items():
            if not any(name.startswith(h + ".") for h in heads):
                assert torch.equal(bundle.state_dict[name], tensor), name
        if kind == "append":  # the cached features are the kept layer's 1000 logits
            store = FeatureStore(
                get_model_info(model),
                config.seed,
                head_input="logits",
                preprocessing=bundle.preprocessing,
                precision=bundle.precision,  # the run's features are kept under its precision
            )
            assert store.entries and {t.shape for t in store.entries.values()} == {torch.Size([1000])}

    _use_the_bundle(result.bundle_path, data, tmp_path, result.best_val_acc)


@pytest.mark.parametrize("kind", ["append", "mlp"])
def test_head_variant_runs_resume_exactly(kind, data, tmp_path):
    """Head-only checkpoints of each variant load back strictly, and a run stopped after its first
    epoch and resumed ends with the very weights of an uninterrupted one (the MLP's dropout too)."""
    config = TrainConfig.for_strategy("feature-extract", head=kind, head_hidden=32, epochs=2, **FAST)
    train(config, data, run_dir=tmp_path / "straight")
    stop = {"now": False}

    def stop_after_epoch_1(event: ev.Event) -> None:
        if isinstance(event, ev.EpochEnd) and event.epoch == 1:
            stop["now"] = True

    first = train(
        config,
        data,
        run_dir=tmp_path / "resumed",
        on_event=stop_after_epoch_1,
        should_stop=lambda: stop["now"],
    )
    assert first.cancelled and first.epochs_completed == 1
    resumed = resume(tmp_path / "resumed")
    assert resumed.epochs_completed == 2 and load_bundle(resumed.bundle_path).head == HeadSpec.from_config(
        config
    )
    a = RunDir(tmp_path / "straight").load_checkpoint()["model"]
    b = RunDir(tmp_path / "resumed").load_checkpoint()["model"]
    prefix = "_fc.1." if kind == "append" else "_fc."
    assert a.keys() == b.keys() and all(k.startswith(prefix) for k in a)  # the trainable head only
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="hymenoptera dataset not present")
@pytest.mark.parametrize("kind", ["append", "mlp"])
def test_head_variants_on_hymenoptera(kind, tmp_path, capsys, monkeypatch, feature_cache):
    """The acceptance: ``--head append`` and ``--head mlp`` train, predict, evaluate and export with
    ONNX parity on hymenoptera (efficientnet_lite0, feature extraction, 2 epochs)."""
    # mlp feeds on the backbone's features, like the other acceptance runs on hymenoptera, whose cached
    # features it shares (the session's cache); append feeds on the 1000-way logits, cached for it
    # alone, so it runs at 160 px rather than the automatic 288 (the same code path, a third the work).
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(feature_cache))
    size = 160 if kind == "append" else None
    config = TrainConfig.for_strategy("feature-extract", head=kind, epochs=2, device="cpu", input_size=size)
    result = train(config, HYMENOPTERA, run_dir=tmp_path / "run")
    assert result.bundle_path is not None and result.epochs_completed == 2
    predictor = Predictor.from_bundle(result.bundle_path, device="cpu")
    assert predictor.bundle.head.kind == kind

    val = list_images(HYMENOPTERA / "val")
    predictions = predictor.predict_paths(val)
    assert len(predictions) == 153 and all(p.error is None for p in predictions)
    report = evaluate(predictor, HYMENOPTERA, split="val", device="cpu")
    assert report.n_images == 153 and report.accuracy == pytest.approx(result.best_val_acc)
    assert report.accuracy >= 0.85

    exported = export_bundle(predictor.bundle, "onnx", tmp_path / "model.onnx")
    parity = parity_check(predictor, exported.path, parity_images(HYMENOPTERA))
    assert parity.n_images == 153 and parity.passed(), parity.to_json()
    with capsys.disabled():
        print(
            f"\nhymenoptera, {kind} head: val accuracy {report.accuracy:.3f}, "
            f"ONNX max prob diff {parity.max_prob_diff:.1e}, {result.seconds:.0f}s training"
        )
