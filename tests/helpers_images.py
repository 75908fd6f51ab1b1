"""Test helper shared by all test modules: synthetic image folders made at run time.

Import it as ``from helpers_images import make_image_folder`` (pytest puts ``tests/`` on sys.path).
Each class gets its own base colour plus mild noise, so even a tiny model learns the classes.
"""

from __future__ import annotations

import colorsys
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

#: The input size tests train and predict at when the photos' size is not what they test: the synthetic
#: photos are 48 px, and 64 px keeps the whole network at work for a twelfth of 224 px's time.
SMALL_INPUT = 64

_PALETTE = [
    (220, 40, 40),
    (40, 180, 60),
    (40, 70, 220),
    (230, 210, 40),
    (200, 50, 200),
    (40, 200, 210),
    (240, 140, 30),
    (120, 120, 120),
]


def class_colour(index: int) -> tuple[int, int, int]:
    """A distinct RGB colour for class number ``index``."""
    if index < len(_PALETTE):
        return _PALETTE[index]
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.8, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def make_image(colour: tuple[int, int, int], size: tuple[int, int] = (48, 48), seed: int = 0) -> Image.Image:
    """An RGB image of ``size`` (width, height): ``colour`` with noise and a darker square."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = np.empty((h, w, 3), dtype=np.float32)
    arr[:] = colour
    arr += rng.normal(0.0, 12.0, size=arr.shape)
    x0, y0 = int(rng.integers(0, max(1, w // 2))), int(rng.integers(0, max(1, h // 2)))
    arr[y0 : y0 + h // 3, x0 : x0 + w // 3] *= 0.6
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")


def make_image_folder(
    root: str | Path,
    classes: Mapping[str, int | Mapping[str, int]] | None = None,
    splits: Sequence[str] | None = ("train", "val"),
    size: tuple[int, int] = (48, 48),
    seed: int = 0,
) -> Path:
    """Write a synthetic image dataset under ``root`` and return ``root`` as a Path.

    ``classes`` maps class name -> number of images (default ``{"cats": 6, "dogs": 6}``); the
    number is per split, or a ``{split: n}`` mapping. With ``splits=None`` the flat layout
    ``root/<class>/...`` is written, else ``root/<split>/<class>/...``. Files alternate between
    JPEG and PNG; class ``i`` (in the mapping's order) has colour :func:`class_colour(i)`.
    """
    root = Path(root)
    classes = {"cats": 6, "dogs": 6} if classes is None else classes
    rng = random.Random(seed)
    folders: list[tuple[str | None, Path]] = (
        [(None, root)] if splits is None else [(s, root / s) for s in splits]
    )
    for split, base in folders:
        for index, (name, spec) in enumerate(classes.items()):
            n = spec if isinstance(spec, int) else spec.get(split or "", 0)
            folder = base / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = make_image(class_colour(index), size, seed=rng.randrange(2**31))
                if i % 2 == 0:
                    img.save(folder / f"{name}_{i:03d}.jpg", quality=90)
                else:
                    img.save(folder / f"{name}_{i:03d}.png")
    return root
