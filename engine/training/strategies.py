"""Training strategies: which parameters learn, at which rate, and which layers stay in eval mode.

- ``feature-extract``: the backbone is frozen (no gradients, eval mode so batch-norm statistics stay
  the pretrained ones); only the new head trains.
- ``fine-tune``: every layer trains; the head at ``lr``, the backbone at ``lr * backbone_lr_scale``, or
  with ``lr_decay_per_stage < 1`` at rates that shrink toward the input ("discriminative" rates): the
  backbone is cut into :data:`BACKBONE_STAGES` stages, the last one (next to the head) learns at
  ``lr * backbone_lr_scale`` and each earlier one at ``lr_decay_per_stage`` times the next.
- ``scratch``: random initial weights, every layer at ``lr``.

The stages are consecutive runs of the backbone's parameter tensors in the order the model registers
them, which for every catalog model is the order the input flows through them (stem first, the last
block before the head last), with equal numbers of tensors: a split by depth that needs no per-model
table.

"The head" is the trainable head modules :func:`~engine.models.build.build_model` names, whatever the
head variant (:mod:`engine.models.heads`): the new layer, or the whole MLP; for an ``append`` head only
the appended layer, so the kept pretrained 1000-way layer before it counts as backbone (frozen in
feature extraction, at the backbone's rate in fine-tuning).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from engine.core.config import TrainConfig
from engine.models.registry import get_model_info
from engine.models.timm_models import vit_depths

#: How many stages the backbone is cut into for stage-wise learning rates.
BACKBONE_STAGES = 5


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
    fine_tune = config.strategy == "fine-tune"
    backbone_lr = config.lr * (config.backbone_lr_scale if fine_tune else 1.0)
    groups: list[dict[str, Any]] = [{"params": head, "lr": config.lr, "name": "head"}]
    if not backbone:
        return groups
    depths = vit_depths(model) if fine_tune else None
    if depths is not None:
        decay = config.lr_decay_per_stage
        if decay == TrainConfig.for_strategy(config.strategy).lr_decay_per_stage:  # not the user's choice
            decay = get_model_info(config.model).layer_decay or decay
        return groups + vit_layer_groups(model, head_names, depths, backbone_lr, decay)
    if not fine_tune or config.lr_decay_per_stage == 1.0:
        groups.append({"params": backbone, "lr": backbone_lr, "name": "backbone"})
        return groups
    stages = backbone_stages(backbone, BACKBONE_STAGES)
    for index, params in enumerate(stages):  # index 0: next to the input
        lr = backbone_lr * config.lr_decay_per_stage ** (len(stages) - 1 - index)
        groups.append({"params": params, "lr": lr, "name": f"backbone.{index}"})
    return groups


def vit_layer_groups(
    model: nn.Module, head_names: list[str], depths: dict[str, int], backbone_lr: float, decay: float
) -> list[dict[str, Any]]:
    """One group per depth of a vision transformer (its head's parameters left out: they are in the
    head group), each depth at ``decay`` times the rate of the next; the deepest at ``backbone_lr``."""
    deepest = max(depths.values())
    by_depth: dict[int, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not is_head_parameter(name, head_names):
            by_depth.setdefault(depths[name], []).append(param)
    return [
        {"params": params, "lr": backbone_lr * decay ** (deepest - depth), "name": f"backbone.{depth}"}
        for depth, params in sorted(by_depth.items())
    ]


def backbone_stages(params: list[nn.Parameter], stages: int) -> list[list[nn.Parameter]]:
    """``params`` (in the model's order) cut into at most ``stages`` consecutive runs of equal length
    (the earlier runs one longer when it does not divide)."""
    count = min(stages, len(params))
    size, extra = divmod(len(params), count)
    runs, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        runs.append(params[start:end])
        start = end
    return runs


#: The batch-norm layers ``freeze_bn`` keeps in eval mode.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def set_mode(
    model: nn.Module, head_names: list[str], strategy: str, training: bool, *, freeze_bn: bool = False
) -> None:
    """Put the model in train or eval mode; a frozen backbone always stays in eval mode.

    With ``freeze_bn`` a fine-tuned model's batch-norm layers stay in eval mode while it trains: they
    normalise with their pretrained running statistics (and leave them as they are) while their scales
    and shifts still learn, so the network trains on the features it is validated on.
    """
    if not training or strategy != "feature-extract":
        model.train(training)
        if training and freeze_bn and strategy == "fine-tune":
            for module in model.modules():
                if isinstance(module, BATCH_NORMS):
                    module.eval()
        return
    model.eval()
    modules = dict(model.named_modules())
    for name in head_names:
        modules[name].train()
