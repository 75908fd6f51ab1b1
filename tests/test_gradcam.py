"""Grad-CAM: generic target layers, heatmap size and range, mapping back onto the photo, localisation.

The localisation test trains efficientnet_lite0 (feature extraction, built-in weights) on images whose
class is the colour of a square at a random position, then checks that the heatmap's peak lies inside
the square on held-out images (a few seconds of training on a 2-core CPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_images import make_image
from helpers_timm import put_random_weights
from PIL import Image

from engine.inference.gradcam import (
    GradCamUnavailable,
    find_target_layer,
    grad_cam,
    grad_cam_for_image,
    jet,
    overlay,
    to_original_size,
)
from engine.inference.predict import Predictor
from engine.models.build import build_model
from engine.models.preprocessing import Preprocessing

SIZE, SQUARE, MARGIN = 96, 36, 6  # the eval centre crop drops 6 px on each side of a 96 px image
COLOURS = {"blue": (0, 0, 255), "red": (255, 0, 0)}
SEED = 3  # image seed; seeds 0-4 gave hit rates of 75-90 % (chance: 20-38 %)


@pytest.fixture(scope="module")
def predictor(trained_bundle) -> Predictor:
    return Predictor.from_bundle(trained_bundle, device="cpu")


def test_heatmap_has_the_photos_size_and_values_in_0_1(predictor):
    photo = make_image((220, 40, 40), size=(120, 80), seed=1)
    heat = grad_cam_for_image(predictor, photo)
    assert heat.shape == (80, 120) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.5
    shown = overlay(photo, heat)
    assert shown.size == photo.size and shown.mode == "RGB"
    other = grad_cam_for_image(predictor, photo, class_index=1)
    assert other.shape == (80, 120) and other.min() >= 0.0 and other.max() <= 1.0


def test_grad_cam_leaves_the_model_as_it_was(predictor):
    model = predictor.model
    image = predictor.transform(make_image((40, 180, 60), seed=2))
    heat = grad_cam(model, image)
    assert heat.shape == tuple(image.shape[-2:])
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError):
        grad_cam(model, image, class_index=5)


@pytest.mark.parametrize(
    "name, target",
    [
        ("resnet18", "layer4"),
        ("mobilenet_v3_small", "features"),
        ("squeezenet1_1", "classifier.0"),  # the last map before the 1x1-conv head, not the class maps
        ("efficientnet_lite0", "_swish"),  # a module used twice: its second call is the head's activation
        ("swin_v2_t", "permute"),  # a position-bias MLP with as many outputs as classes is not the head
    ],
)
def test_target_layer_is_the_last_feature_map_before_the_head(name, target):
    torch.manual_seed(0)
    model, _ = build_model(name, 3, pretrained=False)
    found = find_target_layer(model.eval(), 64, name)
    assert found.name == target
    if name == "efficientnet_lite0":
        assert found.call == 1
    heat = grad_cam(model, torch.randn(3, 64, 64), target=found)
    assert heat.shape == (64, 64) and heat.min() >= 0.0 and heat.max() <= 1.0


@pytest.mark.parametrize(
    "name, size, target",
    [
        # A class-token head reads nothing from the last block's patch tokens: the input of that
        # block's attention is the last place they reach the decision.
        ("vit_b_32", 224, "encoder.layers.encoder_layer_11.ln_1"),
        # Class token beside the mean of the patch tokens: the final norm's patch tokens count.
        ("timm:vit_small_patch14_dinov2.lvd142m", 70, "backbone.norm"),
    ],
)
def test_vision_transformers_explain_their_patch_tokens_on_the_patch_grid(name, size, target):
    torch.manual_seed(0)
    model, _ = build_model(name, 2, pretrained=False)
    found = find_target_layer(model.eval(), size, name)
    patch = 32 if name == "vit_b_32" else 14
    assert (found.name, found.height, found.width, found.prefix) == (target, size // patch, size // patch, 1)
    heat = grad_cam(model, torch.randn(3, size, size), target=found)
    assert heat.shape == (size, size) and heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)


def test_a_model_without_maps_or_patch_grid_has_no_grad_cam():
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(GradCamUnavailable, match="not available for mlp: it has no convolutional"):
        find_target_layer(mlp, 8, "mlp")


def test_heatmap_is_mapped_back_through_resize_and_centre_crop():
    pre = Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    crop_map = np.zeros((224, 224), dtype=np.float32)
    crop_map[100:111, 20:31] = 1.0  # centre (105, 25) in crop pixels
    heat = to_original_size(crop_map, (200, 100), pre)  # a 200x100 photo is resized to 512x256
    assert heat.shape == (100, 200)
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    scale = 100 / 256  # original pixels per resized pixel
    assert abs(y - (105 + 16) * scale) <= 2 and abs(x - (25 + 144) * scale) <= 2
    assert heat[:, : int(144 * scale) - 1].max() == 0.0  # left of the centre crop: not seen by the model
    small = to_original_size(
        np.ones((64, 64), np.float32), (30, 40), Preprocessing(50, 64, pre.mean, pre.std)
    )
    assert small.shape == (40, 30) and small.max() == pytest.approx(1.0)


def test_heatmap_pixel_lands_where_the_eval_transform_took_it():
    """Where resize - crop is odd (288 px input: resize 329) the two centre crops round differently
    from one; the map must still go back to the exact photo pixel the model saw."""
    from engine.models.preprocessing import eval_transform

    pre = Preprocessing(329, 288, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    photo = np.zeros((329, 402, 3), np.uint8)  # the shorter side is the resize size: no resampling
    photo[150, 200] = 255
    seen = eval_transform(pre)(Image.fromarray(photo))[0].numpy()
    cy, cx = np.unravel_index(np.argmax(seen), seen.shape)
    crop_map = np.zeros((288, 288), np.float32)
    crop_map[cy, cx] = 1.0
    heat = to_original_size(crop_map, (402, 329), pre)
    assert np.unravel_index(np.argmax(heat), heat.shape) == (150, 200)


def test_jet_colours_and_overlay_blend():
    colours = jet(np.array([0.0, 0.5, 1.0]))
    assert colours[0].argmax() == 2 and colours[1].argmax() == 1 and colours[2].argmax() == 0
    grey = Image.new("RGB", (10, 6), (100, 100, 100))
    blended = np.asarray(overlay(grey, np.ones((3, 5), np.float32), alpha=0.5))
    assert blended.shape == (6, 10, 3)
    assert tuple(blended[0, 0]) == tuple(np.round(0.5 * 100 + 0.5 * jet(np.ones(1))[0]).astype(int))


# -- localisation on a synthetic dataset --------------------------------------------------------------


def _square_dataset(root: Path, per_split: dict[str, int], seed: int) -> dict[Path, tuple[int, int]]:
    """Noisy grey images with a red or blue tinted square at a random position; returns each square's corner."""
    rng = np.random.default_rng(seed)
    corners = {}
    for split, n in per_split.items():
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.normal(128, 30, (SIZE, SIZE, 3))
                x, y = (int(v) for v in rng.integers(MARGIN, SIZE - MARGIN - SQUARE, size=2))
                patch = pixels[y : y + SQUARE, x : x + SQUARE]
                pixels[y : y + SQUARE, x : x + SQUARE] = 0.3 * patch + 0.7 * np.array(colour)
                path = folder / f"{i:03d}.png"
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
                corners[path] = (x, y)
    return corners


def _inside(point: tuple[int, int], corner: tuple[int, int]) -> bool:
    (py, px), (x, y) = point, corner
    return x <= px < x + SQUARE and y <= py < y + SQUARE


@pytest.mark.parametrize(
    "model, input_size",
    [
        ("efficientnet_lite0", 0),
        # Random "pretrained" weights (the Hub is out of reach here); 84 px = 6 x 6 patches of 14 px.
        ("timm:vit_small_patch14_dinov2.lvd142m", 84),
    ],
)
def test_heatmap_peak_falls_inside_the_coloured_square(tmp_path, monkeypatch, model, input_size):
    from engine.core.config import TrainConfig
    from engine.training.trainer import train

    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    if model.startswith("timm:"):
        put_random_weights(model)
    corners = _square_dataset(tmp_path / "squares", {"train": 24, "val": 20}, seed=SEED)
    config = TrainConfig.for_strategy(
        "feature-extract",
        model=model,
        input_size=input_size,
        epochs=5,
        lr=1e-2,
        batch_size=8,
        device="cpu",
        augment=False,
        workers=2,
    )
    result = train(config, tmp_path / "squares", run_dir=tmp_path / "run")
    assert result.best_val_acc == 1.0
    predictor = Predictor.from_bundle(result.bundle_path, device="cpu")

    held_out = sorted(p for p in corners if p.parts[-3] == "val")
    peaks = []
    for path in held_out:
        heat = grad_cam_for_image(predictor, path)
        assert heat.shape == (SIZE, SIZE)
        peaks.append(np.unravel_index(int(np.argmax(heat)), heat.shape))
    hits = np.mean([_inside(peak, corners[p]) for peak, p in zip(peaks, held_out)])
    # Control: the same peaks against another image's square (positions are independent).
    shuffled = held_out[1:] + held_out[:1]
    chance = np.mean([_inside(peak, corners[p]) for peak, p in zip(peaks, shuffled)])
    print(
        f"Grad-CAM peak inside the square: {hits:.1%} of {len(held_out)} (another image's square: {chance:.1%})"
    )
    assert hits >= 0.7
    assert hits >= chance + 0.3  # squares are large and overlap, so chance is well above zero
