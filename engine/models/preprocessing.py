"""How images are prepared for a model: the ``Preprocessing`` facts and the eval-time transform.

Resize the shorter side, centre-crop, normalise: what a model sees at validation, evaluation and
prediction time, and which views of it are averaged there (``tta``: :mod:`engine.models.tta`).
Training's augmentation lives in :mod:`engine.training.pipeline`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T

from engine.core.config import TTA_MODES

#: Crop size / resize size when a run asks for another input size than the model's (224 / 256).
CROP_FRACTION = 0.875
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for a model: resize shorter side, centre-crop, normalise; and the
    test-time augmentation whose views' logits are averaged (``"none"`` or ``"flip"``)."""

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"  # "bilinear" | "bicubic" | "nearest"
    tta: str = "none"  # one of engine.core.config.TTA_MODES

    def to_dict(self) -> dict[str, Any]:
        """The facts as JSON; ``tta`` only when it is not ``none``, so a plain preprocessing reads
        exactly as it did before test-time augmentation existed (bundles, feature-cache keys)."""
        values: dict[str, Any] = {
            "resize_size": self.resize_size,
            "crop_size": self.crop_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }
        if self.tta != "none":
            values["tta"] = self.tta
        return values

    def with_input_size(self, size: int) -> Preprocessing:
        """The same preprocessing for a ``size``-pixel crop (resize ``size / CROP_FRACTION``); itself
        for 0 or its own crop size."""
        if size in (0, self.crop_size):
            return self
        return dataclasses.replace(self, resize_size=round(size / CROP_FRACTION), crop_size=size)

    def with_tta(self, tta: str) -> Preprocessing:
        """The same preprocessing with test-time augmentation ``tta``."""
        if tta not in TTA_MODES:
            raise ValueError(f"unknown test-time augmentation {tta!r}")
        return dataclasses.replace(self, tta=tta)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Inverse of ``to_dict``; raises KeyError / ValueError / TypeError on bad input."""
        mean = tuple(float(v) for v in data["mean"])
        std = tuple(float(v) for v in data["std"])
        interpolation = str(data.get("interpolation", "bilinear"))
        tta = str(data.get("tta", "none"))
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean and std need 3 values")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}")
        if tta not in TTA_MODES:
            raise ValueError(f"unknown test-time augmentation {tta!r}")
        pre = cls(int(data["resize_size"]), int(data["crop_size"]), mean, std, interpolation, tta)
        if pre.resize_size < 1 or pre.crop_size < 1 or min(std) <= 0:
            raise ValueError("sizes and std must be positive")
        return pre


_INTERPOLATION = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
}

ImageTransform = Callable[[Image.Image], torch.Tensor]


def interpolation_mode(pre: Preprocessing) -> T.InterpolationMode:
    return _INTERPOLATION.get(pre.interpolation, T.InterpolationMode.BILINEAR)


def eval_transform(pre: Preprocessing) -> ImageTransform:
    """Resize, centre-crop, normalise: what the model sees at validation and prediction time.

    The crop is taken in two steps, as training's decoded-image cache does (a ``resize_size`` square,
    then its centre ``crop_size``): where ``resize_size - crop_size`` is odd a single centre crop would
    round to a position one pixel away, and validation, evaluation and prediction would disagree.
    """
    return T.Compose(
        [
            T.Resize(pre.resize_size, interpolation=interpolation_mode(pre), antialias=True),
            T.CenterCrop(pre.resize_size),
            T.CenterCrop(pre.crop_size),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )
