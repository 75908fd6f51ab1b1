"""Classification heads: finding them in a model, building the chosen head variant, and reading outputs.

A catalog model ends in a pretrained 1000-way ImageNet layer (an ``nn.Linear``, or a 1x1 ``nn.Conv2d``
in squeezenet; inception_v3 also has an auxiliary one). :class:`HeadSpec` says what becomes of it
(``TrainConfig.head``):

- ``replace``: a fresh layer of the same kind with ``num_classes`` outputs takes its place.
- ``append``: the pretrained layer stays and a new ``1000 -> num_classes`` layer is put after it
  (:class:`AppendedHead`: ``<head>.0`` the pretrained layer, ``<head>.1`` the new one). Only the new
  layer counts as the head: a frozen backbone keeps the pretrained layer frozen too, and fine-tuning
  trains it at the backbone's learning rate. (From scratch the kept layer is random and everything
  trains at one rate: two linear layers in a row, allowed but no better than ``replace``.)
- ``mlp``: ``in -> hidden -> ReLU -> Dropout -> num_classes`` takes its place (:class:`MLPHead`;
  1x1 convolutions for a convolutional head), all of it new and trained as the head.

The names :func:`replace_head_module` returns are the *trainable* head modules: what feature
extraction trains, what gets the head's learning rate, what head-only snapshots hold, and whose
input the feature cache stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engine.core.config import HEADS, TrainConfig
from engine.core.errors import ModelError
from engine.models.registry import PRETRAINED_NUM_CLASSES

DEFAULT_HEAD_HIDDEN = 256
DEFAULT_HEAD_DROPOUT = 0.2


@dataclass(frozen=True)
class HeadSpec:
    """Which head a model gets: ``kind`` is one of ``HEADS``; ``hidden`` and ``dropout`` are the MLP's
    (for other kinds they are reset to their defaults, so equal specs mean equal networks)."""

    kind: str = "replace"
    hidden: int = DEFAULT_HEAD_HIDDEN
    dropout: float = DEFAULT_HEAD_DROPOUT

    def __post_init__(self) -> None:
        if self.kind not in HEADS:
            raise ModelError(f"unknown head {self.kind!r}; choose one of {', '.join(HEADS)}")
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 1:
            raise ModelError(f"an MLP head needs at least one hidden unit, got {self.hidden!r}")
        if not 0 <= self.dropout < 1:
            raise ModelError(f"head dropout must be in [0, 1), got {self.dropout!r}")
        if self.kind != "mlp":  # settings that do not apply: one spec per network
            object.__setattr__(self, "hidden", DEFAULT_HEAD_HIDDEN)
            object.__setattr__(self, "dropout", DEFAULT_HEAD_DROPOUT)

    @classmethod
    def from_config(cls, config: TrainConfig) -> HeadSpec:
        """The head a run of ``config`` trains."""
        return cls(config.head, config.head_hidden, config.head_dropout)

    def to_dict(self) -> dict[str, Any]:
        """What a bundle records: the kind, plus the MLP's settings for an MLP head."""
        if self.kind != "mlp":
            return {"kind": self.kind}
        return {"kind": self.kind, "hidden": self.hidden, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> HeadSpec:
        """Read :meth:`to_dict` output; ``None`` or ``{}`` (a bundle from before head variants) is replace."""
        if not values:
            return cls()
        return cls(
            str(values.get("kind", "replace")),
            int(values.get("hidden", DEFAULT_HEAD_HIDDEN)),
            float(values.get("dropout", DEFAULT_HEAD_DROPOUT)),
        )

    @property
    def head_input(self) -> str:
        """What the trainable head receives: the backbone's ``features``, or the pretrained ``logits``
        (append). The feature cache keys its entries by it."""
        return "logits" if self.kind == "append" else "features"


class AppendedHead(nn.Sequential):
    """The pretrained 1000-way layer (``0``, kept) followed by a new ``1000 -> num_classes`` layer (``1``)."""


class MLPHead(nn.Sequential):
    """``Linear(in, hidden) -> ReLU -> Dropout -> Linear(hidden, num_classes)`` (1x1 convolutions for a
    convolutional head), in place of the pretrained layer."""


def find_head_modules(model: nn.Module, num_outputs: int = PRETRAINED_NUM_CLASSES) -> list[str]:
    """Qualified names of every ``nn.Linear`` / 1x1 ``nn.Conv2d`` with ``num_outputs`` outputs."""
    return [qname for qname, module in model.named_modules() if _is_head(module, num_outputs)]


def _is_head(module: nn.Module, num_outputs: int) -> bool:
    if isinstance(module, nn.Linear):
        return module.out_features == num_outputs
    if isinstance(module, nn.Conv2d):
        return module.out_channels == num_outputs and module.kernel_size == (1, 1) and module.groups == 1
    return False


def head_container(model: nn.Module, qname: str) -> str:
    """The outermost :class:`AppendedHead` / :class:`MLPHead` holding the layer ``qname``, else ``qname``:
    where the classifier starts, whichever head variant the model has."""
    parts = qname.split(".")
    for depth in range(1, len(parts)):
        prefix = ".".join(parts[:depth])
        if isinstance(model.get_submodule(prefix), (AppendedHead, MLPHead)):
            return prefix
    return qname


def head_spec_of(model: nn.Module) -> HeadSpec:
    """The head variant of a model that :func:`~engine.models.build.build_model` built, read from its
    modules: what a bundle of it must record to be rebuilt."""
    for module in model.modules():
        if isinstance(module, AppendedHead):
            return HeadSpec("append")
        if isinstance(module, MLPHead):
            first, dropout = module[0], module[2]
            assert isinstance(dropout, nn.Dropout)
            return HeadSpec("mlp", hidden=_sizes(first)[1], dropout=float(dropout.p))
    return HeadSpec()


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A ``Conv2d``'s stored size (typed ``tuple[int, ...]``, always two values) as ``(int, int)``."""
    first, second = values
    return first, second


def _layer_like(old: nn.Module, in_size: int, out_size: int, *, same_geometry: bool) -> nn.Module:
    """A fresh layer of ``old``'s kind (Linear, or Conv2d with ``old``'s geometry or 1x1), device, dtype."""
    if isinstance(old, nn.Linear):
        return nn.Linear(
            in_size, out_size, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype
        )
    assert isinstance(old, nn.Conv2d)
    if not same_geometry:
        return nn.Conv2d(
            in_size, out_size, 1, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype
        )
    return nn.Conv2d(
        in_size,
        out_size,
        kernel_size=_pair(old.kernel_size),
        stride=_pair(old.stride),
        padding=old.padding if isinstance(old.padding, str) else _pair(old.padding),
        dilation=_pair(old.dilation),
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )


def _sizes(layer: nn.Module) -> tuple[int, int]:
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    assert isinstance(layer, nn.Conv2d)
    return layer.in_channels, layer.out_channels


def replace_head_module(model: nn.Module, qname: str, num_classes: int, head: HeadSpec | None = None) -> str:
    """Give the head module ``qname`` a ``num_classes``-way head of the variant ``head`` (default
    replace), on the same device and dtype. Returns the qualified name of the trainable part."""
    head = head or HeadSpec()
    old = model.get_submodule(qname)
    in_size, out_size = _sizes(old)
    new: nn.Module
    trainable = qname
    if head.kind == "append":
        new = AppendedHead(old, _layer_like(old, out_size, num_classes, same_geometry=False))
        trainable = f"{qname}.1"
    elif head.kind == "mlp":
        new = MLPHead(
            _layer_like(old, in_size, head.hidden, same_geometry=True),
            nn.ReLU(),
            nn.Dropout(head.dropout),
            _layer_like(old, head.hidden, num_classes, same_geometry=False),
        )
    else:
        new = _layer_like(old, in_size, num_classes, same_geometry=True)
    parent_name, _, attr = qname.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
    return trainable


def split_outputs(outputs: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Main logits and auxiliary logits (inception, googlenet return a tuple in train mode)."""
    if isinstance(outputs, torch.Tensor):
        return outputs, []
    main, *aux = outputs
    return main, [a for a in aux if isinstance(a, torch.Tensor)]
