"""Image preprocessing for training and inference, derived from a model's ``Preprocessing``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms as T

from engine.catalog import Preprocessing

_INTERPOLATION = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
}

# Random-resized-crop scale range: milder than ImageNet's (0.08, 1), which throws away too much of
# the object on the small, photo-like datasets this app is for.
AUGMENT_SCALE = (0.35, 1.0)

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


def train_transform(pre: Preprocessing, augment: bool) -> ImageTransform:
    """Random resized crop and horizontal flip when ``augment``, else the eval transform."""
    if not augment:
        return eval_transform(pre)
    return T.Compose(
        [
            T.RandomResizedCrop(
                pre.crop_size, scale=AUGMENT_SCALE, interpolation=interpolation_mode(pre), antialias=True
            ),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )
