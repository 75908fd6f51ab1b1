"""The second model source: a curated list of timm models (Apache-2.0) and how to build them.

Owns which timm models the catalog offers (:data:`CURATED`: families that lead at their size, each
with its published ImageNet figure and its source, the weights' licence as timm tags it, and the
weights file on the Hugging Face Hub), and building one (:func:`build`). Catalog names are
``timm:<architecture>.<pretrained tag>``, e.g. ``timm:vit_small_patch14_dinov2.lvd142m``.

The facts are written here so that listing the catalog never imports timm (3 s); a test checks each
against timm's own metadata, and fails on any weights tagged with a non-commercial licence
(ConvNeXt-V2's are CC-BY-NC-4.0, so the ConvNeXt family here is timm's own Apache-2.0 training).

Vision transformers are wrapped in :class:`ClassTokenAndMeanPool`: their feature is the class token
beside the mean of the patch tokens (the DINOv2 paper's linear-probe feature), followed by a
1000-way linear layer like every other catalog model, so heads, the feature cache, calibration and
the audit treat them alike. They are built with ``dynamic_img_size`` so one set of weights takes any
input size that is a multiple of the patch size (:attr:`TimmEntry.size_multiple`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.core.errors import ModelError

logger = logging.getLogger(__name__)

PREFIX = "timm:"
#: Licence tags (timm's ``pretrained_cfg["license"]``) that forbid commercial use.
NON_COMMERCIAL_LICENCES = ("cc-by-nc", "non-commercial", "noncommercial", "research-only")
#: Layer-wise learning-rate decay for fine-tuning a vision transformer (BEiT / MAE / DINOv2 recipes
#: use 0.65-0.75 for ViT-S/B): each block learns at this times the rate of the block after it.
VIT_LAYER_DECAY = 0.75
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TimmEntry:
    """One curated timm model. ``num_params`` counts the model as built with a 1000-way head;
    ``weights_params`` the tensors in the Hub file (a DINOv2 file has no classifier)."""

    name: str  # timm:<architecture>.<tag>
    family: str
    num_params: int
    weights_params: int
    input_size: int
    resize_size: int
    licence: str
    published_top1: float
    published_source: str
    vit: bool = False
    size_multiple: int = 1
    self_supervised: bool = False  # trained without labels: features for any kind of photo

    @property
    def timm_name(self) -> str:
        """``<architecture>.<tag>``, timm's name of the pretrained weights."""
        return self.name.removeprefix(PREFIX)

    @property
    def architecture(self) -> str:
        return self.timm_name.split(".", 1)[0]

    @property
    def hub_repo(self) -> str:
        return f"timm/{self.timm_name}"

    @property
    def download_bytes(self) -> int:
        """About the size of the Hub's float32 safetensors file."""
        return self.weights_params * 4

    @property
    def layer_decay(self) -> float | None:
        return VIT_LAYER_DECAY if self.vit else None


_TIMM_RESULTS = "timm results-imagenet.csv, ImageNet-1k top-1 at {}px"
_DINOV2 = "DINOv2 paper (Oquab et al. 2023) Table 4: ImageNet-1k linear probe on frozen features"

#: Two or three sizes per family, smallest first. DINOv2 runs at 224 px (16 x 16 patches of 14 px),
#: not its 518 px pre-training size: 5x fewer tokens, and what its linear-probe tables use.
CURATED: tuple[TimmEntry, ...] = (
    TimmEntry("timm:vit_small_patch14_dinov2.lvd142m", "DINOv2", 22_825_192, 22_056_192, 224, 256,
              "apache-2.0", 81.1, _DINOV2, vit=True, size_multiple=14, self_supervised=True),
    TimmEntry("timm:vit_base_patch14_dinov2.lvd142m", "DINOv2", 88_116_712, 86_579_712, 224, 256,
              "apache-2.0", 84.5, _DINOV2, vit=True, size_multiple=14, self_supervised=True),
    TimmEntry("timm:convnext_atto.d2_in1k", "ConvNeXt (timm)", 3_695_520, 3_695_520, 224, 256,
              "apache-2.0", 75.672, _TIMM_RESULTS.format(224)),
    TimmEntry("timm:convnext_nano.in12k_ft_in1k", "ConvNeXt (timm)", 15_593_560, 15_593_560, 224, 236,
              "apache-2.0", 82.306, _TIMM_RESULTS.format(224)),
    TimmEntry("timm:convnext_tiny.in12k_ft_in1k", "ConvNeXt (timm)", 28_589_128, 28_589_128, 224, 236,
              "apache-2.0", 84.192, _TIMM_RESULTS.format(224)),
    TimmEntry("timm:tf_efficientnetv2_b0.in1k", "EfficientNetV2", 7_139_704, 7_139_704, 224, 256,
              "apache-2.0", 78.386, _TIMM_RESULTS.format(224)),
    TimmEntry("timm:efficientnetv2_rw_t.ra2_in1k", "EfficientNetV2", 13_649_388, 13_649_388, 224, 224,
              "apache-2.0", 81.370, _TIMM_RESULTS.format(224)),
    TimmEntry("timm:mobilenetv4_conv_small.e2400_r224_in1k", "MobileNetV4", 3_774_024, 3_774_024, 224,
              256, "apache-2.0", 73.756, _TIMM_RESULTS.format(224)),
    TimmEntry("timm:mobilenetv4_hybrid_medium.ix_e550_r256_in1k", "MobileNetV4", 11_074_648, 11_074_648,
              256, 269, "apache-2.0", 81.478, _TIMM_RESULTS.format(256)),
    TimmEntry("timm:regnety_008_tv.tv2_in1k", "RegNetY", 6_432_512, 6_432_512, 224, 232,
              "bsd-3-clause", 78.672, _TIMM_RESULTS.format(224)),
    TimmEntry("timm:regnety_032.ra_in1k", "RegNetY", 19_436_338, 19_436_338, 224, 236,
              "apache-2.0", 81.948, _TIMM_RESULTS.format(224)),
)  # fmt: skip

_BY_NAME = {entry.name: entry for entry in CURATED}


def is_timm_name(name: str) -> bool:
    return str(name).startswith(PREFIX)


def entry(name: str) -> TimmEntry | None:
    return _BY_NAME.get(name)


def is_non_commercial(licence: str) -> bool:
    text = licence.lower()
    return any(tag in text for tag in NON_COMMERCIAL_LICENCES)


class ClassTokenAndMeanPool(nn.Module):
    """A vision transformer whose feature is its class token beside the mean of its patch tokens,
    then a linear ``head`` (1000-way as built; replaced by the app's head like any other)."""

    def __init__(self, backbone: nn.Module, num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = backbone
        width = int(backbone.embed_dim)  # type: ignore[arg-type]
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone.forward_features(x)  # type: ignore[operator]  # [B, prefix + patches, C], normed
        prefix = int(self.backbone.num_prefix_tokens)  # type: ignore[arg-type]
        pooled = torch.cat([tokens[:, 0], tokens[:, prefix:].mean(dim=1)], dim=1)
        return self.head(pooled)


def vit_depths(model: nn.Module) -> dict[str, int] | None:
    """For a wrapped vision transformer, each parameter's depth: 0 for the patch embedding and the
    class, register and position tokens, ``i + 1`` for block ``i``, ``len(blocks) + 1`` for the final
    norm and the head (timm's own grouping for layer-wise decay). None for any other model."""
    if not isinstance(model, ClassTokenAndMeanPool):
        return None
    blocks = len(model.backbone.blocks)  # type: ignore[arg-type]
    depths: dict[str, int] = {}
    for name, _param in model.named_parameters():
        parts = name.split(".")
        if parts[0] == "backbone" and len(parts) > 2 and parts[1] == "blocks":
            depths[name] = int(parts[2]) + 1
        elif parts[0] == "backbone" and parts[1] in ("cls_token", "reg_token", "pos_embed", "patch_embed"):
            depths[name] = 0
        else:
            depths[name] = blocks + 1
    return depths


def _timm() -> object:
    try:
        import timm
    except ImportError as exc:
        raise ModelError(f"timm models need the timm package (pip install timm): {exc}") from None
    return timm


def build(model: TimmEntry, weights_file: Path | None) -> nn.Module:
    """The model with a 1000-way head; with ``weights_file`` (the Hub's safetensors) its weights
    loaded through timm's own checkpoint filter (which e.g. resamples a ViT's position embedding)."""
    timm = _timm()
    kwargs: dict[str, object] = {}
    if model.vit:
        kwargs.update(num_classes=0, global_pool="", dynamic_img_size=True)
    else:
        kwargs.update(num_classes=1000)
    if weights_file is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights_file)})
    try:
        net = timm.create_model(model.timm_name, **kwargs)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: one line, not a traceback
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        where = f" from {weights_file}" if weights_file is not None else ""
        raise ModelError(f"Cannot build {model.name}{where}: {reason}") from None
    return ClassTokenAndMeanPool(net) if model.vit else net
