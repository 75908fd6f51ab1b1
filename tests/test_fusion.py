"""The fused inference graph (engine.models.fusion): batch norms folded into the convolution before
them, stride-1 "same" padding moved into the convolution; the same answers, recorded in the bundle of
a run whose validation scored fused features, and reproduced by inference."""

from __future__ import annotations

import pytest
import torch
import torchvision
from helpers_images import make_image_folder
from torch import nn

from engine.core.config import TrainConfig
from engine.models import lite0
from engine.models.bundle import load_bundle, save_bundle
from engine.models.fusion import fuse_for_inference, fused_copy, fuses
from engine.training.trainer import train


def _with_real_statistics(model: nn.Module) -> nn.Module:
    """Batch norms with statistics far from the identity, so that a wrong fold shows."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.uniform_(-0.2, 0.2, generator=generator)
    return model.eval()


def _batch_norms(model: nn.Module) -> int:
    return sum(type(m) is nn.BatchNorm2d for m in model.modules())


@pytest.mark.parametrize(
    "build",
    [
        lambda: lite0.build(pretrained=False),
        lambda: torchvision.models.resnet18(),
        lambda: torchvision.models.mobilenet_v3_small(),
    ],
    ids=["efficientnet_lite0", "resnet18", "mobilenet_v3_small"],
)
def test_a_fused_copy_answers_as_the_model_without_batch_norms(build):
    model = _with_real_statistics(build())
    twin = fused_copy(model)
    assert twin is not None
    assert _batch_norms(twin) == 0 and _batch_norms(model) > 0  # the original is left as it was
    assert not any(
        type(m).__name__ == "Conv2dDynamicSamePadding" and m.stride == [1, 1] for m in twin.modules()
    )
    images = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, got = model(images), twin(images)
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() < 1e-4 * max(1.0, scale)


def test_nothing_fuses_in_a_model_without_batch_norms():
    vit_like = nn.Sequential(
        nn.Conv2d(3, 8, 4, stride=4), nn.Flatten(), nn.LayerNorm(8 * 16), nn.Linear(128, 2)
    )
    assert not fuses(vit_like.eval())
    assert fused_copy(vit_like) is None


def test_a_norm_that_also_activates_is_not_folded():
    class BatchNormAct2d(nn.BatchNorm2d):  # as timm's: the norm, then an activation
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(super().forward(x))

    model = _with_real_statistics(nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct2d(4)))
    fuse_for_inference(model)
    assert isinstance(model[1], BatchNormAct2d)


def test_fusing_needs_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fuse_for_inference(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train())


def test_a_feature_extract_run_records_fused_and_inference_fuses_alike(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    from engine.inference.evaluate import evaluate

    data = make_image_folder(tmp_path / "data", {"cats": 8, "dogs": 8})
    config = TrainConfig.for_strategy("feature-extract", epochs=2, device="cpu", input_size=64)
    result = train(config, data, run_dir=tmp_path / "run")
    bundle = load_bundle(result.bundle_path)
    assert bundle.fused
    assert _batch_norms(bundle.build_model()) == 0
    report = evaluate(bundle, data, device="cpu")
    assert report.accuracy == pytest.approx(bundle.metrics["best_val_acc"], abs=1e-9)

    # A run that trains whole images scores the model as trained: nothing to fuse at inference.
    images = train(config.replace(cache_features=False), data, run_dir=tmp_path / "images")
    assert not load_bundle(images.bundle_path).fused
    assert _batch_norms(load_bundle(images.bundle_path).build_model()) > 0


def test_a_bundle_from_before_fusion_is_not_fused(tmp_path):
    data = make_image_folder(tmp_path / "data", {"cats": 4, "dogs": 4})
    config = TrainConfig.for_strategy("feature-extract", epochs=1, device="cpu", input_size=64)
    bundle = load_bundle(train(config, data, run_dir=tmp_path / "run").bundle_path)
    raw = bundle.to_dict()
    del raw["fused"]
    torch.save(raw, tmp_path / "old.pt")
    old = load_bundle(tmp_path / "old.pt")
    assert not old.fused and _batch_norms(old.build_model()) > 0
    save_bundle(tmp_path / "again.pt", old)
    assert not load_bundle(tmp_path / "again.pt").fused
