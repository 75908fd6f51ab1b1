"""The model catalog: which architectures exist, how to preprocess for them, and how to build them.

Owns ``Preprocessing`` / ``ModelInfo``, the listing (every torchvision classification model plus the
built-in offline ``efficientnet_lite0``), the weights-cache status, ``build_model`` with its generic
classification-head replacement, and the head/backbone parameter split the trainer's strategies use.
Listing never instantiates a model: it reads the weights enums' metadata once and caches the result.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from engine import lite0
from engine.errors import ModelError

logger = logging.getLogger(__name__)

# Every catalog model's pretrained head predicts the ImageNet-1k classes.
PRETRAINED_NUM_CLASSES = 1000
DEFAULT_MIN_INPUT_SIZE = 32
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")

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
        pre = cls(int(data["resize_size"]), int(data["crop_size"]), mean, std, interpolation)  # type: ignore[arg-type]
        if pre.resize_size < 1 or pre.crop_size < 1 or min(std) <= 0:
            raise ValueError("sizes and std must be positive")
        return pre


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
            mean=tuple(float(v) for v in transform.mean),  # type: ignore[arg-type]
            std=tuple(float(v) for v in transform.std),  # type: ignore[arg-type]
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


def weights_cache_dir() -> Path:
    """Where torch hub keeps downloaded weights (``$TORCH_HOME/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_status(name: str) -> str:
    """ "offline" (built in), "cached" (already downloaded) or "download" (needs the internet)."""
    info = get_model_info(name)
    if info.offline:
        return "offline"
    if info.weights_url and (weights_cache_dir() / _url_basename(info.weights_url)).is_file():
        return "cached"
    return "download"


def _url_basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def build_model(
    name: str, num_classes: int, *, pretrained: bool, replace_head: bool = True
) -> tuple[nn.Module, list[str]]:
    """Build ``name`` and give it a fresh ``num_classes``-way head.

    ``pretrained`` loads the ImageNet weights (torchvision's download/cache, or the built-in
    file for the offline model). Every classification head -- any ``nn.Linear`` or 1x1
    ``nn.Conv2d`` with 1000 outputs, auxiliary heads included -- is replaced by a freshly
    initialised layer of the same kind. Returns the model and the heads' qualified module names.
    ``replace_head=False`` keeps the original 1000-class ImageNet heads (``num_classes`` must
    then be 1000), e.g. to check what the pretrained model recognises.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"A model needs at least one class, got num_classes={num_classes!r}")
    info = get_model_info(name)
    if info.offline:
        model = lite0.build(pretrained=pretrained)
    elif pretrained:
        model = _build_pretrained(info)
    else:
        model = _build_scratch(info)
    heads = find_head_modules(model, PRETRAINED_NUM_CLASSES)
    if not heads:
        raise ModelError(f"Cannot find the classification head of {name}")
    if replace_head:
        for head in heads:
            _replace_head(model, head, num_classes)
    elif num_classes != PRETRAINED_NUM_CLASSES:
        raise ModelError(
            f"Keeping the ImageNet head of {name} means {PRETRAINED_NUM_CLASSES} classes, not {num_classes}"
        )
    logger.debug("Built %s (pretrained=%s), heads %s", name, pretrained, heads)
    return model, heads


def _build_pretrained(info: ModelInfo) -> nn.Module:
    from engine import weights as weights_files  # lazy: engine.weights imports this module

    weights = torchvision.models.get_model_weights(info.name).DEFAULT
    # The cached file, or a verified atomic download (WeightsError, one line, if neither); torchvision
    # then loads it from the cache without downloading again.
    weights_files.download_weights(info.name)
    try:
        return torchvision.models.get_model(info.name, weights=weights, progress=False)
    except Exception as exc:  # noqa: BLE001 - no network, HTTP error, bad/partial/corrupt file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(
            f"Cannot get the pretrained weights of {info.name} from {info.weights_url} "
            f"(cache folder {weights_cache_dir()}): {reason}. Connect to the internet once, "
            "copy the file into that folder, or train from scratch."
        ) from None


# A from-scratch model must be the same network as the pretrained one -- same state-dict keys,
# same forward() -- because bundles are rebuilt with pretrained=False and then loaded strictly.
# Generic builder keywords: explicit weight init (GoogLeNet/Inception warn without it) and the
# default weights' input size for fixed-size models (vit_h_14 is 518 px). A builder that does not
# take one raises TypeError naming it, and it is dropped.
_UNEXPECTED_KWARG = re.compile(r"unexpected keyword argument '(\w+)'")
# Builders that change the network when they load ImageNet weights (their `if weights is not
# None:` blocks): both switch on transform_input (re-normalise ImageNet-normalised input the way
# the ported weights expect) and googlenet drops its aux heads, which are not pretrained.
_AS_PRETRAINED: dict[str, dict[str, Any]] = {
    "googlenet": {"transform_input": True, "aux_logits": False},
    "inception_v3": {"transform_input": True},
}


def _build_scratch(info: ModelInfo) -> nn.Module:
    optional: dict[str, Any] = {"init_weights": True, "image_size": info.input_size}
    required = _AS_PRETRAINED.get(info.name, {})
    while True:
        try:
            return torchvision.models.get_model(info.name, weights=None, **optional, **required)
        except TypeError as exc:
            match = _UNEXPECTED_KWARG.search(str(exc))
            if not match or match.group(1) not in optional:
                raise
            del optional[match.group(1)]


def find_head_modules(model: nn.Module, num_outputs: int = PRETRAINED_NUM_CLASSES) -> list[str]:
    """Qualified names of every ``nn.Linear`` / 1x1 ``nn.Conv2d`` with ``num_outputs`` outputs."""
    return [qname for qname, module in model.named_modules() if _is_head(module, num_outputs)]


def _is_head(module: nn.Module, num_outputs: int) -> bool:
    if isinstance(module, nn.Linear):
        return module.out_features == num_outputs
    if isinstance(module, nn.Conv2d):
        return module.out_channels == num_outputs and module.kernel_size == (1, 1) and module.groups == 1
    return False


def _replace_head(model: nn.Module, qname: str, num_classes: int) -> None:
    old = model.get_submodule(qname)
    factory = {"device": old.weight.device, "dtype": old.weight.dtype}
    new: nn.Module
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, **factory)
    else:
        assert isinstance(old, nn.Conv2d)
        new = nn.Conv2d(
            old.in_channels,
            num_classes,
            kernel_size=old.kernel_size,  # type: ignore[arg-type]
            stride=old.stride,  # type: ignore[arg-type]
            padding=old.padding,  # type: ignore[arg-type]
            dilation=old.dilation,  # type: ignore[arg-type]
            bias=old.bias is not None,
            **factory,
        )
    parent_name, _, attr = qname.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def head_parameter_names(model: nn.Module, head_names: list[str]) -> set[str]:
    """Qualified parameter names (as in ``model.named_parameters()``) belonging to the heads."""
    return {
        f"{head}.{pname}" for head in head_names for pname, _ in model.get_submodule(head).named_parameters()
    }


def split_head_backbone_params(
    model: nn.Module, head_names: list[str]
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(head parameters, backbone parameters), each in model order, every parameter once."""
    head_ids = {id(p) for head in head_names for p in model.get_submodule(head).parameters()}
    head: list[nn.Parameter] = []
    backbone: list[nn.Parameter] = []
    for param in model.parameters():
        (head if id(param) in head_ids else backbone).append(param)
    return head, backbone


def trainable_head_parameters(model: nn.Module, head_names: list[str]) -> list[nn.Parameter]:
    """The heads' parameters (what feature extraction trains)."""
    return split_head_backbone_params(model, head_names)[0]
