"""Batches for the training loop, built from decoded-image or cached-feature tensors.

Augmentation (random resized crop + horizontal flip) runs on whole uint8 batches as one
``grid_sample`` on the training device, so on a GPU it costs next to nothing and on a CPU it
avoids per-image PIL work. All randomness comes from explicit ``torch.Generator`` objects, so a
seeded run draws the same batches and crops whether it was resumed or not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import torch
import torch.nn.functional as F

from engine.models.preprocessing import Preprocessing
from engine.training.distributed import Dist, shard_batches, shard_for_eval
from engine.training.image_cache import DecodedImageCache

# Random-resized-crop scale range: milder than ImageNet's (0.08, 1), which throws away too much of
# the object on the small, photo-like datasets this app is for.
AUGMENT_SCALE = (0.35, 1.0)
AUGMENT_RATIO = (3 / 4, 4 / 3)
HFLIP_PROBABILITY = 0.5
AUGMENT_RESAMPLE = "bilinear"
AUGMENT_PADDING = "reflection"
#: Every setting that decides an augmented view's pixels. The feature cache's key includes all of it,
#: so changing any of them (or the version, when the crop code itself changes) recomputes the features.
AUGMENTATION: dict[str, object] = {
    "version": 1,
    "scale": AUGMENT_SCALE,
    "ratio": AUGMENT_RATIO,
    "hflip_probability": HFLIP_PROBABILITY,
    "resample": AUGMENT_RESAMPLE,
    "padding": AUGMENT_PADDING,
}
Batch = tuple[torch.Tensor, torch.Tensor]  # inputs and labels, on the training device


def epoch_order(
    labels: torch.Tensor, generator: torch.Generator | None, *, balanced: bool = False
) -> torch.Tensor:
    """The order of one training epoch: a seeded permutation, or with ``balanced`` as many seeded draws
    (with replacement) in which every class is equally likely (a weighted random sampler)."""
    n = labels.numel()
    if not balanced or n == 0:
        return torch.randperm(n, generator=generator)
    counts = torch.bincount(labels).to(torch.float64)
    weights = 1.0 / counts[labels]
    return torch.multinomial(weights, n, replacement=True, generator=generator)


def crop_boxes(count: int, generator: torch.Generator | None) -> torch.Tensor:
    """Random-resized-crop boxes as affine parameters ``[count, 4]``: (half width, half height, cx, cy).

    Sizes and centres are in ``affine_grid``'s normalised coordinates ([-1, 1] across the image).
    """
    area = torch.empty(count).uniform_(*AUGMENT_SCALE, generator=generator)
    log_ratio = torch.empty(count).uniform_(*(math.log(r) for r in AUGMENT_RATIO), generator=generator)
    ratio = torch.exp(log_ratio)
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(count, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(count, generator=generator) * 2 - 1) * (1 - h)
    return torch.stack([w, h, cx, cy], dim=1)


def augment(images: torch.Tensor, crop_size: int, boxes: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Crop ``boxes`` out of uint8 ``[B,3,S,S]`` images, resize to ``crop_size``, flip; floats in [0, 1]."""
    b = images.shape[0]
    boxes = boxes.to(images.device)
    sign = torch.where(flips.to(images.device), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=images.device)
    theta[:, 0, 0] = boxes[:, 0] * sign
    theta[:, 0, 2] = boxes[:, 2]
    theta[:, 1, 1] = boxes[:, 1]
    theta[:, 1, 2] = boxes[:, 3]
    grid = F.affine_grid(theta, [b, 3, crop_size, crop_size], align_corners=False)
    pixels = images.float().div_(255)
    return F.grid_sample(
        pixels, grid, mode=AUGMENT_RESAMPLE, padding_mode=AUGMENT_PADDING, align_corners=False
    )


def center_crop(images: torch.Tensor, crop_size: int) -> torch.Tensor:
    """The centre ``crop_size`` square of uint8 ``[B,3,S,S]`` images as floats in [0, 1]."""
    size = images.shape[-1]
    top = int(round((size - crop_size) / 2.0))
    return images[..., top : top + crop_size, top : top + crop_size].float().div_(255)


class Normalizer:
    """Subtract the mean and divide by the std of a model's preprocessing, on a device."""

    def __init__(self, pre: Preprocessing, device: torch.device) -> None:
        self.mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std


class ImageBatches:
    """One epoch of image batches from a :class:`DecodedImageCache`, decoded one batch ahead."""

    def __init__(
        self,
        cache: DecodedImageCache,
        labels: Sequence[int],
        batch_size: int,
        device: torch.device,
        *,
        train: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        balanced: bool = False,
        dist: Dist | None = None,
    ) -> None:
        self.cache = cache
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.batch_size = batch_size
        self.device = device
        self.train = train
        self.augment = augment and train
        self.generator = generator
        self.crop = cache.pre.crop_size
        self.normalize = Normalizer(cache.pre, device)
        chunks = (
            shard_batches(
                epoch_order(self.labels, generator, balanced=balanced), batch_size, dist or Dist.single()
            )
            if train
            else shard_for_eval(len(cache), dist or Dist.single()).batches(batch_size)
        )
        self.chunks = [chunk.tolist() for chunk in chunks]  # this process's share (all of it, alone)

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[Batch | None]:
        # Draw every random number up front, in batch order, so results never depend on timing.
        draws: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for chunk in self.chunks:
            if self.augment:
                boxes = crop_boxes(len(chunk), self.generator)
                flips = torch.rand(len(chunk), generator=self.generator) < HFLIP_PROBABILITY
                draws.append((boxes, flips))
            else:
                draws.append(None)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as prefetch:
            pending: Future[tuple[torch.Tensor, list[int]]] | None = (
                prefetch.submit(self.cache.batch, self.chunks[0]) if self.chunks else None
            )
            for n, chunk in enumerate(self.chunks):
                assert pending is not None  # submitted for every chunk before it is reached
                images, kept = pending.result()
                pending = (
                    prefetch.submit(self.cache.batch, self.chunks[n + 1])
                    if n + 1 < len(self.chunks)
                    else None
                )
                if not kept:  # every image of the batch failed to decode (counted by the cache)
                    yield None
                    continue
                labels = self.labels[kept].to(self.device, non_blocking=True)
                yield self._to_device(images, kept, chunk, draws[n]), labels

    def _to_device(
        self,
        images: torch.Tensor,
        kept: list[int],
        chunk: list[int],
        draw: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        if self.device.type == "cuda":
            images = images.pin_memory().to(self.device, non_blocking=True)
        if draw is None:
            pixels = center_crop(images, self.crop)
        else:
            rows = _kept_rows(chunk, kept)
            pixels = augment(images, self.crop, draw[0][rows], draw[1][rows])
        return self.normalize(pixels).contiguous(memory_format=torch.channels_last)  # as the model


def _kept_rows(chunk: list[int], kept: list[int]) -> list[int]:
    """Positions in ``chunk`` of the ``kept`` indices (an in-order filter of it; indices may repeat)."""
    rows, j = [], 0
    for position, index in enumerate(chunk):
        if j < len(kept) and kept[j] == index:
            rows.append(position)
            j += 1
    return rows


class FeatureBatches:
    """One epoch of batches of cached backbone features ``[views, N, D]``: a random view per image for
    training, else the first view, or with ``all_views`` every view (inputs ``[B, views, D]``, whose
    logits the head averages: test-time augmentation)."""

    def __init__(
        self,
        features: torch.Tensor,
        labels: Sequence[int],
        batch_size: int,
        device: torch.device,
        *,
        train: bool,
        generator: torch.Generator | None = None,
        balanced: bool = False,
        all_views: bool = False,
        dist: Dist | None = None,
    ) -> None:
        self.features = features
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.batch_size = batch_size
        self.device = device
        self.all_views = all_views and not train
        n = features.shape[1]
        if train:
            order = epoch_order(self.labels, generator, balanced=balanced)
            self.views = torch.randint(0, features.shape[0], (n,), generator=generator)
        else:
            order, self.views = torch.arange(n), torch.zeros(n, dtype=torch.long)
        d = dist or Dist.single()
        self.chunks = (
            shard_batches(order, batch_size, d) if train else shard_for_eval(n, d).batches(batch_size)
        )  # this process's share of the epoch (all of it, alone); the views were drawn for every image

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[Batch | None]:
        for chunk in self.chunks:
            if not len(chunk):  # several processes: this one has no validation images left
                yield None
                continue
            if self.all_views:
                inputs = self.features[:, chunk].transpose(0, 1)
            else:
                inputs = self.features[self.views[chunk], chunk]
            yield (
                inputs.to(self.device, non_blocking=True),
                self.labels[chunk].to(self.device, non_blocking=True),
            )
