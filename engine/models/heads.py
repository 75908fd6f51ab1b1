"""Classification heads: finding them in a model, replacing them, and reading a model's outputs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.models.registry import PRETRAINED_NUM_CLASSES


def find_head_modules(model: nn.Module, num_outputs: int = PRETRAINED_NUM_CLASSES) -> list[str]:
    """Qualified names of every ``nn.Linear`` / 1x1 ``nn.Conv2d`` with ``num_outputs`` outputs."""
    return [qname for qname, module in model.named_modules() if _is_head(module, num_outputs)]


def _is_head(module: nn.Module, num_outputs: int) -> bool:
    if isinstance(module, nn.Linear):
        return module.out_features == num_outputs
    if isinstance(module, nn.Conv2d):
        return module.out_channels == num_outputs and module.kernel_size == (1, 1) and module.groups == 1
    return False


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A ``Conv2d``'s stored size (typed ``tuple[int, ...]``, always two values) as ``(int, int)``."""
    first, second = values
    return first, second


def replace_head_module(model: nn.Module, qname: str, num_classes: int) -> None:
    """Replace the head module ``qname`` by a fresh one with ``num_classes`` outputs (same device, dtype)."""
    old = model.get_submodule(qname)
    new: nn.Module
    if isinstance(old, nn.Linear):
        new = nn.Linear(
            old.in_features,
            num_classes,
            bias=old.bias is not None,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )
    else:
        assert isinstance(old, nn.Conv2d)
        new = nn.Conv2d(
            old.in_channels,
            num_classes,
            kernel_size=_pair(old.kernel_size),
            stride=_pair(old.stride),
            padding=old.padding if isinstance(old.padding, str) else _pair(old.padding),
            dilation=_pair(old.dilation),
            bias=old.bias is not None,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )
    parent_name, _, attr = qname.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def split_outputs(outputs: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Main logits and auxiliary logits (inception, googlenet return a tuple in train mode)."""
    if isinstance(outputs, torch.Tensor):
        return outputs, []
    main, *aux = outputs
    return main, [a for a in aux if isinstance(a, torch.Tensor)]
