"""Grad-CAM: which parts of an image drove a prediction, as a heatmap in [0, 1].

Owns finding the target layer generically, computing the map (:func:`grad_cam`), mapping it back
onto the original photo through the eval preprocessing (:func:`grad_cam_for_image`) and drawing it
(:func:`overlay`, a jet-like colour map without matplotlib).

The target layer is found by a probe pass with forward hooks on every module: it is the module
whose output is the last 4-D ``[B, C, H, W]`` tensor with ``H, W > 1`` before the classification
head is entered -- the last convolutional feature map. Swin and MaxViT end in such maps (Swin's last
stage is permuted back to channels-first before pooling), at the coarse resolution of that map.

A vision transformer's only map is its patch embedding; after it, it works on token sequences
``[B, prefix + H*W, C]`` (a class token, maybe register tokens, then one token per patch of that
``H x W`` grid). For those the target is the last such token sequence through which the patch tokens
still reach the decision (a probe backward pass: a class-token-only head reads nothing from the
patch tokens of the last block's output, so there it is the input of the last block's attention),
and its patch tokens are reshaped to the grid. A model with neither raises
:class:`GradCamUnavailable`.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from engine.core.errors import TransferStudioError
from engine.data.images import open_image
from engine.inference.predict import Predictor
from engine.models.bundle import Bundle, load_bundle
from engine.models.heads import find_head_modules, head_container, split_outputs
from engine.models.preprocessing import Preprocessing

log = logging.getLogger(__name__)

OVERLAY_ALPHA = 0.45
_PROBE_BATCH = 2  # a batch of 2 tells per-image tensors from per-model ones


class GradCamUnavailable(TransferStudioError):
    """The model has no convolutional feature map to explain."""


@dataclass(frozen=True)
class TargetLayer:
    """The module whose output Grad-CAM explains; ``call`` counts calls of a module used more than once."""

    name: str
    call: int
    channels: int
    height: int
    width: int
    prefix: int = -1  # a token sequence: how many tokens come before the patch tokens; -1: a feature map


_TARGETS: weakref.WeakKeyDictionary[nn.Module, TargetLayer] = weakref.WeakKeyDictionary()


def find_target_layer(model: nn.Module, image_size: int = 224, model_name: str | None = None) -> TargetLayer:
    """The last spatial feature map before the head (see the module docstring); cached per model.

    Raises :class:`GradCamUnavailable` when the model has none.
    """
    cached = _TARGETS.get(model)
    if cached is not None:
        return cached
    name = model_name or type(model).__name__
    events: list[tuple[str, int, str, tuple[int, ...]]] = []  # (module, call, kind, shape) in finish order
    calls: dict[str, int] = {}
    entered: dict[str, int] = {}  # module -> number of events when it was first entered

    me = threading.get_ident()  # hooks ignore forward passes other threads run on the same model

    def on_enter(qname: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(_module: nn.Module, _args: tuple[Any, ...]) -> None:
            if threading.get_ident() == me:
                entered.setdefault(qname, len(events))

        return hook

    def on_output(qname: str) -> Callable[[nn.Module, tuple[Any, ...], object], None]:
        def hook(_module: nn.Module, _args: tuple[Any, ...], output: object) -> None:
            if threading.get_ident() != me:
                return
            call = calls.get(qname, 0)
            calls[qname] = call + 1
            if not isinstance(output, torch.Tensor):
                return
            if output.dim() < 3 or output.shape[0] != _PROBE_BATCH:
                return  # not per-image data (e.g. Swin V2's position-bias table)
            if output.dim() == 4 and output.shape[2] > 1 and output.shape[3] > 1:
                events.append((qname, call, "map", tuple(output.shape)))
            elif output.dim() == 3:
                events.append((qname, call, "tokens", tuple(output.shape)))

        return hook

    handles = []
    for qname, module in model.named_modules():
        if qname:
            handles.append(module.register_forward_pre_hook(on_enter(qname)))
            handles.append(module.register_forward_hook(on_output(qname)))
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            probe = torch.zeros(
                _PROBE_BATCH, 3, image_size, image_size, device=param.device, dtype=param.dtype
            )
            num_classes = split_outputs(model(probe))[0].shape[-1]
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    # The head is the last module with num_classes outputs to run: with few classes, a backbone layer
    # can have as many outputs (Swin V2's position-bias MLP has 3, one per attention head). An
    # appended or MLP head starts where its container does (a convolutional MLP head's hidden layer,
    # or the kept 1000-way layer before an appended one, is part of the classifier, not the backbone).
    head_starts = [
        entered[head_container(model, h)]
        for h in find_head_modules(model, num_classes)
        if head_container(model, h) in entered
    ]
    end = max(head_starts, default=len(events))
    maps = [i for i in range(end) if events[i][2] == "map"]
    if not maps:
        raise GradCamUnavailable(f"Grad-CAM is not available for {name}: it has no convolutional feature map")
    last = maps[-1]
    tokens_after = [e for e in events[last + 1 : end] if e[2] == "tokens"]
    if tokens_after:
        target = _token_target(model, image_size, events[: last + 1], tokens_after, name)
    else:
        qname, call, _kind, shape = events[last]
        target = TargetLayer(qname, call, shape[1], shape[2], shape[3])
    log.debug("Grad-CAM target of %s: %s", name, target)
    _TARGETS[model] = target
    return target


_MAX_PREFIX_TOKENS = 16  # a class token and up to 15 register / distillation tokens


def _token_target(
    model: nn.Module,
    image_size: int,
    maps: list[tuple[str, int, str, tuple[int, ...]]],
    tokens: list[tuple[str, int, str, tuple[int, ...]]],
    name: str,
) -> TargetLayer:
    """The last token sequence (of ``tokens``, in finish order) laid out on a patch grid of one of
    ``maps`` whose patch tokens the logits depend on; GradCamUnavailable when there is none."""
    grids = [(e[3][2], e[3][3]) for e in maps if e[2] == "map"]
    candidates: list[TargetLayer] = []
    for qname, call, _kind, shape in tokens:
        count, channels = shape[1], shape[2]
        for height, width in reversed(grids):
            if 0 <= count - height * width <= _MAX_PREFIX_TOKENS:
                candidates.append(TargetLayer(qname, call, channels, height, width, count - height * width))
                break
    if not candidates:
        raise GradCamUnavailable(
            f"Grad-CAM is not available for {name}: its token sequences do not lie on a patch grid"
        )
    captured: dict[tuple[str, int], torch.Tensor] = {}
    me = threading.get_ident()
    handles = []
    for qname in dict.fromkeys(c.name for c in candidates):
        seen = [0]

        def capture(
            _m: nn.Module, _a: tuple[Any, ...], out: object, qname: str = qname, seen: list[int] = seen
        ) -> None:
            if threading.get_ident() == me and isinstance(out, torch.Tensor):
                captured[(qname, seen[0])] = out
            seen[0] += 1

        handles.append(model.get_submodule(qname).register_forward_hook(capture))
    param = next(model.parameters())
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(1, 3, image_size, image_size, generator=generator).to(param.device, param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            logits = split_outputs(model(probe.requires_grad_(True)))[0]
            keys = [(c.name, c.call) for c in candidates]
            grads = torch.autograd.grad(
                logits.sum(), [captured[k] for k in keys], allow_unused=True, retain_graph=False
            )
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    for candidate, grad in reversed(list(zip(candidates, grads, strict=True))):
        if grad is not None and bool(grad[:, candidate.prefix :].abs().amax() > 0):
            return candidate
    raise GradCamUnavailable(f"Grad-CAM is not available for {name}: no patch tokens reach its decision")


def grad_cam(
    model: nn.Module,
    image: torch.Tensor,
    class_index: int | None = None,
    *,
    target: TargetLayer | None = None,
    model_name: str | None = None,
) -> np.ndarray:
    """Grad-CAM of one normalised ``[3, H, W]`` image for ``class_index`` (default: the predicted class).

    Returns a float32 ``[H, W]`` array in [0, 1] (all zeros when no region argues for the class).
    The model's parameters and their ``.grad`` are left untouched.
    """
    if image.dim() != 3:
        raise ValueError(f"grad_cam expects one [3, H, W] image, got shape {list(image.shape)}")
    target = target or find_target_layer(model, max(image.shape[-2:]), model_name)
    module = model.get_submodule(target.name)
    captured: list[torch.Tensor] = []
    seen = [0]
    me = threading.get_ident()

    def capture(_module: nn.Module, _args: tuple[Any, ...], output: torch.Tensor) -> None:
        if threading.get_ident() != me:
            return
        if seen[0] == target.call:
            captured.append(output)
        seen[0] += 1

    param = next(model.parameters())
    x = image.unsqueeze(0).to(param.device, param.dtype).requires_grad_(True)
    handle = module.register_forward_hook(capture)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            logits = split_outputs(model(x))[0]
            index = int(logits[0].argmax()) if class_index is None else int(class_index)
            if not 0 <= index < logits.shape[-1]:
                raise ValueError(f"class_index {index} is out of range for {logits.shape[-1]} classes")
            activation = captured[0]
            (grads,) = torch.autograd.grad(logits[0, index], activation)
    finally:
        handle.remove()
        model.train(was_training)
    if target.prefix >= 0:  # patch tokens [1, prefix + H*W, C] -> a map [1, C, H, W]
        activation, grads = (
            t[:, target.prefix :].reshape(1, target.height, target.width, -1).permute(0, 3, 1, 2)
            for t in (activation, grads)
        )
    with torch.no_grad():
        weights = grads.float().mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activation.float()).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]
        cam -= cam.min()
        peak = float(cam.max())
        cam = cam / peak if peak > 0 else torch.zeros_like(cam)
    return cam.clamp_(0, 1).cpu().numpy().astype(np.float32)


def _resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after torchvision's ``Resize(size)`` (shorter side to ``size``)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _centre_offset(size: int, crop: int) -> int:
    """Where torchvision's centre crop of ``crop`` starts in ``size`` (negative: zero padding)."""
    return int(round((size - crop) / 2)) if size >= crop else -((crop - size) // 2)


def to_original_size(heatmap: np.ndarray, original_size: tuple[int, int], pre: Preprocessing) -> np.ndarray:
    """Undo the eval preprocessing's resize + centre crop: a ``[crop, crop]`` map onto the photo.

    ``original_size`` is PIL's (width, height). Parts of the photo outside the centre crop get 0.
    """
    width, height = original_size
    rw, rh = _resized_size(width, height, pre.resize_size)
    crop = heatmap.shape
    canvas = np.zeros((rh, rw), dtype=np.float32)
    # The eval transform's two centre crops (a resize_size square, then crop): their offsets add up.
    top = _centre_offset(rh, pre.resize_size) + _centre_offset(pre.resize_size, crop[0])
    left = _centre_offset(rw, pre.resize_size) + _centre_offset(pre.resize_size, crop[1])
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + crop[0], rh), min(left + crop[1], rw)
    canvas[y0:y1, x0:x1] = heatmap[y0 - top : y1 - top, x0 - left : x1 - left]
    resized = Image.fromarray(canvas).resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def grad_cam_for_image(
    source: Predictor | Bundle | str | Path,
    image: Image.Image | str | Path,
    class_index: int | None = None,
) -> np.ndarray:
    """Grad-CAM of a photo for ``class_index`` (default: the predicted class), at the photo's own size.

    ``source`` is a loaded :class:`Predictor` (reused, fastest), a :class:`Bundle` or a bundle path.
    Returns float32 ``[height, width]`` in [0, 1]; raises :class:`GradCamUnavailable` for models
    without a convolutional feature map.
    """
    if isinstance(source, Predictor):
        predictor = source
    else:
        predictor = Predictor(source if isinstance(source, Bundle) else load_bundle(source), device="cpu")
    img = image if isinstance(image, Image.Image) else open_image(image)
    img = img.convert("RGB")
    pre = predictor.bundle.preprocessing
    tensor = predictor.transform(img)
    target = find_target_layer(predictor.model, pre.crop_size, predictor.bundle.architecture)
    cam = grad_cam(predictor.model, tensor, class_index, target=target)
    return to_original_size(cam, img.size, pre)


def jet(values: np.ndarray) -> np.ndarray:
    """Jet-like colour map: ``[H, W]`` values in [0, 1] -> ``[H, W, 3]`` uint8 (blue, cyan, yellow, red)."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # where red, green, blue peak
    rgb = np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """The photo with the heatmap blended over it in jet colours (``alpha`` = heatmap weight)."""
    base = image.convert("RGB")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != (base.height, base.width):
        heat = np.asarray(
            Image.fromarray(heat).resize(base.size, Image.Resampling.BILINEAR), dtype=np.float32
        )
    colours = jet(heat).astype(np.float32)
    blended = (1.0 - alpha) * np.asarray(base, dtype=np.float32) + alpha * colours
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))
