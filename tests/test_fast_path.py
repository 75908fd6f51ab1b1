"""The fast data path: decoded-image cache budget, cached features and their invalidation, parity, OOM."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
import torch
from helpers_images import SMALL_INPUT, make_image_folder

from engine.core.config import TrainConfig
from engine.data.datasets import scan_dataset
from engine.models.build import build_model
from engine.models.preprocessing import eval_transform
from engine.models.registry import get_model_info
from engine.training.features import FeatureExtractor, FeatureStore, compute_features, head_is_last
from engine.training.image_cache import DecodedImageCache
from engine.training.pipeline import augment, center_crop, crop_boxes
from engine.training.trainer import train

PRE = get_model_info("efficientnet_lite0").preprocessing


def _counting_lite0_extractor() -> tuple[Callable[..., torch.Tensor], list[int]]:
    """efficientnet_lite0's pretrained feature extractor, wrapped to record each backbone batch's size."""
    model, heads = build_model("efficientnet_lite0", 2, pretrained=True)
    model.eval()
    extractor = FeatureExtractor(model, heads[0])
    seen: list[int] = []

    def counting(batch, **options):
        seen.append(batch.shape[0])
        return extractor(batch, **options)

    return counting, seen


def test_image_cache_respects_its_memory_budget(tmp_path):
    data = make_image_folder(tmp_path / "d", {"a": 6, "b": 6})
    samples = scan_dataset(data).splits["train"]
    one_image = 3 * PRE.resize_size * PRE.resize_size
    cache = DecodedImageCache(samples, PRE, budget_bytes=5 * one_image + 10)
    images, kept = cache.batch(list(range(len(samples))))
    assert len(kept) == len(samples) == 12
    assert images.shape == (12, 3, PRE.resize_size, PRE.resize_size) and images.dtype == torch.uint8
    assert cache.nbytes <= cache.budget_bytes
    assert cache.nbytes == 5 * one_image
    again, _ = cache.batch(list(range(len(samples))))  # images past the budget are decoded again
    assert torch.equal(images, again)
    cache.close()


def test_batches_decode_one_batch_ahead_and_no_further(tmp_path, monkeypatch):
    """The feature pass's batches: the same as one at a time, the next batch decoding while the caller
    uses this one; a caller that stops leaves the batches after the next undecoded."""
    data = make_image_folder(tmp_path / "d", {"a": 3, "b": 3})
    samples = scan_dataset(data).splits["train"]
    cache = DecodedImageCache(samples, PRE, budget_bytes=0, threads=1)
    chunks = [[0, 1], [2, 3], [4, 5]]
    for (images, kept), chunk in zip(cache.batches(chunks), chunks, strict=True):
        expected, expected_kept = cache.batch(chunk)
        assert kept == expected_kept == chunk and torch.equal(images, expected)

    decoded: list[int] = []
    real_decode = cache.decode

    def slow_decode(index: int) -> torch.Tensor | None:
        decoded.append(index)
        time.sleep(0.05)
        return real_decode(index)

    monkeypatch.setattr(cache, "decode", slow_decode)
    batches = cache.batches(chunks)
    next(batches)
    time.sleep(0.5)  # the caller works on the first batch: the second decodes meanwhile
    assert decoded == [0, 1, 2, 3]
    batches.close()
    cache.close()
    assert set(decoded) <= {0, 1, 2, 3}  # the third batch never decoded


@pytest.mark.parametrize("input_size", [None, 256, 288])
def test_cached_eval_view_matches_the_eval_transform(tmp_path, input_size):
    """The same pixels, also where resize - crop is odd (288: resize 329) and a centre crop rounds."""
    pre = PRE if input_size is None else PRE.with_input_size(input_size)
    data = make_image_folder(tmp_path / "d", {"a": 2, "b": 2}, size=(300, 200))
    samples = scan_dataset(data).splits["train"]
    cache = DecodedImageCache(samples, pre)
    images, _ = cache.batch([0])
    from engine.data.images import open_image

    expected = eval_transform(pre)(open_image(samples[0].path, min_size=pre.resize_size))
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    got = (center_crop(images, pre.crop_size)[0] - mean) / std
    assert torch.allclose(got, expected, atol=1e-5)
    cache.close()


def test_a_share_of_the_images_computes_only_those_and_a_non_writing_store_saves_nothing(tmp_path):
    """One process's share of a multi-process feature pass: only its indices, in order; and only the
    first process's store writes the file."""
    data = make_image_folder(tmp_path / "d", {"a": 3, "b": 3})
    samples = scan_dataset(data).splits["train"]
    info = get_model_info("efficientnet_lite0")
    counting, seen = _counting_lite0_extractor()
    cache = DecodedImageCache(samples, info.preprocessing)
    reader = FeatureStore(info, seed=0, cache_dir=tmp_path / "cache", writes=False)
    share, kept = compute_features(counting, cache, reader, 1, 0, torch.device("cpu"), 4, indices=range(2, 5))
    assert kept == [2, 3, 4] and share.shape[:2] == (1, 3) and sum(seen) == 3
    assert not reader.path.exists()  # computed, kept in memory, never written

    writer = FeatureStore(info, seed=0, cache_dir=tmp_path / "cache")
    whole, kept_all = compute_features(counting, cache, writer, 1, 0, torch.device("cpu"), 4)
    cache.close()
    assert kept_all == list(range(6)) and writer.path.exists()
    assert torch.allclose(whole[:, 2:5], share, atol=1e-5)


def test_only_the_views_a_photo_misses_are_computed(tmp_path):
    """View 0 cached (e.g. by an audit): a run with 2 views computes view 1 alone, and gets the same
    view-1 features as a cold pass."""
    data = make_image_folder(tmp_path / "d", {"a": 3, "b": 3})
    samples = scan_dataset(data).splits["train"]
    info = get_model_info("efficientnet_lite0")
    counting, seen = _counting_lite0_extractor()

    def features(cache_dir, views):
        cache = DecodedImageCache(samples, info.preprocessing)
        store = FeatureStore(info, seed=0, cache_dir=cache_dir)
        out = compute_features(counting, cache, store, views, 0, torch.device("cpu"), 4, flipped=True)
        cache.close()
        return out

    features(tmp_path / "warm", 1)
    assert sum(seen) == 12  # view 0 and the mirror view of 6 photos
    seen.clear()
    warm, kept = features(tmp_path / "warm", 2)
    assert sum(seen) == 6 and kept == list(range(6))  # view 1 only
    cold, _ = features(tmp_path / "cold", 2)
    assert warm.shape == cold.shape == (3, 6, warm.shape[-1])  # views 0, 1 and the mirror view
    assert torch.allclose(warm, cold, atol=1e-4)


def test_augment_gives_crops_of_the_right_size_and_range():
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = augment(images, 32, crop_boxes(4, gen), torch.tensor([True, False, True, False]))
    assert out.shape == (4, 3, 32, 32)
    assert out.min() >= 0.0 and out.max() <= 1.0
    full = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # the whole image, unflipped: identity resample
    same = augment(images[:1], 64, full, torch.tensor([False]))
    assert torch.allclose(same * 255, images[:1].float(), atol=1e-3)


def test_changed_file_invalidates_only_its_cached_features(tmp_path):
    data = make_image_folder(tmp_path / "d", {"a": 4, "b": 4})
    samples = scan_dataset(data).splits["train"]
    info = get_model_info("efficientnet_lite0")
    counting, seen = _counting_lite0_extractor()
    cache_dir = tmp_path / "cache"

    def run():
        cache = DecodedImageCache(samples, info.preprocessing)
        store = FeatureStore(info, seed=0, cache_dir=cache_dir)
        feats, kept = compute_features(counting, cache, store, 2, 0, torch.device("cpu"), 4)
        cache.close()
        return feats, kept

    first, kept = run()
    assert first.shape[:2] == (2, 8) and sum(seen) == 16  # 8 images x 2 views
    seen.clear()
    again, _ = run()
    assert sum(seen) == 0 and torch.equal(first, again)  # all from the disk cache

    changed = samples[3].path
    from helpers_images import make_image

    make_image((0, 0, 255), seed=99).save(changed, format="PNG" if changed.suffix == ".png" else "JPEG")
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    seen.clear()
    third, _ = run()
    assert sum(seen) == 2  # only the changed image, both views
    assert not torch.equal(third[:, 3], first[:, 3])
    assert torch.equal(third[:, :3], first[:, :3])

    other_seed = FeatureStore(info, seed=1, cache_dir=cache_dir)
    assert other_seed.path != FeatureStore(info, seed=0, cache_dir=cache_dir).path


def test_head_is_last_except_where_pooling_follows():
    lite, heads = build_model("efficientnet_lite0", 2, pretrained=False)
    assert head_is_last(lite, heads[0], 224)
    squeeze, heads = build_model("squeezenet1_1", 2, pretrained=False)
    assert not head_is_last(squeeze, heads[0], 224)


def test_cached_features_match_the_full_forward_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    data = make_image_folder(tmp_path / "d", {"a": 6, "b": 6})
    base = TrainConfig.for_strategy(
        "feature-extract",
        epochs=2,
        batch_size=4,
        lr=1e-2,
        device="cpu",
        augment=False,
        input_size=SMALL_INPUT,
        # The feature pass runs the backbone fused (engine.models.fusion), the image path as trained:
        # the same sums up to float32 rounding (bfloat16's would differ in the third digit).
        precision="fp32",
    )
    fast = train(base, data, run_dir=tmp_path / "fast")
    slow = train(base.replace(cache_features=False), data, run_dir=tmp_path / "slow")
    for a, b in zip(fast.history, slow.history, strict=True):
        assert abs(a["val_acc"] - b["val_acc"]) < 1e-9
        assert abs(a["val_loss"] - b["val_loss"]) < 1e-4
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4


def test_out_of_memory_halves_the_batch_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    from engine.training import events as ev
    from engine.training import loop

    data = make_image_folder(tmp_path / "d", {"a": 6, "b": 6})
    real_step = loop._step
    state = {"raised": False}

    def flaky_step(run_state, forward, inputs, labels, training):
        if training and not state["raised"] and labels.numel() > 2:
            state["raised"] = True
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_step(run_state, forward, inputs, labels, training)

    monkeypatch.setattr(loop, "_step", flaky_step)
    events: list = []
    config = TrainConfig.for_strategy(
        "feature-extract", epochs=2, batch_size=8, device="cpu", input_size=SMALL_INPUT
    )
    result = train(config, data, run_dir=tmp_path / "run", on_event=events.append)
    assert state["raised"] and result.epochs_completed == 2
    messages = [e.text for e in events if isinstance(e, ev.Message)]
    assert any("batch size halved to 4" in m for m in messages)


@pytest.mark.parametrize(
    "change",
    [
        {"scale": (0.5, 1.0)},
        {"ratio": (0.5, 2.0)},
        {"hflip_probability": 0.0},
        {"padding": "zeros"},
        {"version": 99},
    ],
)
def test_feature_cache_key_covers_every_augmentation_setting(tmp_path, monkeypatch, change):
    from engine.models.registry import get_model_info
    from engine.training import pipeline

    info = get_model_info("efficientnet_lite0")
    before = FeatureStore(info, seed=0, cache_dir=tmp_path).path
    monkeypatch.setattr(pipeline, "AUGMENTATION", pipeline.AUGMENTATION | change)
    monkeypatch.setattr("engine.training.features.AUGMENTATION", pipeline.AUGMENTATION)
    assert FeatureStore(info, seed=0, cache_dir=tmp_path).path != before


def test_feature_cache_key_covers_precision_and_preprocessing(tmp_path):
    import dataclasses

    from engine.models.registry import get_model_info

    info = get_model_info("efficientnet_lite0")
    base = FeatureStore(info, seed=0, cache_dir=tmp_path).path
    assert FeatureStore(info, seed=0, cache_dir=tmp_path, precision="bfloat16").path != base
    for change in ({"interpolation": "bicubic"}, {"resize_size": 300}, {"crop_size": 240}):
        other = dataclasses.replace(info, preprocessing=dataclasses.replace(info.preprocessing, **change))
        assert FeatureStore(other, seed=0, cache_dir=tmp_path).path != base, change


def test_big_jpegs_decode_in_draft_mode_identically_for_training_and_prediction(tmp_path):
    """A phone-sized JPEG is decoded at a quarter of its size, and training's cached eval view is
    exactly what the Predictor feeds the model for the same file."""
    import numpy as np
    from PIL import Image

    from engine.data.datasets import Sample
    from engine.data.images import open_image
    from engine.inference.predict import Predictor
    from engine.models.build import build_model
    from engine.models.bundle import Bundle

    rng = np.random.default_rng(0)
    path = tmp_path / "phone.jpg"
    pixels = rng.integers(0, 255, (1800, 2400, 3), dtype=np.uint8)
    Image.fromarray(pixels).resize((2400, 1800)).save(path, quality=90)
    assert open_image(path).size == (2400, 1800)
    assert open_image(path, min_size=PRE.resize_size).size == (600, 450)  # 1/4: the smallest >= 256 px

    cache = DecodedImageCache([Sample(path, 0)], PRE)
    images, _ = cache.batch([0])
    cache.close()
    model, _ = build_model("mobilenet_v3_small", 2, pretrained=False)
    predictor = Predictor(Bundle("mobilenet_v3_small", ["a", "b"], model.state_dict(), PRE), device="cpu")
    expected = predictor.transform(predictor.load(path))
    mean = torch.tensor(PRE.mean).view(3, 1, 1)
    std = torch.tensor(PRE.std).view(3, 1, 1)
    got = (center_crop(images, PRE.crop_size)[0] - mean) / std
    assert torch.allclose(got, expected, atol=1e-5)
