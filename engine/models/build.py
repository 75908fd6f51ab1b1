"""Building a catalog model with a fresh classification head (any variant), pretrained or from scratch."""

from __future__ import annotations

import logging
import re
import weakref
from typing import Any

import torch
from torch import nn

from engine.core.errors import ModelError
from engine.models import lite0, timm_models
from engine.models import weights as weights_files
from engine.models.heads import HeadSpec, find_head_modules, replace_head_module
from engine.models.registry import PRETRAINED_NUM_CLASSES, ModelInfo, get_model_info

logger = logging.getLogger(__name__)


def build_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool,
    replace_head: bool = True,
    head: HeadSpec | None = None,
) -> tuple[nn.Module, list[str]]:
    """Build ``name`` and give it a fresh ``num_classes``-way head.

    ``pretrained`` loads the ImageNet weights (torchvision's download/cache, or the built-in
    file for the offline model). Every classification head -- any ``nn.Linear`` or 1x1
    ``nn.Conv2d`` with 1000 outputs, auxiliary heads included -- gets the head variant ``head``
    (default: replaced by a freshly initialised layer of the same kind; see
    :mod:`engine.models.heads`). Returns the model and the qualified names of the heads' trainable
    modules (for ``append``, the new layers after the kept 1000-way ones). The same ``head`` always
    gives the same network, pretrained or not, so a bundle rebuilds it with ``pretrained=False``.
    ``replace_head=False`` keeps the original 1000-class ImageNet heads (``num_classes`` must
    then be 1000), e.g. to check what the pretrained model recognises.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"A model needs at least one class, got num_classes={num_classes!r}")
    info = get_model_info(name)
    if info.offline:
        model = lite0.build(pretrained=pretrained)
    elif info.source == "timm":
        model = _build_timm(info, pretrained)
    elif pretrained:
        model = _build_pretrained(info)
    else:
        model = _build_scratch(info)
    heads = find_head_modules(model, PRETRAINED_NUM_CLASSES)
    if not heads:
        raise ModelError(f"Cannot find the classification head of {name}")
    if replace_head:
        heads = [replace_head_module(model, qname, num_classes, head) for qname in heads]
    elif num_classes != PRETRAINED_NUM_CLASSES:
        raise ModelError(
            f"Keeping the ImageNet head of {name} means {PRETRAINED_NUM_CLASSES} classes, not {num_classes}"
        )
    logger.debug("Built %s (pretrained=%s, head %s), heads %s", name, pretrained, head, heads)
    return model, heads


def _build_pretrained(info: ModelInfo) -> nn.Module:
    import torchvision  # here, not on import: it imports torch._dynamo (about 1 s), and only its models need it

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
            f"(cache folder {weights_files.weights_cache_dir()}): {reason}. Connect to the internet once, "
            "copy the file into that folder, or train from scratch."
        ) from None


def _build_timm(info: ModelInfo, pretrained: bool) -> nn.Module:
    entry = timm_models.entry(info.name)
    if entry is None:  # the registry lists only curated entries
        raise ModelError(f"{info.name} is not among the curated timm models")
    # The cached file, or a verified atomic download from the Hub (WeightsError, one line, if neither).
    path = weights_files.download_weights(info.name) if pretrained else None
    return timm_models.build(entry, path)


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
    import torchvision

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


#: A model's modules by name, held weakly (the model itself left out).
_Modules = tuple[tuple[str, "weakref.ReferenceType[nn.Module]"], ...]
#: head_is_last's answers per model (held weakly): for each (head, input size), the model's modules
#: when it was asked, and the answer.
_LAST_HEAD_ANSWERS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, int], tuple[_Modules, bool]]] = (
    weakref.WeakKeyDictionary()
)


def head_is_last(model: nn.Module, head_name: str, input_size: int) -> bool:
    """Whether, in eval mode, the head's output is returned unchanged as the model's output.

    It runs the model once on a blank image; the answer is remembered for as long as the model has the
    very same modules under the same names (a training run asks twice, for its ETA and its data path,
    and on a busy 2-core CPU one pass of a single image can take a second).
    """
    modules: _Modules = tuple(
        (name, weakref.ref(module)) for name, module in model.named_modules() if module is not model
    )
    answers = _LAST_HEAD_ANSWERS.setdefault(model, {})
    known = answers.get((head_name, input_size))
    if known is not None and _same_modules(known[0], modules):
        return known[1]
    answer = _probe_head_is_last(model, head_name, input_size)
    answers[(head_name, input_size)] = (modules, answer)
    return answer


def _same_modules(before: _Modules, now: _Modules) -> bool:
    """Whether two snapshots name the very same module objects, in the same order."""
    if len(before) != len(now):
        return False
    for (name, ref), (now_name, now_ref) in zip(before, now):
        module = ref()
        if name != now_name or module is None or module is not now_ref():
            return False
    return True


def _probe_head_is_last(model: nn.Module, head_name: str, input_size: int) -> bool:
    head = dict(model.named_modules())[head_name]
    seen: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, _a, out: seen.append(out))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            param = next(model.parameters())
            out = model(torch.zeros(1, 3, input_size, input_size, device=param.device))
    finally:
        handle.remove()
        model.train(was_training)
    main = out if isinstance(out, torch.Tensor) else out[0]
    return len(seen) == 1 and seen[0] is main
