"""Issue 25's acceptance for every curated timm family, with random weights (the Hub is out of reach):
on hymenoptera at a reduced input size, a 1-epoch feature-extract run and a 1-epoch fine-tune, then
predict, evaluate, Grad-CAM, and ONNX and TorchScript exports with their parity checks on the fine-tuned model.

The "pretrained" weights are random tensors written where a download would put them
(:mod:`helpers_timm`), so building goes through timm's real loading path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_timm import put_random_weights

from engine.core.config import TrainConfig
from engine.inference.evaluate import evaluate
from engine.inference.export import export_bundle, parity_check
from engine.inference.gradcam import find_target_layer, grad_cam_for_image
from engine.inference.predict import Predictor
from engine.models import timm_models
from engine.models.registry import get_model_info
from engine.training.trainer import train

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"
#: The smallest member of each curated family.
FAMILIES = {entry.family: entry.name for entry in sorted(timm_models.CURATED, key=lambda e: -e.num_params)}
SMALLEST = sorted(set(FAMILIES.values()))
INPUT_SIZE = 64  # a ViT with 14 px patches gets 70 (5 x 5 patches)

pytestmark = pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="needs ../shared/data/hymenoptera")


def test_every_family_is_covered():
    assert set(FAMILIES) == {e.family for e in timm_models.CURATED}
    assert len(SMALLEST) == 5


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("decoded")


@pytest.mark.parametrize("name", SMALLEST)
def test_family_trains_predicts_evaluates_explains_and_exports(name, tmp_path, monkeypatch, shared_cache):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(shared_cache))
    put_random_weights(name)
    info = get_model_info(name)
    expected_size = 70 if info.size_multiple == 14 else INPUT_SIZE
    runs = {}
    for strategy in ("feature-extract", "fine-tune"):
        config = TrainConfig.for_strategy(
            strategy, model=name, epochs=1, batch_size=16, input_size=INPUT_SIZE, device="cpu", workers=2
        )
        result = train(config, HYMENOPTERA, run_dir=tmp_path / strategy)
        assert result.bundle_path is not None and result.epochs_completed == 1, strategy
        runs[strategy] = result
    predictor = Predictor.from_bundle(runs["fine-tune"].bundle_path, device="cpu")
    assert predictor.bundle.architecture == name
    assert predictor.bundle.preprocessing.crop_size == expected_size
    photos = sorted((HYMENOPTERA / "val" / "bees").iterdir())[:4]
    predictions = predictor.predict_paths(photos)
    assert len(predictions) == 4
    assert all(p.label in ("ants", "bees") for p in predictions)

    report = evaluate(predictor, HYMENOPTERA, split="val", device="cpu")
    assert len(report.results) == 153 and 0.0 <= report.accuracy <= 1.0

    target = find_target_layer(predictor.model, expected_size, name)
    assert (target.prefix >= 0) == (info.size_multiple == 14)  # tokens on a patch grid for the ViT
    heat = grad_cam_for_image(predictor, photos[0])
    assert heat.ndim == 2 and heat.min() >= 0.0 and heat.max() <= 1.0 and np.isfinite(heat).all()

    for fmt, file in (("onnx", "model.onnx"), ("torchscript", "model.pt")):
        exported = export_bundle(runs["fine-tune"].bundle_path, fmt, tmp_path / "exports" / file)
        parity = parity_check(predictor, exported.path, photos)
        assert parity.passed(), (fmt, parity)
