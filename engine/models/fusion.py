"""A frozen network rewritten for inference: fewer, cheaper layers with the same answers.

Owns two rewrites of a network in eval mode, neither of which changes what it computes (only the
float rounding):

- each ``BatchNorm2d`` that directly follows a convolution is folded into that convolution's weights
  and bias (the convolution then does both);
- a TensorFlow-style "same"-padding convolution at stride 1 (the built-in EfficientNet-Lite's), which
  pads its input on every call, gets the same padding as its own, symmetric ``padding``.

(Clipping EfficientNet-Lite's ReLU6 in place was measured too: slower in bfloat16, 8.0 -> 9.7 ms per
photo at 288 px, so it is not done.)

On the built-in model at 288 px this made the frozen backbone 1.6x as fast in bfloat16 and 2x in
float32 (BENCHMARKS.md, "Issue 26"). The rewrite changes the float sums, so every feature pass
(training's, the audit's, sorting's) computes fused, and a bundle whose validation came from fused
features says so (``Bundle.fused``): :class:`~engine.inference.predict.Predictor` fuses it the same
way and answers exactly as the run's validation did.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fuse_for_inference", "fused_copy", "fuses"]

#: ``(convolution, its batch norm)`` attribute pairs of blocks whose forward applies the norm straight
#: after the convolution: EfficientNet-Lite's blocks, stem and head, and ResNet's (torchvision's and timm's).
CONV_NORM_ATTRIBUTES = (
    ("_expand_conv", "_bn0"),
    ("_depthwise_conv", "_bn1"),
    ("_project_conv", "_bn2"),
    ("_conv_stem", "_bn0"),
    ("_conv_head", "_bn1"),
    ("conv1", "bn1"),
    ("conv2", "bn2"),
    ("conv3", "bn3"),
)


def _fold(parent: nn.Module, conv_name: str, norm_name: str) -> bool:
    """Fold ``parent.<norm_name>`` into ``parent.<conv_name>`` where it can be; whether it was."""
    conv, norm = parent._modules.get(conv_name), parent._modules.get(norm_name)
    # Exactly BatchNorm2d: subclasses (timm's BatchNormAct2d) also apply an activation.
    if not isinstance(conv, nn.Conv2d) or type(norm) is not nn.BatchNorm2d:
        return False
    assert isinstance(norm, nn.BatchNorm2d)
    if norm.running_mean is None or conv.out_channels != norm.num_features:
        return False
    parent._modules[conv_name] = fuse_conv_bn_eval(conv, norm)
    parent._modules[norm_name] = nn.Identity()
    return True


def _fold_pairs(module: nn.Module) -> int:
    folded = 0
    if isinstance(module, nn.Sequential):  # torchvision's Conv2dNormActivation, ResNet's downsample
        names = list(module._modules)
        folded += sum(_fold(module, first, second) for first, second in zip(names, names[1:], strict=False))
    if type(module).__name__ in ("ResNet", "Bottleneck", "BasicBlock", "MBConvBlock", "EfficientNet"):
        folded += sum(_fold(module, conv, norm) for conv, norm in CONV_NORM_ATTRIBUTES)
    return folded


def _static_padding(conv: nn.Conv2d) -> nn.Conv2d | None:
    """A plain convolution computing what a stride-1 dynamic "same"-padding one does, or None."""
    if type(conv).__name__ != "Conv2dDynamicSamePadding" or tuple(conv.stride) != (1, 1):
        return None
    if any(k % 2 == 0 for k in conv.kernel_size) or conv.padding_mode != "zeros":
        return None  # an even kernel pads unevenly: only the dynamic version does that
    padding = tuple((k - 1) // 2 * d for k, d in zip(conv.kernel_size, conv.dilation, strict=True))
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=1,
        padding=padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    plain.weight = conv.weight
    plain.bias = conv.bias
    return plain


def fuse_for_inference(model: nn.Module) -> int:
    """Rewrite ``model`` (in eval mode) in place; the number of rewrites (0: it is unchanged)."""
    if model.training:
        raise ValueError("fuse_for_inference needs a model in eval mode (its batch norms' statistics)")
    rewrites = sum(_fold_pairs(module) for module in list(model.modules()))
    for module in list(model.modules()):
        for name, child in list(module._modules.items()):
            plain = _static_padding(child) if isinstance(child, nn.Conv2d) else None
            if plain is not None:
                module._modules[name] = plain
                rewrites += 1
    return rewrites


def fuses(model: nn.Module) -> bool:
    """Whether :func:`fuse_for_inference` may rewrite ``model`` (False e.g. for a ViT): what a bundle
    records as ``fused`` when its validation came from such a model's features."""
    return any(_has_fusable(module) for module in model.modules())


def fused_copy(model: nn.Module) -> nn.Module | None:
    """A fused copy of ``model`` (in eval mode), or None when nothing in it fuses (:func:`fuses`)."""
    if not fuses(model):
        return None
    twin = copy.deepcopy(model)
    fuse_for_inference(twin)
    return twin


def _has_fusable(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d) and _static_padding(module) is not None:
        return True
    return type(module) is nn.BatchNorm2d and module.track_running_stats
