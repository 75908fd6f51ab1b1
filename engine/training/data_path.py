"""The two ways a run feeds its model, behind one small interface.

- :class:`FeaturePath`: the backbone is frozen and its head's input can be cached, so the backbone runs
  once per image view (:mod:`engine.training.features`) and every epoch trains the head alone.
- :class:`ImagePath`: every other case; batches of decoded images, augmented on the training device,
  go through the whole model.

The trainer asks a path for the module to call, for an epoch's batches of a split, and to set train or
eval mode; it never checks which path it has.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import torch
from torch import nn

from engine.core.device import is_accelerator
from engine.core.errors import TransferStudioError
from engine.data.datasets import DatasetReport
from engine.models.heads import HeadSpec
from engine.models.registry import get_model_info
from engine.training.features import FeatureExtractor, FeatureStore, compute_features, head_is_last
from engine.training.image_cache import DecodedImageCache
from engine.training.pipeline import FeatureBatches, ImageBatches
from engine.training.state import Hooks, TrainingState
from engine.training.strategies import set_mode

SPLITS = ("train", "val")
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


def cacheable_head(state: TrainingState) -> str | None:
    """The head whose input can be cached, when the fast feature-extraction path applies."""
    if state.config.strategy != "feature-extract" or not state.config.cache_features:
        return None
    for name in state.head_names:
        if head_is_last(state.model, name, state.preprocessing.crop_size):
            return name
    return None


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
        self.forward = state.model
        self._state = state

    def batches(
        self, split: str, batch_size: int, generator: torch.Generator, *, balanced: bool = False
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
        )

    def set_mode(self, training: bool) -> None:
        set_mode(self._state.model, self._state.head_names, self._state.config.strategy, training)


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
        self.forward = head
        self.device = device

    def batches(
        self, split: str, batch_size: int, generator: torch.Generator, *, balanced: bool = False
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
        )

    def set_mode(self, training: bool) -> None:
        self.forward.train(training)


DataPath = ImagePath | FeaturePath


def open_data_path(
    state: TrainingState,
    report: DatasetReport,
    hooks: Hooks,
    halve_inference_batch: Callable[[], int],
) -> DataPath:
    """The run's data path; for cached features, computes (or loads) them first, with progress and Stop.

    ``halve_inference_batch`` is called when the feature pass runs out of GPU memory; the features
    computed so far are kept and the pass goes on with the smaller batch.
    """
    config = state.config
    budget = config.image_cache_mb * 1024 * 1024 // len(SPLITS)
    threads = decode_threads(config.workers)
    splits = {
        name: _Split(
            DecodedImageCache(report.splits[name], state.preprocessing, budget, threads),
            [s.label for s in report.splits[name]],
        )
        for name in SPLITS
    }
    head_name = cacheable_head(state)
    if head_name is None:
        return ImagePath(splits, state)
    try:
        features = _compute_split_features(state, splits, head_name, hooks, halve_inference_batch)
    except BaseException:
        for split in splits.values():
            split.cache.close()
        raise
    head = state.model.get_submodule(head_name)
    return FeaturePath(splits, features, head, state.device)


def _compute_split_features(
    state: TrainingState,
    splits: dict[str, _Split],
    head_name: str,
    hooks: Hooks,
    halve_inference_batch: Callable[[], int],
) -> dict[str, tuple[torch.Tensor, list[int]]]:
    config = state.config
    store = FeatureStore(
        get_model_info(config.model),
        config.seed,
        precision=state.precision,
        head_input=HeadSpec.from_config(config).head_input,
    )
    extractor = FeatureExtractor(state.model, head_name)
    set_mode(state.model, state.head_names, "feature-extract", training=False)
    views = {"train": feature_views(config.augment, config.feature_views, state.device), "val": 1}

    features: dict[str, tuple[torch.Tensor, list[int]]] = {}
    for name in SPLITS:

        def progress(done: int, total: int, weight: int = views[name]) -> None:
            hooks.batch_done(0, "features", done, total, weight=weight)

        while True:
            try:
                with state.autocast():
                    feats, kept = compute_features(
                        extractor,
                        splits[name].cache,
                        store,
                        views[name],
                        config.seed,
                        state.device,
                        state.inference_batch,
                        on_batch=progress,
                        should_stop=hooks.should_stop,
                    )
                break
            except torch.cuda.OutOfMemoryError:
                halve_inference_batch()  # features done so far are kept in the store
        if not kept:
            raise TransferStudioError(f"no {name} image could be read; check the dataset")
        if is_accelerator(state.device):  # kept on the device: every epoch reads them
            feats = feats.to(state.device)
        features[name] = (feats, _labels_of(splits[name].labels, kept))
    hooks.eta.planned["features"] = hooks.eta.done["features"]  # cached ones needed no batch
    hooks.eta.restart_clock()  # stacking and saving the features is not the first epoch batch
    hooks.info(
        f"backbone features ready ({views['train']} view(s) per training image); "
        "each epoch now trains only the head"
    )
    return features


def _labels_of(labels: Sequence[int], kept: Sequence[int]) -> list[int]:
    return [labels[i] for i in kept]
