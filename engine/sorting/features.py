"""The backbone features sorting works on: view 0 of every labelled photo and every photo to sort.

They come from training's feature cache (:class:`engine.training.features.FeatureStore`) with exactly
the keys a feature-extract run of the same backbone uses, so a run, the dataset doctor and sorting
share one backbone pass per photo. Photos to sort are decoded once each and never kept in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.core.config import TrainConfig
from engine.core.device import resolve_device
from engine.core.errors import StopCheck, TransferStudioError
from engine.core.precision import resolve_precision
from engine.data.datasets import DatasetReport, Sample, SkippedFile
from engine.models.build import build_model
from engine.models.heads import HeadSpec
from engine.models.registry import get_model_info
from engine.training.data_path import decode_threads
from engine.training.features import FeatureExtractor, FeatureStore, compute_features, head_is_last
from engine.training.image_cache import DecodedImageCache
from engine.training.recipe import inference_batch_size, run_preprocessing

log = logging.getLogger(__name__)

#: The built-in model: offline, and the proposals' default backbone.
DEFAULT_BACKBONE = TrainConfig.model

#: ``on_progress(done, total)``: photos through the backbone (labelled first, then those to sort).
FeatureProgress = Callable[[int, int], None]


@dataclass
class PhotoFeatures:
    """View-0 features of a dataset's labelled photos and of its photos to sort (rows match the paths)."""

    classes: list[str]
    labeled_paths: list[Path]
    labels: list[int]
    labeled: torch.Tensor  # [N, D]
    unlabeled_paths: list[Path]
    unlabeled: torch.Tensor  # [M, D]
    skipped: list[SkippedFile] = field(default_factory=list)  # photos to sort that cannot be used, and why
    backbone: str = DEFAULT_BACKBONE
    computed: int = 0  # backbone passes run (the rest came from the cache)


def photo_features(
    report: DatasetReport,
    *,
    backbone: str = DEFAULT_BACKBONE,
    device: str = "auto",
    cache_dir: Path | None = None,
    on_progress: FeatureProgress | None = None,
    should_stop: StopCheck | None = None,
) -> PhotoFeatures:
    """Features of every labelled photo of ``report`` (all splits) and of ``report.unlabeled``.

    Computed as a feature-extract run of ``backbone`` computes view 0 (same preprocessing, input size,
    precision and cache entries). Raises :class:`~engine.core.errors.Cancelled` once ``should_stop()``
    turns true (what was computed stays in the cache).
    """
    config = TrainConfig.for_strategy("feature-extract", model=backbone, seed=report.seed)
    info = get_model_info(backbone)
    dev = resolve_device(device)
    pre = run_preprocessing(config, report)
    spec = HeadSpec.from_config(config)
    net, head_names = build_model(backbone, len(report.classes), pretrained=True, head=spec)
    net.to(dev)
    net.to(memory_format=torch.channels_last)
    net.eval()
    head = next((h for h in head_names if head_is_last(net, h, pre.crop_size)), None)
    if head is None:
        raise TransferStudioError(f"{backbone} cannot propose classes: its head is followed by more layers")
    compute = resolve_precision(config.precision, dev)
    precision = compute.name
    store = FeatureStore(
        info, config.seed, cache_dir, precision=precision, head_input=spec.head_input, preprocessing=pre
    )
    extractor = FeatureExtractor(net, head)
    batch = inference_batch_size(config.batch_size, dev)
    labeled = [s for samples in report.splits.values() for s in samples]
    to_sort = [Sample(p, 0) for p in report.unlabeled]
    total = len(labeled) + len(to_sort)
    before = len(store.entries)
    parts: list[tuple[torch.Tensor, list[int], dict[int, str]]] = []
    offset = 0
    for samples in (labeled, to_sort):
        cache = DecodedImageCache(samples, pre, budget_bytes=0, threads=decode_threads(config.workers))

        def on_batch(done: int, chunks: int, start: int = offset, size: int = len(samples)) -> None:
            if on_progress:
                on_progress(start + round(size * done / max(1, chunks)), total)

        try:
            with compute.autocast(dev):
                feats, kept = compute_features(
                    extractor, cache, store, 1, config.seed, dev, batch, on_batch, should_stop
                )
        finally:
            cache.close()
        parts.append((feats[0].float() if kept else torch.empty(0, 0), kept, dict(cache.failed)))
        offset += len(samples)
    if on_progress:
        on_progress(total, total)
    (lab_feats, lab_kept, _), (un_feats, un_kept, un_failed) = parts
    dim = max(lab_feats.shape[-1], un_feats.shape[-1])
    return PhotoFeatures(
        classes=list(report.classes),
        labeled_paths=[labeled[i].path for i in lab_kept],
        labels=[labeled[i].label for i in lab_kept],
        labeled=lab_feats if lab_kept else torch.empty(0, dim),
        unlabeled_paths=[to_sort[i].path for i in un_kept],
        unlabeled=un_feats if un_kept else torch.empty(0, dim),
        skipped=[s for s in report.skipped if _inside(s.path, report.unlabeled_root)]
        + [SkippedFile(to_sort[i].path, reason) for i, reason in sorted(un_failed.items())],
        backbone=backbone,
        computed=len(store.entries) - before,
    )


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.is_relative_to(folder)
