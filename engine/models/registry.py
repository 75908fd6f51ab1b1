"""The model registry: which architectures exist and what each needs, without building any.

Owns ``ModelInfo`` and the listing: every torchvision classification model plus the built-in offline
``efficientnet_lite0``. Listing never instantiates a model: it reads the weights enums' metadata once
and caches the result. Building a model is :mod:`engine.models.build`; weights files are
:mod:`engine.models.weights`.
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import torchvision

from engine.core.errors import ModelError
from engine.models import lite0
from engine.models.preprocessing import Preprocessing

logger = logging.getLogger(__name__)

# Every catalog model's pretrained head predicts the ImageNet-1k classes.
PRETRAINED_NUM_CLASSES = 1000
DEFAULT_MIN_INPUT_SIZE = 32

# torchvision builder module (last dotted part) -> family shown to users; others are title-cased.
_FAMILY_NAMES = {
    "alexnet": "AlexNet",
    "convnext": "ConvNeXt",
    "densenet": "DenseNet",
    "efficientnet": "EfficientNet",
    "googlenet": "GoogLeNet",
    "inception": "Inception",
    "maxvit": "MaxViT",
    "mnasnet": "MNASNet",
    "mobilenetv2": "MobileNet V2",
    "mobilenetv3": "MobileNet V3",
    "regnet": "RegNet",
    "resnet": "ResNet",
    "shufflenetv2": "ShuffleNet V2",
    "squeezenet": "SqueezeNet",
    "swin_transformer": "Swin Transformer",
    "vgg": "VGG",
    "vision_transformer": "Vision Transformer",
}


@dataclass(frozen=True)
class ModelInfo:
    """One catalog entry. Cheap: made from metadata, no model is built."""

    name: str
    family: str
    num_params: int
    preprocessing: Preprocessing
    weights_name: str | None
    weights_url: str | None
    offline: bool
    min_input_size: int

    @property
    def input_size(self) -> int:
        return self.preprocessing.crop_size


def _family(module_name: str) -> str:
    key = module_name.rsplit(".", 1)[-1]
    return _FAMILY_NAMES.get(key, key.replace("_", " ").title())


def _three_floats(values: Iterable[float]) -> tuple[float, float, float]:
    """Per-channel (R, G, B) values, e.g. a torchvision transform's ``mean`` list, as floats."""
    red, green, blue = (float(v) for v in values)
    return red, green, blue


def _torchvision_info(name: str) -> ModelInfo:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    resize = transform.resize_size
    crop = transform.crop_size
    min_size = weights.meta.get("min_size")
    return ModelInfo(
        name=name,
        family=_family(torchvision.models.get_model_builder(name).__module__),
        num_params=int(weights.meta["num_params"]),
        preprocessing=Preprocessing(
            resize_size=int(resize[0] if isinstance(resize, (list, tuple)) else resize),
            crop_size=int(crop[0] if isinstance(crop, (list, tuple)) else crop),
            mean=_three_floats(transform.mean),
            std=_three_floats(transform.std),
            interpolation=transform.interpolation.value,
        ),
        weights_name=str(weights),
        weights_url=weights.url,
        offline=False,
        min_input_size=int(max(min_size)) if min_size else DEFAULT_MIN_INPUT_SIZE,
    )


def _lite0_info() -> ModelInfo:
    return ModelInfo(
        name=lite0.NAME,
        family=lite0.FAMILY,
        num_params=lite0.NUM_PARAMS,
        preprocessing=Preprocessing(
            lite0.RESIZE_SIZE, lite0.CROP_SIZE, lite0.MEAN, lite0.STD, lite0.INTERPOLATION
        ),
        weights_name=lite0.WEIGHTS_NAME,
        weights_url=None,
        offline=True,
        min_input_size=lite0.MIN_INPUT_SIZE,
    )


@functools.cache
def _catalog() -> dict[str, ModelInfo]:
    infos = {lite0.NAME: _lite0_info()}
    for name in torchvision.models.list_models(module=torchvision.models):
        try:
            infos[name] = _torchvision_info(name)
        except Exception:  # a model without usable ImageNet weights metadata cannot be offered
            logger.warning("Leaving %s out of the model catalog", name, exc_info=True)
    return dict(sorted(infos.items()))


def list_models() -> list[ModelInfo]:
    """Every catalog model, sorted by name (cached after the first call)."""
    return list(_catalog().values())


def get_model_info(name: str) -> ModelInfo:
    """The catalog entry for ``name``; ModelError with a close-match suggestion when unknown."""
    catalog = _catalog()
    if name in catalog:
        return catalog[name]
    close = difflib.get_close_matches(str(name).lower(), list(catalog), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ModelError(f"Unknown model {name!r}.{hint} See the model list for every name.")
