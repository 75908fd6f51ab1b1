"""How images are prepared for a model: the ``Preprocessing`` facts and the eval-time transform.

Resize the shorter side, centre-crop, normalise: what a model sees at validation, evaluation and
prediction time, and which views of it are averaged there (``tta``: :mod:`engine.models.tta`).
Training's augmentation lives in :mod:`engine.training.pipeline`.

The eval transform of an RGB photo is computed here with PIL and torch alone, giving the very tensor
torchvision's ``Resize``, ``CenterCrop``, ``ToTensor`` and ``Normalize`` give (the same PIL calls, the
same arithmetic), so classifying a photo never imports torchvision: its import pulls in torch._dynamo,
about 1 s of ``predict``'s start. Anything else (another colour mode, a tensor, a crop larger than the
resize) goes through torchvision itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from engine.core.config import TTA_MODES

if TYPE_CHECKING:
    from torchvision.transforms import InterpolationMode

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


#: The PIL filter torchvision resizes a PIL image with, for each interpolation.
_PIL_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}

ImageTransform = Callable[[Image.Image], torch.Tensor]


def interpolation_mode(pre: Preprocessing) -> InterpolationMode:
    """torchvision's name for the interpolation (bilinear for one it does not know)."""
    from torchvision.transforms import InterpolationMode

    modes = {
        "bilinear": InterpolationMode.BILINEAR,
        "bicubic": InterpolationMode.BICUBIC,
        "nearest": InterpolationMode.NEAREST,
    }
    return modes.get(pre.interpolation, InterpolationMode.BILINEAR)


def resize_shorter_side(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    """The PIL image with its shorter side resized to ``size`` and the longer one in proportion (rounded
    down), as ``torchvision.transforms.functional.resize(image, size, ...)`` does it: the same size and
    the same PIL call, and the image itself when it has that size already."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_width, new_height) == (width, height):
        return image
    return image.resize((new_width, new_height), _PIL_FILTERS.get(interpolation, Image.Resampling.BILINEAR))


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The centre ``size`` square of a PIL image at least that large each way, at the position
    ``torchvision.transforms.functional.center_crop`` takes it."""
    width, height = image.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


class EvalTransform:
    """Resize, centre-crop, normalise (:func:`eval_transform`): an RGB PIL image in, ``[3, crop, crop]``
    floats out. Thread-safe."""

    def __init__(self, pre: Preprocessing) -> None:
        self.pre = pre
        self._torchvision: ImageTransform | None = None

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pre = self.pre
        if not isinstance(image, Image.Image) or image.mode != "RGB" or pre.crop_size > pre.resize_size:
            return self.torchvision_transform()(image)
        image = resize_shorter_side(image, pre.resize_size, pre.interpolation)
        image = center_crop(center_crop(image, pre.resize_size), pre.crop_size)
        # ToTensor, then Normalize, step for step.
        pixels = torch.from_numpy(np.array(image, np.uint8, copy=True))
        tensor = pixels.view(image.size[1], image.size[0], 3).permute((2, 0, 1)).contiguous()
        tensor = tensor.to(dtype=torch.get_default_dtype()).div(255)
        mean = torch.as_tensor(pre.mean, dtype=tensor.dtype)
        std = torch.as_tensor(pre.std, dtype=tensor.dtype)
        if (std == 0).any():
            raise ValueError(
                f"std evaluated to zero after conversion to {tensor.dtype}, leading to division by zero."
            )
        return tensor.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))

    def torchvision_transform(self) -> ImageTransform:
        """The same transform made of torchvision's (what any other input goes through)."""
        if self._torchvision is None:
            from torchvision import transforms as T

            pre = self.pre
            self._torchvision = T.Compose(
                [
                    T.Resize(pre.resize_size, interpolation=interpolation_mode(pre), antialias=True),
                    T.CenterCrop(pre.resize_size),
                    T.CenterCrop(pre.crop_size),
                    T.ToTensor(),
                    T.Normalize(pre.mean, pre.std),
                ]
            )
        return self._torchvision

    def __repr__(self) -> str:
        return f"EvalTransform({self.pre!r})"


def eval_transform(pre: Preprocessing) -> ImageTransform:
    """Resize, centre-crop, normalise: what the model sees at validation and prediction time.

    The crop is taken in two steps, as training's decoded-image cache does (a ``resize_size`` square,
    then its centre ``crop_size``): where ``resize_size - crop_size`` is odd a single centre crop would
    round to a position one pixel away, and validation, evaluation and prediction would disagree.
    """
    return EvalTransform(pre)
