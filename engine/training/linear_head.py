"""A multinomial logistic-regression head fitted in one deterministic full-batch L-BFGS solve.

:func:`fit_linear_head` fits ``softmax(W x + b)`` to cached backbone features: mean cross-entropy plus
``weight_decay / 2 * ||W||^2`` (the bias is not decayed), from all-zero weights, with L-BFGS and a
strong-Wolfe line search on the whole set at once. No random numbers are drawn, so the same features
and labels always give the same head (on one device and thread count). A few thousand samples of
1,280 features fit in well under a second on a CPU.

With ``normalize=True`` (the default) each feature vector is first scaled to unit L2 norm, which
makes one ``weight_decay`` suit every backbone; the resulting :class:`LinearHead` applies the same
scaling when it predicts. With ``normalize=False`` the weights act on the raw features, so they can be
copied into a model's own ``nn.Linear`` head (:meth:`LinearHead.to_linear`).

:func:`choose_weight_decay` picks the weight decay from a grid by the cross-entropy on held-out folds
of the training data (never the validation split).

The dataset audit uses it for cross-validated out-of-fold probabilities
(:mod:`engine.audit.labels`); fine-tuning's head-first phase fits the new head with it
(:mod:`engine.training.head_fit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Weight decay on unit-norm features: strong enough to keep the probabilities calibrated on a few
#: hundred photos, weak enough to separate classes (chosen on hymenoptera, see the audit's docstring).
DEFAULT_WEIGHT_DECAY = 1e-3
DEFAULT_MAX_ITER = 200
#: Weight decays :func:`choose_weight_decay` tries (for features of about unit norm).
WEIGHT_DECAY_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
HELD_OUT_FOLDS = 3


@dataclass(frozen=True)
class LinearHead:
    """A fitted head: ``logits = W @ x + b``, on unit-norm ``x`` when ``normalize`` is true."""

    weight: torch.Tensor  # [C, D]
    bias: torch.Tensor  # [C]
    normalize: bool
    loss: float  # the final training objective (cross-entropy + weight decay)
    iterations: int  # L-BFGS function evaluations used

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` for features ``[N, D]`` (any float dtype, on the head's device)."""
        x = features.to(self.weight.device, torch.float32)
        if self.normalize:
            x = F.normalize(x, dim=1)
        return x @ self.weight.T + self.bias

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities ``[N, C]``."""
        return torch.softmax(self.logits(features), dim=1)

    def to_linear(self) -> nn.Linear:
        """An ``nn.Linear`` holding the weights; only for a head fitted on raw features."""
        if self.normalize:
            raise ValueError("a head fitted on unit-norm features is not a plain nn.Linear")
        layer = nn.Linear(self.weight.shape[1], self.weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(self.weight)
            layer.bias.copy_(self.bias)
        return layer


def fit_linear_head(
    features: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    num_classes: int | None = None,
    *,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    normalize: bool = True,
    max_iter: int = DEFAULT_MAX_ITER,
    class_weights: torch.Tensor | None = None,
) -> LinearHead:
    """Fit a multinomial logistic regression to ``features [N, D]`` and integer ``labels [N]``.

    ``num_classes`` defaults to ``max(labels) + 1``; a class with no sample simply gets low logits.
    ``class_weights [C]`` weighs each sample's cross-entropy by its class (e.g. inverse frequency).
    Works on the features' device; the features may come from ``torch.inference_mode``.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {tuple(features.shape)}")
    with torch.inference_mode(False), torch.enable_grad():
        x = features.detach().to(torch.float32).clone()  # a normal tensor, even from inference mode
        y = torch.as_tensor(labels, dtype=torch.long, device=x.device).clone()
        if y.shape != (x.shape[0],):
            raise ValueError(f"{x.shape[0]} feature rows but {tuple(y.shape)} labels")
        if x.shape[0] == 0:
            raise ValueError("no samples to fit")
        classes = int(num_classes) if num_classes is not None else int(y.max()) + 1
        if int(y.min()) < 0 or int(y.max()) >= classes:
            raise ValueError(f"labels must lie in [0, {classes})")
        if normalize:
            x = F.normalize(x, dim=1)
        weights = None if class_weights is None else class_weights.to(x.device, torch.float32).clone()
        weight = torch.zeros(classes, x.shape[1], device=x.device, requires_grad=True)
        bias = torch.zeros(classes, device=x.device, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            lr=1.0,
            max_iter=max_iter,
            history_size=20,
            tolerance_grad=1e-6,
            tolerance_change=1e-10,
            line_search_fn="strong_wolfe",
        )
        evaluations = 0

        def value() -> torch.Tensor:
            loss = F.cross_entropy(x @ weight.T + bias, y, weight=weights)
            return loss + 0.5 * weight_decay * weight.pow(2).sum()

        def objective() -> torch.Tensor:
            nonlocal evaluations
            evaluations += 1
            optimizer.zero_grad()
            loss = value()
            loss.backward()
            return loss

        optimizer.step(objective)
        with torch.no_grad():
            final = float(value())
    return LinearHead(
        weight=weight.detach().clone(),
        bias=bias.detach().clone(),
        normalize=normalize,
        loss=final,
        iterations=evaluations,
    )


def held_out_folds(labels: torch.Tensor, folds: int, seed: int = 0) -> torch.Tensor:
    """A fold number per sample: each class's samples, in a seeded order, dealt round the folds."""
    generator = torch.Generator().manual_seed(seed)
    fold = torch.empty(labels.numel(), dtype=torch.long)
    position = 0
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels.cpu() == cls).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        fold[members] = (torch.arange(members.numel()) + position) % folds
        position += members.numel()
    return fold.to(labels.device)


def choose_weight_decay(
    features: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    num_classes: int | None = None,
    *,
    grid: Sequence[float] = WEIGHT_DECAY_GRID,
    folds: int = HELD_OUT_FOLDS,
    normalize: bool = True,
    class_weights: torch.Tensor | None = None,
    seed: int = 0,
) -> tuple[float, dict[float, float]]:
    """The weight decay of ``grid`` whose heads, each fitted on all folds but one, give the lowest mean
    cross-entropy on the fold left out (the stronger decay of equals); and each decay's score.

    With fewer than two samples per fold, nothing can be held out: ``DEFAULT_WEIGHT_DECAY``.
    """
    y = torch.as_tensor(labels, dtype=torch.long, device=features.device)
    if features.shape[0] < 2 * folds or folds < 2:
        return DEFAULT_WEIGHT_DECAY, {}
    classes = int(num_classes) if num_classes is not None else int(y.max()) + 1
    fold = held_out_folds(y, folds, seed)
    scores: dict[float, float] = {}
    for weight_decay in grid:
        total = 0.0
        for k in range(folds):
            held = fold == k
            head = fit_linear_head(
                features[~held],
                y[~held],
                classes,
                weight_decay=weight_decay,
                normalize=normalize,
                class_weights=class_weights,
            )
            with torch.no_grad():
                total += float(F.cross_entropy(head.logits(features[held]), y[held], reduction="sum"))
        scores[weight_decay] = total / y.numel()
    best = min(scores, key=lambda wd: (scores[wd], -wd))
    return best, scores
