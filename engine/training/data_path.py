"""The two ways a run feeds its model, behind one small interface.

- :class:`FeaturePath`: the backbone is frozen and its head's input can be cached, so the backbone runs
  once per image view (:mod:`engine.training.features`) and every epoch trains the head alone.
- :class:`ImagePath`: every other case; batches of decoded images, augmented on the training device,
  go through the whole model.

With flip test-time augmentation (``TrainConfig.tta``), validation averages each photo's logits with
those of its mirror image: the image path runs the model on both, the feature path caches the mirrored
view's features too and the head averages its logits over both (:class:`ViewAveraged`).

The trainer asks a path for the module to call, for an epoch's batches of a split, and to set train or
eval mode; it never checks which path it has.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import torch
from PIL import Image
from torch import nn

from engine.core.allocator import release_memory
from engine.core.config import IMAGE_CACHE_AUTO
from engine.core.device import is_accelerator
from engine.core.errors import Cancelled, TransferStudioError
from engine.core.memory import image_cache_bytes
from engine.data.datasets import DatasetReport, Sample
from engine.models.fusion import fuses
from engine.models.heads import HeadSpec
from engine.models.preprocessing import CROP_FRACTION, Preprocessing
from engine.models.registry import get_model_info
from engine.models.tta import FlipAveraged
from engine.training.distributed import Dist, agree_to_stop, gather_rows, shard_for_eval, unwrap
from engine.training.features import (
    FeatureExtractor,
    FeatureStore,
    compute_features,
    feature_labels,
    head_is_last,
)
from engine.training.image_cache import DecodedImageCache
from engine.training.pipeline import FeatureBatches, ImageBatches
from engine.training.state import Caller, TrainingState
from engine.training.strategies import set_mode

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
#: Automatic input sizes, largest first, as multiples of the model's own crop (224: 288, then 256).
AUTO_INPUT_SCALES = (9 / 7, 8 / 7)
#: At most this many training photos (evenly spaced) have their size read for the automatic input size.
AUTO_INPUT_SAMPLE = 256
_Path = TypeVar("_Path", bound="_DataPathBase")


def decode_threads(workers: int) -> int:
    """Image-decoding threads: the configured number, else one per core (at most 8)."""
    return workers or min(8, os.cpu_count() or 1)


def feature_views(augment: bool, configured: int, device: torch.device) -> int:
    """Cached views per training image: 1 without augmentation; more where compute is cheap."""
    if not augment:
        return 1
    if configured:
        return configured
    return 4 if is_accelerator(device) else 2


def auto_input_size(pre: Preprocessing, samples: Sequence[Sample]) -> tuple[int, float | None]:
    """The input size for ``input_size = INPUT_SIZE_AUTO``, and the photos' median shorter side.

    The largest of :data:`AUTO_INPUT_SCALES` times the model's crop (rounded to 32 pixels) whose resize
    (``size / CROP_FRACTION``) the median training photo reaches without being enlarged; else the
    model's own. A model looks at a centre crop of a photo larger than the random crops it was trained
    on, so a larger test size matches what it learned (Touvron et al. 2019, "Fixing the train-test
    resolution discrepancy"), but only when the photo has the pixels: enlarging small photos loses.
    Only headers are read (up to :data:`AUTO_INPUT_SAMPLE` photos); unreadable ones are left out.
    """
    step = max(1, len(samples) // AUTO_INPUT_SAMPLE) if samples else 1
    sides = [side for side in map(_shorter_side, list(samples)[::step][:AUTO_INPUT_SAMPLE]) if side]
    if not sides:
        return pre.crop_size, None
    median = float(statistics.median(sides))
    for scale in AUTO_INPUT_SCALES:
        size = max(pre.crop_size, round(pre.crop_size * scale / 32) * 32)
        if round(size / CROP_FRACTION) <= median:
            return size, median
    return pre.crop_size, median


def _shorter_side(sample: Sample) -> int | None:
    try:
        with Image.open(sample.path) as image:  # the header only
            return min(image.size)
    except Exception:  # noqa: BLE001 - any unreadable photo is simply not counted
        return None


def cacheable_head(state: TrainingState) -> str | None:
    """The head whose input can be cached, when the fast feature-extraction path applies."""
    if state.config.strategy != "feature-extract" or not state.config.cache_features:
        return None
    return last_head(state)


def last_head(state: TrainingState) -> str | None:
    """The head whose output is the model's output (so its input can be computed alone), if any."""
    for name in state.head_names:
        if head_is_last(state.model, name, state.preprocessing.crop_size):
            return name
    return None


class ViewAveraged(nn.Module):
    """A head that also takes ``[B, views, D]`` inputs, and then averages its logits over the views."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            out: torch.Tensor = self.head(x)
            return out
        b, v = x.shape[:2]
        logits: torch.Tensor = self.head(x.flatten(0, 1))
        return logits.view(b, v, -1).mean(1)


@dataclass
class _Split:
    cache: DecodedImageCache
    labels: list[int]


class _DataPathBase:
    """What both paths share: a decoded-image cache and the labels of each split."""

    forward: nn.Module

    def __init__(self, splits: dict[str, _Split]) -> None:
        self.splits = splits

    def failed_images(self) -> int:
        """Images that could not be decoded so far (each counted once)."""
        return sum(len(s.cache.failed) for s in self.splits.values())

    def close(self) -> None:
        for split in self.splits.values():
            split.cache.close()

    def __enter__(self: _Path) -> _Path:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ImagePath(_DataPathBase):
    """Decoded images through the whole model; augmentation on the training device."""

    def __init__(self, splits: dict[str, _Split], state: TrainingState) -> None:
        super().__init__(splits)
        self.forward = FlipAveraged(state.model) if state.preprocessing.tta == "flip" else state.model
        self._state = state

    def batches(
        self,
        split: str,
        batch_size: int,
        generator: torch.Generator,
        *,
        balanced: bool = False,
        dist: Dist | None = None,
    ) -> ImageBatches:
        part = self.splits[split]
        return ImageBatches(
            part.cache,
            part.labels,
            batch_size,
            self._state.device,
            train=split == "train",
            augment=self._state.config.augment,
            generator=generator,
            balanced=balanced,
            dist=dist,
        )

    def set_mode(self, training: bool) -> None:
        config = self._state.config
        averaged = unwrap(self.forward)  # under the DDP wrapper with several processes
        if isinstance(averaged, FlipAveraged):
            averaged.averaging = not training  # training steps see one view; validation averages
        set_mode(
            self._state.model, self._state.head_names, config.strategy, training, freeze_bn=config.freeze_bn
        )


class FeaturePath(_DataPathBase):
    """Cached backbone features through the head alone."""

    def __init__(
        self,
        splits: dict[str, _Split],
        features: dict[str, tuple[torch.Tensor, list[int]]],
        head: nn.Module,
        device: torch.device,
    ) -> None:
        super().__init__(splits)
        self.features = features
        self.forward = ViewAveraged(head)
        self.device = device

    def batches(
        self,
        split: str,
        batch_size: int,
        generator: torch.Generator,
        *,
        balanced: bool = False,
        dist: Dist | None = None,
    ) -> FeatureBatches:
        feats, labels = self.features[split]
        return FeatureBatches(
            feats,
            labels,
            batch_size,
            self.device,
            train=split == "train",
            generator=generator,
            balanced=balanced,
            all_views=True,  # validation: the plain view, and its mirror image with flip TTA
            dist=dist,
        )

    def set_mode(self, training: bool) -> None:
        self.forward.train(training)


DataPath = ImagePath | FeaturePath


def open_data_path(
    state: TrainingState,
    report: DatasetReport,
    caller: Caller,
    halve_inference_batch: Callable[[], int],
) -> DataPath:
    """The run's data path; for cached features, computes (or loads) them first, with progress and Stop.

    ``halve_inference_batch`` is called when the feature pass runs out of GPU memory; the features
    computed so far are kept and the pass goes on with the smaller batch.
    """
    config = state.config
    head_name = cacheable_head(state)
    # The feature path decodes each photo once, in the batch in flight: nothing to keep decoded.
    budget = 0 if head_name is not None else image_cache_budget(config.image_cache_mb, report, state)
    threads = decode_threads(config.workers)
    splits = {
        name: _Split(
            DecodedImageCache(report.splits[name], state.preprocessing, budget // len(SPLITS), threads),
            [s.label for s in report.splits[name]],
        )
        for name in SPLITS
    }
    if head_name is None:
        return ImagePath(splits, state)
    try:
        features = _compute_split_features(state, splits, head_name, caller, halve_inference_batch)
    except BaseException:
        for split in splits.values():
            split.cache.close()
        raise
    finally:
        release_memory()  # the feature pass's batch buffers go back to the system
    head = state.model.get_submodule(head_name)
    return FeaturePath(splits, features, head, state.device)


def image_cache_budget(image_cache_mb: int, report: DatasetReport, state: TrainingState) -> int:
    """Bytes of decoded photos a run that trains whole images keeps: the setting, or (automatic) every
    photo of the run where a share of the free memory holds them (:func:`engine.core.memory.image_cache_bytes`)."""
    if image_cache_mb != IMAGE_CACHE_AUTO:
        return image_cache_mb * 1024 * 1024
    side = state.preprocessing.resize_size
    needed = 3 * side * side * sum(len(report.splits[name]) for name in SPLITS)
    budget = image_cache_bytes(needed)
    log.info("decoded-image cache: %d MB of the %d MB the photos take", budget // 2**20, needed // 2**20)
    return budget


def _compute_split_features(
    state: TrainingState,
    splits: dict[str, _Split],
    head_name: str,
    caller: Caller,
    halve_inference_batch: Callable[[], int],
) -> dict[str, tuple[torch.Tensor, list[int]]]:
    config = state.config
    views = {"train": feature_views(config.augment, config.feature_views, state.device), "val": 1}
    store = feature_store(state, caller.dist)
    features = {
        name: frozen_features(
            state,
            store,
            splits[name],
            head_name,
            views[name],
            caller,
            halve_inference_batch,
            flipped=name == "val" and state.preprocessing.tta == "flip",
            split_name=name,
        )
        for name in SPLITS
    }
    features_done(caller)
    # Validation scores these features: the bundle says so, and inference fuses the same way.
    state.features_fused = fuses(state.model)
    caller.info(
        f"backbone features ready ({views['train']} view(s) per training image); "
        "each epoch now trains only the head"
    )
    return features


def feature_store(state: TrainingState, dist: Dist | None = None) -> FeatureStore:
    """The on-disk feature store of the run's model, weights, preprocessing, seed, precision and head.

    With several processes (``dist``), only the first one writes it.
    """
    config = state.config
    return FeatureStore(
        get_model_info(config.model),
        config.seed,
        precision=state.precision,
        head_input=HeadSpec.from_config(config).head_input,
        preprocessing=state.preprocessing,
        writes=dist is None or dist.is_main,
    )


def frozen_features(
    state: TrainingState,
    store: FeatureStore,
    split: _Split,
    head_name: str,
    views: int,
    caller: Caller,
    halve_inference_batch: Callable[[], int],
    *,
    flipped: bool = False,
    split_name: str = "train",
) -> tuple[torch.Tensor, list[int]]:
    """The frozen, pretrained backbone's features ``[views, N_ok, D]`` of a split's images (through the
    on-disk feature store, with progress, Stop and halving on out-of-memory), and their labels.

    With several processes (``caller.dist``) each computes a contiguous share of the images, and all
    of them receive every share; the first process adds the others' features to the store and saves it.
    Puts the whole model in eval mode; a caller that trains it next sets its mode again.
    """
    set_mode(state.model, state.head_names, "feature-extract", training=False)
    extractor = FeatureExtractor(state.model, head_name)
    weight = views + int(flipped)
    d = caller.dist
    share = shard_for_eval(len(split.cache), d)

    def progress(done: int, total: int) -> None:
        caller.batch_done(0, "features", done, total, weight=weight)

    stopped = False
    feats: torch.Tensor = torch.empty(views + int(flipped), 0, 0)
    kept: list[int] = []
    while True:
        try:
            with state.autocast():
                feats, kept = compute_features(
                    extractor,
                    split.cache,
                    store,
                    views,
                    state.config.seed,
                    state.device,
                    state.inference_batch,
                    on_batch=progress,
                    should_stop=caller.should_stop,
                    flipped=flipped,
                    indices=range(share.start, share.stop) if d.distributed else None,
                )
            break
        except torch.cuda.OutOfMemoryError:
            halve_inference_batch()  # features done so far are kept in the store
        except Cancelled:
            if not d.distributed:
                raise
            stopped = True  # the others are told below, and stop with this process
            break
    if d.distributed:
        if agree_to_stop(stopped, d):
            raise Cancelled("the feature pass stopped")
        feats = gather_rows(feats.cpu(), d, dim=1)
        kept = gather_rows(torch.tensor(kept, dtype=torch.long), d).tolist()
        _store_shared_features(store, split, feats, kept, views, flipped)
    if not kept:
        raise TransferStudioError(f"no {split_name} image could be read; check the dataset")
    if is_accelerator(state.device):  # kept on the device: every epoch reads them
        feats = feats.to(state.device)
    return feats, _labels_of(split.labels, kept)


def _store_shared_features(
    store: FeatureStore, split: _Split, feats: torch.Tensor, kept: list[int], views: int, flipped: bool
) -> None:
    """Add every process's features to the first process's store, and save it (the others never write)."""
    if not store.writes:
        return
    labels = feature_labels(views, flipped)
    for row, i in enumerate(kept):
        try:
            keys = [FeatureStore.key(split.cache.samples[i].path, v) for v in labels]
        except OSError:
            continue  # gone since another process read it: not worth keeping
        for view, key in enumerate(keys):
            if key not in store.entries:
                store.entries[key] = feats[view, row].clone()
                store.dirty = True
    store.save()


def features_done(caller: Caller) -> None:
    """Tell the ETA that the feature work is over (cached features needed no batch), and note whether
    every feature came from the cache (the run then took less time than a first run would)."""
    eta = caller.eta
    caller.features_cached = eta.planned["features"] > 0 and eta.done["features"] == 0
    eta.planned["features"] = eta.done["features"]
    caller.eta.restart_clock()  # stacking and saving the features is not the first epoch batch


def _labels_of(labels: Sequence[int], kept: Sequence[int]) -> list[int]:
    return [labels[i] for i in kept]
