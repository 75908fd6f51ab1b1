"""Training strategies: which parameters learn, at which rate, and which layers stay in eval mode.

- ``feature-extract``: the backbone is frozen (no gradients, eval mode so batch-norm statistics stay
  the pretrained ones); only the new head trains.
- ``fine-tune``: every layer trains; the backbone at ``lr * backbone_lr_scale``, the head at ``lr``.
- ``scratch``: random initial weights, every layer at ``lr``.

"The head" is the trainable head modules :func:`~engine.models.build.build_model` names, whatever the
head variant (:mod:`engine.models.heads`): the new layer, or the whole MLP; for an ``append`` head only
the appended layer, so the kept pretrained 1000-way layer before it counts as backbone (frozen in
feature extraction, at the backbone's rate in fine-tuning).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from engine.core.config import TrainConfig


def is_head_parameter(param_name: str, head_names: list[str]) -> bool:
    """Whether a parameter or buffer name belongs to one of the head modules."""
    return any(param_name == h or param_name.startswith(h + ".") for h in head_names)


def parameter_groups(model: nn.Module, head_names: list[str], config: TrainConfig) -> list[dict[str, Any]]:
    """Set ``requires_grad`` per the strategy and return optimizer parameter groups."""
    head: list[nn.Parameter] = []
    backbone: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        (head if is_head_parameter(name, head_names) else backbone).append(param)
    if config.strategy == "feature-extract":
        for p in backbone:
            p.requires_grad_(False)
        for p in head:
            p.requires_grad_(True)
        return [{"params": head, "lr": config.lr, "name": "head"}]
    for p in model.parameters():
        p.requires_grad_(True)
    backbone_lr = config.lr * (config.backbone_lr_scale if config.strategy == "fine-tune" else 1.0)
    groups: list[dict[str, Any]] = [{"params": head, "lr": config.lr, "name": "head"}]
    if backbone:
        groups.append({"params": backbone, "lr": backbone_lr, "name": "backbone"})
    return groups


def set_mode(model: nn.Module, head_names: list[str], strategy: str, training: bool) -> None:
    """Put the model in train or eval mode; a frozen backbone always stays in eval mode."""
    if not training or strategy != "feature-extract":
        model.train(training)
        return
    model.eval()
    modules = dict(model.named_modules())
    for name in head_names:
        modules[name].train()
