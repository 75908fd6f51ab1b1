"""The model catalog: listing invariants, weights status, building every model, the built-in lite0."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms as T

from engine.core.config import TrainConfig
from engine.core.device import cpu_has_native_bf16
from engine.core.errors import ModelError
from engine.models import lite0, timm_models
from engine.models import registry as catalog
from engine.models import weights as weights_files
from engine.models.build import build_model
from engine.models.heads import find_head_modules
from engine.models.preprocessing import Preprocessing
from engine.models.registry import (
    ModelInfo,
    get_model_info,
    list_models,
)
from engine.models.weights import weights_status
from engine.training.strategies import is_head_parameter, parameter_groups

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared/data/hymenoptera"
IMAGENET_BEE = 309  # ImageNet class "bee"

# The two ~640M-parameter models (regnet_y_128gf, vit_h_14) have only non-commercial SWAG weights
# and are not in the catalog. The others take ~80 s together.
SLOW_MODELS: set[str] = set()
NON_COMMERCIAL_TORCHVISION = {"regnet_y_128gf", "vit_h_14"}
ALL_NAMES = [info.name for info in list_models()]


def _param(name: str):
    return pytest.param(name, marks=pytest.mark.slow) if name in SLOW_MODELS else name


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny batches gain little from a second thread, and OpenMP threads spin-waiting for a busy
    core made the whole-catalog test ~2x slower on a loaded 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --- listing -------------------------------------------------------------------------------------


def test_catalog_lists_torchvision_lite0_and_the_curated_timm_models():
    torchvision_names = set(torchvision.models.list_models(module=torchvision.models))
    expected = (
        (torchvision_names - NON_COMMERCIAL_TORCHVISION)
        | {"efficientnet_lite0"}
        | {e.name for e in timm_models.CURATED}
    )
    assert set(ALL_NAMES) == expected
    assert sorted(ALL_NAMES) == ALL_NAMES
    assert {get_model_info(n).source for n in ALL_NAMES} == {"built-in", "torchvision", "timm"}


def test_no_catalog_weights_forbid_commercial_use():
    """torchvision's SWAG weights and ConvNeXt-V2's (CC-BY-NC-4.0) stay out; every entry names its licence."""
    for info in list_models():
        assert info.licence and not timm_models.is_non_commercial(info.licence), info.name
    for name in NON_COMMERCIAL_TORCHVISION:
        with pytest.raises(ModelError):
            get_model_info(name)
    assert timm_models.is_non_commercial("cc-by-nc-4.0")


def test_curated_timm_facts_agree_with_timms_own_metadata():
    """The catalog lists timm models without importing timm; these facts must be timm's."""
    timm = pytest.importorskip("timm")
    for entry in timm_models.CURATED:
        cfg = timm.models.get_pretrained_cfg(entry.timm_name)
        assert cfg is not None, entry.name
        assert cfg.license == entry.licence, entry.name
        assert not timm_models.is_non_commercial(cfg.license), entry.name
        assert cfg.hf_hub_id.rstrip("/") in (entry.hub_repo, "timm"), entry.name
        assert tuple(cfg.mean) == timm_models.IMAGENET_MEAN and tuple(cfg.std) == timm_models.IMAGENET_STD
        model = timm_models.build(entry, None)
        assert sum(p.numel() for p in model.parameters()) == entry.num_params, entry.name
        module = getattr(model, "backbone", model)
        assert sum(p.numel() for p in module.parameters()) == entry.weights_params, entry.name
        info = get_model_info(entry.name)
        assert 50 < (info.published_top1 or 0) < 100 and info.published_source, entry.name
        assert info.input_size % entry.size_multiple == 0 and info.download_bytes


def test_every_entry_is_complete():
    for info in list_models():
        pre = info.preprocessing
        assert isinstance(info, ModelInfo) and info.family, info.name
        assert info.num_params > 0, info.name
        assert 0 < pre.crop_size <= pre.resize_size, info.name
        assert info.input_size == pre.crop_size
        assert len(pre.mean) == 3 and len(pre.std) == 3 and min(pre.std) > 0, info.name
        assert pre.interpolation in ("bilinear", "bicubic", "nearest"), info.name
        assert 1 <= info.min_input_size <= pre.crop_size, info.name
        assert info.offline == (info.name == "efficientnet_lite0")
        if info.source == "torchvision":
            assert info.weights_name and info.weights_url and info.weights_url.endswith(".pth")
        elif info.source == "timm":
            assert info.hub_repo and info.weights_url is None and info.name.startswith("timm:")
        assert info.published_top1 is None or 0 < info.published_top1 < 100, info.name


def test_families_and_preprocessing_come_from_torchvision():
    assert get_model_info("resnet18").family == "ResNet"
    assert get_model_info("vit_b_16").family == "Vision Transformer"
    assert get_model_info("efficientnet_v2_s").family == "EfficientNet"
    assert get_model_info("swin_t").family == "Swin Transformer"
    info = get_model_info("inception_v3")
    assert (info.preprocessing.resize_size, info.input_size, info.min_input_size) == (342, 299, 75)
    assert get_model_info("efficientnet_b0").preprocessing.interpolation == "bicubic"
    assert get_model_info("resnet18").num_params == 11_689_512
    assert get_model_info("resnet18").weights_name == "ResNet18_Weights.IMAGENET1K_V1"


def test_listing_is_cached_and_fast():
    list_models()
    start = time.perf_counter()
    for _ in range(100):
        list_models()
    assert time.perf_counter() - start < 0.5
    assert list_models() is not list_models()  # callers may not mutate the cache


def test_unknown_model_suggests_a_close_name():
    with pytest.raises(ModelError, match="resnet18") as err:
        get_model_info("resnet19")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="Unknown model"):
        build_model("no_such_net", 3, pretrained=False)


def test_preprocessing_round_trips_through_a_dict():
    pre = get_model_info("efficientnet_lite0").preprocessing
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    with pytest.raises(ValueError):
        Preprocessing.from_dict({**pre.to_dict(), "interpolation": "lanczos9"})
    with pytest.raises(KeyError):
        Preprocessing.from_dict({"mean": [0, 0, 0], "std": [1, 1, 1]})


# --- weights status ------------------------------------------------------------------------------


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "hub" / "checkpoints"


def test_weights_status_offline_download_and_cached(torch_home):
    assert weights_status("efficientnet_lite0") == "offline"
    assert weights_status("resnet18") == "download"
    url = get_model_info("resnet18").weights_url
    torch_home.mkdir(parents=True)
    (torch_home / url.rsplit("/", 1)[-1]).write_bytes(b"fake")
    assert weights_status("resnet18") == "cached"
    assert weights_status("resnet34") == "download"


def test_failed_download_is_a_one_line_model_error(torch_home, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(urllib.request, "urlopen", offline)  # what engine.models.weights downloads with
    with pytest.raises(ModelError) as err:
        build_model("resnet18", 3, pretrained=True)
    message = str(err.value)
    assert "\n" not in message
    assert get_model_info("resnet18").weights_url in message
    assert str(torch_home) in message


def test_corrupt_cached_weights_are_a_model_error(torch_home):
    torch_home.mkdir(parents=True)
    url = get_model_info("resnet18").weights_url
    (torch_home / url.rsplit("/", 1)[-1]).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="resnet18"):
        build_model("resnet18", 3, pretrained=True)


# What each torchvision builder constructs before it loads the ImageNet weights (its source).
_BUILT_FOR_WEIGHTS = {
    "resnet18": {},
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
}


@pytest.mark.parametrize("name", list(_BUILT_FOR_WEIGHTS))
def test_pretrained_and_scratch_models_are_the_same_network(name, torch_home, monkeypatch):
    """The real pretrained path, with a fake download: weights load, heads are replaced, and the
    network matches the from-scratch one (bundles are rebuilt with pretrained=False)."""
    reference = torchvision.models.get_model(name, weights=None, **_BUILT_FOR_WEIGHTS[name])
    downloads = []

    def fake_download(model_name, **kwargs):  # engine.models.weights.download_weights, minus the network
        url = get_model_info(model_name).weights_url
        downloads.append(url)
        torch_home.mkdir(parents=True, exist_ok=True)
        torch.save(reference.state_dict(), torch_home / url.rsplit("/", 1)[-1])

    monkeypatch.setattr(weights_files, "download_weights", fake_download)
    pretrained, heads = build_model(name, 3, pretrained=True)
    assert downloads == [get_model_info(name).weights_url]
    assert weights_status(name) == "cached"
    scratch, scratch_heads = build_model(name, 3, pretrained=False)
    assert heads == scratch_heads
    assert pretrained.state_dict().keys() == scratch.state_dict().keys()
    assert getattr(pretrained, "transform_input", None) == getattr(scratch, "transform_input", None)
    scratch.load_state_dict(pretrained.state_dict())  # what a bundle does
    loaded = {
        k: v for k, v in pretrained.state_dict().items() if not any(k.startswith(h + ".") for h in heads)
    }
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in loaded.items())


#: Models above this many parameters are run under bfloat16 where the CPU computes it natively.
GIANT_PARAMS = 100_000_000


# --- building and heads --------------------------------------------------------------------------


def _build_without_random_init(name: str) -> tuple[nn.Module, list[str]]:
    """``build_model(name, 3)`` as the app calls it, constructed on the meta device and then given
    memory with every value a small constant: the same network and head, without torchvision's random
    initialisation (most of the time it takes to build the large models; a scratch run still gets
    it, see test_pretrained_and_scratch_models_are_the_same_network). Models whose constructor reads
    a value back (RegNets) are built as they are."""
    try:
        with torch.device("meta"):
            model, heads = build_model(name, 3, pretrained=False)
    except NotImplementedError:
        return build_model(name, 3, pretrained=False)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.fill_(0.01 if tensor.is_floating_point() else 1)
    return model, heads


@pytest.mark.parametrize("name", [_param(n) for n in ALL_NAMES])
def test_every_model_builds_with_a_new_head_and_runs(name):
    info = get_model_info(name)
    model, heads = _build_without_random_init(name)
    assert heads
    for head in heads:
        layer = model.get_submodule(head)
        assert isinstance(layer, (nn.Linear, nn.Conv2d))
        assert (layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels) == 3
    assert find_head_modules(model, catalog.PRETRAINED_NUM_CLASSES) == []
    size = max(info.min_input_size, 64)
    size -= size % info.size_multiple  # a ViT with 14 px patches: 56
    model.eval()
    # The giants (ViT-H/14 at 518 px: over 20 s in float32 on two cores) run under bfloat16 where the
    # CPU has it natively: the same network, the same shapes, a fraction of the time.
    giant = info.num_params > GIANT_PARAMS
    fast = giant and cpu_has_native_bf16()
    if giant:
        torch.set_num_threads(os.cpu_count() or 1)  # big enough to keep every core busy (one_thread resets)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 3)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet18", ["fc"]),
        ("squeezenet1_1", ["classifier.1"]),
        ("inception_v3", ["AuxLogits.fc", "fc"]),
        ("googlenet", ["fc"]),  # its aux heads are dropped, as torchvision does with weights
        ("vit_b_32", ["heads.head"]),
        ("convnext_tiny", ["classifier.2"]),
        ("efficientnet_lite0", ["_fc"]),
    ],
)
def test_head_names(name, expected):
    model, heads = build_model(name, 5, pretrained=False)
    assert heads == expected
    if name == "squeezenet1_1":
        conv = model.get_submodule("classifier.1")
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)


def test_strategies_split_head_and_backbone_parameters():
    model, heads = build_model("mobilenet_v3_small", 4, pretrained=False)
    head_names = {n for n, _ in model.named_parameters() if is_head_parameter(n, heads)}
    assert head_names == {"classifier.3.weight", "classifier.3.bias"}
    groups = parameter_groups(model, heads, TrainConfig(strategy="fine-tune"))
    head, backbone = (g["params"] for g in groups)
    assert {id(p) for p in head}.isdisjoint(id(p) for p in backbone)
    assert len(head) + len(backbone) == len(list(model.parameters()))
    frozen = parameter_groups(model, heads, TrainConfig(strategy="feature-extract"))
    assert [id(p) for p in frozen[0]["params"]] == [id(p) for p in head]
    assert all(not p.requires_grad for p in backbone)


def test_bad_class_counts_are_model_errors():
    with pytest.raises(ModelError):
        build_model("resnet18", 0, pretrained=False)
    with pytest.raises(ModelError):
        build_model("efficientnet_lite0", 3, pretrained=False, replace_head=False)


def test_scratch_vit_takes_its_catalog_input_size():
    model, _ = build_model("vit_b_32", 2, pretrained=False)
    assert model.image_size == get_model_info("vit_b_32").input_size


# --- the built-in lite0 --------------------------------------------------------------------------


def test_lite0_is_offline_with_real_weights(capsys):
    info = get_model_info("efficientnet_lite0")
    assert info.offline and weights_status(info.name) == "offline"
    assert lite0.weights_file().is_file()
    pretrained, heads = build_model("efficientnet_lite0", 2, pretrained=True)
    scratch, _ = build_model("efficientnet_lite0", 2, pretrained=False)
    assert sum(p.numel() for p in scratch.parameters()) - 2 * 1281 + 1000 * 1281 == lite0.NUM_PARAMS
    stem = "_conv_stem.weight"
    assert not torch.equal(pretrained.state_dict()[stem], scratch.state_dict()[stem])
    file_state = torch.load(lite0.weights_file(), map_location="cpu", weights_only=True)
    assert torch.equal(pretrained.state_dict()[stem], file_state[stem])
    pretrained.eval()
    with torch.no_grad():
        assert pretrained(torch.randn(1, 3, 224, 224)).shape == (1, 2)
    assert capsys.readouterr().out == ""  # the package's forward() must not print


def _eval_transform(pre: Preprocessing):
    return T.Compose(
        [
            T.Resize(pre.resize_size, interpolation=T.InterpolationMode(pre.interpolation)),
            T.CenterCrop(pre.crop_size),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )


@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="hymenoptera dataset not available")
def test_pretrained_lite0_recognises_bees():
    model, heads = build_model("efficientnet_lite0", 1000, pretrained=True, replace_head=False)
    assert heads == ["_fc"]
    transform = _eval_transform(get_model_info("efficientnet_lite0").preprocessing)
    photos = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:5]
    assert len(photos) == 5
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in photos])
    model.eval()
    with torch.no_grad():
        predicted = model(batch).argmax(dim=1)
    assert int((predicted == IMAGENET_BEE).sum()) >= 3
