"""timm models in the app's machinery: ViT features (class token + mean of patch tokens), input sizes
in multiples of the patch size, layer-wise learning-rate decay, head variants, and the dataset doctor."""

from __future__ import annotations

import pytest
import torch
from helpers_timm import put_random_weights, random_hub_state
from torch import nn

from engine.core.config import TrainConfig
from engine.core.rundir import folder_safe, new_run_dir
from engine.models import timm_models
from engine.models.build import build_model
from engine.models.heads import HeadSpec
from engine.training.recipe import run_preprocessing
from engine.training.strategies import parameter_groups

VIT = "timm:vit_small_patch14_dinov2.lvd142m"
CONV = "timm:mobilenetv4_conv_small.e2400_r224_in1k"


def test_vit_feature_is_class_token_beside_mean_of_patch_tokens():
    torch.manual_seed(0)
    model, heads = build_model(VIT, 3, pretrained=False)
    assert heads == ["head"] and isinstance(model, timm_models.ClassTokenAndMeanPool)
    seen: list[torch.Tensor] = []
    model.head.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        model.eval()(x)
        tokens = model.backbone.forward_features(x)
    assert tokens.shape[1] == 1 + 4 * 4  # a class token and a 4 x 4 grid of 14 px patches
    expected = torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=1)
    assert torch.allclose(seen[0], expected, atol=1e-6)


def test_vit_input_size_is_rounded_to_its_patch_size():
    for asked, expected in ((64, 70), (200, 196), (224, 224), (48, 42)):
        config = TrainConfig.for_strategy("feature-extract", model=VIT, input_size=asked)
        assert run_preprocessing(config).crop_size == expected
    conv = TrainConfig.for_strategy("feature-extract", model=CONV, input_size=70)
    assert run_preprocessing(conv).crop_size == 70


def test_fine_tuning_a_vit_decays_the_rate_block_by_block():
    model, heads = build_model(VIT, 2, pretrained=False)
    config = TrainConfig.for_strategy("fine-tune", model=VIT)
    groups = parameter_groups(model, heads, config)
    assert groups[0]["name"] == "head" and groups[0]["lr"] == config.lr
    depths = [g for g in groups if g["name"].startswith("backbone.")]
    blocks = len(model.backbone.blocks)
    assert len(depths) == blocks + 2  # the embeddings, each block, the final norm
    top = config.lr * config.backbone_lr_scale
    for group in depths:
        depth = int(group["name"].split(".")[1])
        assert group["lr"] == pytest.approx(top * timm_models.VIT_LAYER_DECAY ** (blocks + 1 - depth))
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # A decay the user sets applies per block instead of the catalog's.
    own = parameter_groups(
        model, heads, TrainConfig.for_strategy("fine-tune", model=VIT, lr_decay_per_stage=0.5)
    )
    assert own[1]["lr"] == pytest.approx(top * 0.5 ** (blocks + 1))
    # Other models keep the stage-wise split.
    conv, conv_heads = build_model(CONV, 2, pretrained=False)
    names = [g["name"] for g in parameter_groups(conv, conv_heads, config)]
    assert names == ["head", *(f"backbone.{i}" for i in range(5))]


@pytest.mark.parametrize("kind", ["replace", "append", "mlp"])
@pytest.mark.parametrize("name", [VIT, CONV])
def test_every_head_variant_fits_timm_models(name, kind):
    model, heads = build_model(name, 3, pretrained=False, head=HeadSpec(kind))
    size = 56
    out = model.eval()(torch.randn(2, 3, size, size))
    assert out.shape == (2, 3) and heads
    again, _ = build_model(name, 3, pretrained=False, head=HeadSpec(kind))
    assert again.state_dict().keys() == model.state_dict().keys()  # a bundle rebuilds the same network


def test_pretrained_weights_load_from_the_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    put_random_weights(VIT, seed=7)
    model, _ = build_model(VIT, 2, pretrained=True)
    saved = random_hub_state(VIT, seed=7)
    assert torch.equal(
        model.backbone.state_dict()["blocks.0.attn.qkv.weight"], saved["blocks.0.attn.qkv.weight"]
    )
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 2


def test_run_folders_are_named_without_a_colon(tmp_path):
    assert folder_safe(VIT) == "timm-vit_small_patch14_dinov2.lvd142m"
    assert ":" not in new_run_dir(VIT, "fine-tune", tmp_path).name


def test_the_dataset_doctor_audits_with_a_timm_model(synthetic_dataset, tmp_path, monkeypatch):
    from engine.audit.run import run_audit

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    put_random_weights(CONV)
    report = run_audit(synthetic_dataset, model=CONV, cache_dir=tmp_path / "cache", folds=2)
    assert report.model == CONV and report.images
