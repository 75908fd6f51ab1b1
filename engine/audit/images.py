"""Per-photo measurements for the dataset audit: hashes for duplicates and the photo-quality flags.

Each photo is decoded once, by :class:`AuditImageCache` while the feature pass needs it anyway (or by
:func:`measure_file` when its features were already cached), with the same JPEG draft decode as
training. :func:`measure` then takes, from that decoded image:

- ``pixel_hash``: a digest of the decoded pixels plus the file's full size: equal for exact copies;
- ``phash``: the 64-bit perceptual hash (imagehash's pHash) of the grey image;
- on a grey copy resized so its shorter side is :data:`QUALITY_SIDE` px (about the scale the model
  sees; smaller photos are scaled up, as the model would see them): mean brightness, standard
  deviation and the variance of the 4-neighbour Laplacian (sharpness).

:func:`quality_issues` turns measurements into flags; the thresholds are below, with the evidence in
:mod:`engine.audit.run`'s docstring.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from engine.core.errors import UnreadableImageError
from engine.data.datasets import Sample
from engine.data.images import open_image
from engine.models.preprocessing import Preprocessing, interpolation_mode
from engine.training.image_cache import DecodedImageCache

#: Quality measurements are taken on a grey copy whose shorter side is this many pixels.
QUALITY_SIDE = 256
#: Mean brightness (0..1) at or below which a photo is "dark", at or above which it is "bright".
DARK_BELOW = 0.10
BRIGHT_ABOVE = 0.92
#: Standard deviation of grey levels (0..255) below which a photo is "uniform" (nearly one colour).
UNIFORM_BELOW = 6.0
#: Variance of the Laplacian (grey levels, at QUALITY_SIDE) below which a photo is "blurry" ...
BLURRY_BELOW = 25.0
#: ... or below this fraction of the dataset's median (a set of sharp photos makes a soft one stand out).
BLURRY_RELATIVE = 0.05
#: Photos whose shorter side is below this many pixels are "tiny".
TINY_BELOW = 64
#: Longer side / shorter side above this is an "extreme_aspect" (a centre crop keeps under a third).
ASPECT_ABOVE = 3.0

QUALITY_ISSUES = ("unreadable", "tiny", "extreme_aspect", "uniform", "dark", "bright", "blurry")


@dataclass(frozen=True)
class ImageStats:
    """What the audit measured on one photo."""

    width: int  # the file's full size, EXIF orientation applied
    height: int
    pixel_hash: str
    phash: int
    brightness: float  # mean grey level, 0..1
    contrast: float  # standard deviation of grey levels, 0..255
    sharpness: float  # variance of the Laplacian, grey levels at QUALITY_SIDE


def full_size(path: Path) -> tuple[int, int]:
    """The file's width and height from its header, EXIF orientation applied (no decoding)."""
    with Image.open(path) as im:
        width, height = im.size
        try:
            orientation = int(im.getexif().get(0x0112, 1))
        except Exception:  # noqa: BLE001 - broken EXIF: open_image ignores it too
            orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _hash_bits(value: imagehash.ImageHash) -> int:
    bits = np.asarray(value.hash, dtype=np.uint8).reshape(-1)
    return int("".join("1" if b else "0" for b in bits), 2)


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a 2-D float array (0.0 for tiny arrays)."""
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4.0 * grey[1:-1, 1:-1]
    return float(lap.var())


def measure(image: Image.Image, size: tuple[int, int]) -> ImageStats:
    """Measure a decoded RGB photo; ``size`` is the file's full (width, height)."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.size}|{size}".encode())
    grey = image.convert("L")
    w, h = grey.size
    scale = QUALITY_SIDE / max(1, min(w, h))
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = grey.resize(target, Image.Resampling.BILINEAR, reducing_gap=3.0)
    pixels = np.asarray(small, dtype=np.float32)
    return ImageStats(
        width=size[0],
        height=size[1],
        pixel_hash=digest.hexdigest(),
        phash=_hash_bits(imagehash.phash(small)),
        brightness=float(pixels.mean()) / 255.0,
        contrast=float(pixels.std()),
        sharpness=laplacian_variance(pixels),
    )


def measure_file(path: Path, min_size: int) -> ImageStats:
    """Decode ``path`` as training does (draft size ``min_size``) and measure it."""
    image = open_image(path, min_size=min_size)
    try:
        return measure(image, _size_or(path, image))
    finally:
        image.close()


def _size_or(path: Path, image: Image.Image) -> tuple[int, int]:
    try:
        return full_size(path)
    except Exception:  # noqa: BLE001 - open_image read it, so this only fails on a race
        return image.size


def quality_issues(stats: ImageStats, median_sharpness: float) -> list[tuple[str, float]]:
    """The quality flags of one photo as ``(issue, value)``; see the thresholds above.

    A uniform photo is not also called blurry (it has no edges to be sharp or soft).
    """
    issues: list[tuple[str, float]] = []
    short, long = min(stats.width, stats.height), max(stats.width, stats.height)
    if short < TINY_BELOW:
        issues.append(("tiny", float(short)))
    if short > 0 and long / short > ASPECT_ABOVE:
        issues.append(("extreme_aspect", round(long / short, 3)))
    uniform = stats.contrast < UNIFORM_BELOW
    if uniform:
        issues.append(("uniform", round(stats.contrast, 3)))
    if stats.brightness <= DARK_BELOW:
        issues.append(("dark", round(stats.brightness, 4)))
    if stats.brightness >= BRIGHT_ABOVE:
        issues.append(("bright", round(stats.brightness, 4)))
    if not uniform and (
        stats.sharpness < BLURRY_BELOW or stats.sharpness < BLURRY_RELATIVE * median_sharpness
    ):
        issues.append(("blurry", round(stats.sharpness, 3)))
    return issues


class AuditImageCache(DecodedImageCache):
    """A decoded-image cache that measures each photo while the feature pass decodes it.

    It keeps no image in memory (the feature pass decodes each image once, for all of its views) and
    returns exactly the tensor :class:`DecodedImageCache` would (a test checks it), so the features it
    feeds are the ones a training run computes. Measurements land in :attr:`stats` by sample index.
    """

    def __init__(self, samples: Sequence[Sample], preprocessing: Preprocessing, threads: int = 2) -> None:
        super().__init__(samples, preprocessing, budget_bytes=0, threads=threads)
        self.stats: dict[int, ImageStats] = {}
        self._stats_lock = threading.Lock()

    def decode(self, index: int) -> torch.Tensor | None:
        if index in self.failed:
            return None
        path = self.samples[index].path
        try:
            image = open_image(path, min_size=self.size)  # the same decode as DecodedImageCache
            stats = measure(image, _size_or(path, image))
            # DecodedImageCache.decode's pixels: shorter side to resize_size, centre square, uint8 CHW.
            image = TF.resize(image, self.size, interpolation=interpolation_mode(self.pre), antialias=True)
            image = TF.center_crop(image, [self.size, self.size])
            tensor = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        except UnreadableImageError as exc:
            with self._stats_lock:
                self.failed[index] = exc.reason
            return None
        with self._stats_lock:
            self.stats[index] = stats
        return tensor.contiguous()
