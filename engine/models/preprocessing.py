"""How images are prepared for a model: the ``Preprocessing`` facts and the eval-time transform.

Resize the shorter side, centre-crop, normalise: what a model sees at validation, evaluation and
prediction time. Training's augmentation lives in :mod:`engine.training.pipeline`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for a model: resize shorter side, centre-crop, normalise."""

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"  # "bilinear" | "bicubic" | "nearest"

    def to_dict(self) -> dict[str, Any]:
        return {
            "resize_size": self.resize_size,
            "crop_size": self.crop_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Inverse of ``to_dict``; raises KeyError / ValueError / TypeError on bad input."""
        mean = tuple(float(v) for v in data["mean"])
        std = tuple(float(v) for v in data["std"])
        interpolation = str(data.get("interpolation", "bilinear"))
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean and std need 3 values")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}")
        pre = cls(int(data["resize_size"]), int(data["crop_size"]), mean, std, interpolation)
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
    """Resize, centre-crop, normalise: what the model sees at validation and prediction time."""
    return T.Compose(
        [
            T.Resize(pre.resize_size, interpolation=interpolation_mode(pre), antialias=True),
            T.CenterCrop(pre.crop_size),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )
