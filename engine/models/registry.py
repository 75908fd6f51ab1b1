"""The model registry: which architectures exist and what each needs, without building any.

Owns ``ModelInfo`` and the listing from three sources: the built-in offline ``efficientnet_lite0``,
every torchvision classification model whose weights may be used commercially, and the curated timm
models (:mod:`engine.models.timm_models`, named ``timm:...``). Listing never instantiates a model
(nor imports timm): it reads the weights enums' metadata once and caches the result. The built-in and
timm entries are known without torchvision, so :func:`get_model_info` of one of them never imports it
(torchvision imports torch._dynamo: about 1 s of a command's start). Every entry
says where it comes from, its weights' licence and a published ImageNet figure with its source. Building a model is :mod:`engine.models.build`; weights files are
:mod:`engine.models.weights`.
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from engine.core.errors import ModelError
from engine.models import lite0, timm_models
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
    source: str = "torchvision"  # "built-in", "torchvision" or "timm"
    licence: str = "bsd-3-clause"
    published_top1: float | None = None  # ImageNet-1k top-1, %
    published_source: str | None = None
    size_multiple: int = 1  # input sizes must be multiples of this (a ViT's patch size)
    download_bytes: int | None = None  # the weights file's size, about, when it must be downloaded
    hub_repo: str | None = None  # the Hugging Face Hub repository of the weights (timm models)
    layer_decay: float | None = None  # fine-tuning's default layer-wise learning-rate decay (ViTs)
    self_supervised: bool = False  # features learnt without labels (DINOv2): the best frozen features

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


#: torchvision's SWAG weights (vit_h_14, regnet_y_128gf) are CC-BY-NC-4.0: left out of the catalog.
_NON_COMMERCIAL_WEIGHTS = "SWAG"
TORCHVISION_SOURCE = "torchvision weights metadata (ImageNet-1k acc@1)"


def _torchvision_info(name: str) -> ModelInfo | None:
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    if _NON_COMMERCIAL_WEIGHTS in str(weights) or _NON_COMMERCIAL_WEIGHTS in str(
        weights.meta.get("license", "")
    ):
        logger.info("Leaving %s out of the model catalog: its weights are for non-commercial use only", name)
        return None
    metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
    file_mb = weights.meta.get("_file_size")
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
        published_top1=float(metrics["acc@1"]) if "acc@1" in metrics else None,
        published_source=TORCHVISION_SOURCE if "acc@1" in metrics else None,
        download_bytes=int(float(file_mb) * 1024 * 1024) if file_mb else None,
    )


def _timm_info(model: timm_models.TimmEntry) -> ModelInfo:
    return ModelInfo(
        name=model.name,
        family=model.family,
        num_params=model.num_params,
        preprocessing=Preprocessing(
            model.resize_size,
            model.input_size,
            timm_models.IMAGENET_MEAN,
            timm_models.IMAGENET_STD,
            "bicubic",
        ),
        weights_name=f"{model.timm_name} (Hugging Face Hub {model.hub_repo})",
        weights_url=None,
        offline=False,
        min_input_size=-(-DEFAULT_MIN_INPUT_SIZE // model.size_multiple) * model.size_multiple,
        source="timm",
        licence=model.licence,
        published_top1=model.published_top1,
        published_source=model.published_source,
        size_multiple=model.size_multiple,
        download_bytes=model.download_bytes,
        hub_repo=model.hub_repo,
        layer_decay=model.layer_decay,
        self_supervised=model.self_supervised,
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
        source="built-in",
        licence=lite0.LICENCE,
        published_top1=lite0.PUBLISHED_TOP1,
        published_source=lite0.PUBLISHED_SOURCE,
    )


@functools.cache
def _known_without_torchvision() -> dict[str, ModelInfo]:
    """The built-in model and the curated timm models: every entry that torchvision has no part in."""
    infos = {lite0.NAME: _lite0_info()}
    for model in timm_models.CURATED:
        if timm_models.is_non_commercial(model.licence):  # never offered, whatever the list says
            logger.warning("Leaving %s out of the model catalog: licence %s", model.name, model.licence)
            continue
        infos[model.name] = _timm_info(model)
    return infos


@functools.cache
def _catalog() -> dict[str, ModelInfo]:
    import torchvision

    infos = dict(_known_without_torchvision())
    for name in torchvision.models.list_models(module=torchvision.models):
        try:
            info = _torchvision_info(name)
        except Exception:  # a model without usable ImageNet weights metadata cannot be offered
            logger.warning("Leaving %s out of the model catalog", name, exc_info=True)
            continue
        if info is not None:
            infos[name] = info
    return dict(sorted(infos.items()))


def list_models() -> list[ModelInfo]:
    """Every catalog model, sorted by name (cached after the first call)."""
    return list(_catalog().values())


def get_model_info(name: str) -> ModelInfo:
    """The catalog entry for ``name``; ModelError with a close-match suggestion when unknown."""
    known = _known_without_torchvision().get(name) if isinstance(name, str) else None
    if known is not None:
        return known
    catalog = _catalog()
    if name in catalog:
        return catalog[name]
    close = difflib.get_close_matches(str(name).lower(), list(catalog), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ModelError(f"Unknown model {name!r}.{hint} See the model list for every name.")
