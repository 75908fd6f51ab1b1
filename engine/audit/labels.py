"""Likely wrong labels for the dataset audit: cross-validated probabilities and confident learning.

1. **Out-of-fold probabilities.** The photos are dealt into ``K`` folds (seeded, class-stratified; a
   group of duplicates always lands in one fold, so no photo is predicted by a head that saw its copy).
   For each fold a multinomial logistic-regression head (:func:`engine.training.linear_head.fit_linear_head`,
   L2-normalised features) is fitted on the other folds and predicts the held-out photos.
2. **Confident learning** (Northcutt et al., 2021), written here from the paper:

   - per-class threshold ``t_j``: the mean probability of class ``j`` over the photos labelled ``j``;
   - confident joint ``C[i][j]``: photos labelled ``i`` whose probability reaches ``t_j`` for at least one
     class, counted under the class ``j`` with the highest probability among those that reach it;
   - calibrated per given label: ``C~[i][j] = C[i][j] / sum_k C[i][k] * n_i``;
   - flagged: every photo in an off-diagonal cell of the confident joint, plus ("prune by noise
     rate"), for each off-diagonal cell ``(i, j)``, the ``round(C~[i][j])`` photos labelled ``i`` with the
     largest margin ``p_j - p_i``.

   Issues are ranked by that margin: how confidently the given label is contradicted by the suggested
   one. ``confidence`` is the out-of-fold probability of the suggested class.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from engine.training.linear_head import DEFAULT_WEIGHT_DECAY, fit_linear_head

DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class Suspect:
    """One photo whose label looks wrong: an index into the inputs, with the evidence."""

    index: int
    given: int
    suggested: int
    confidence: float  # out-of-fold probability of ``suggested``
    given_probability: float  # out-of-fold probability of ``given``

    @property
    def margin(self) -> float:
        return self.confidence - self.given_probability


def assign_folds(labels: Sequence[int], groups: Sequence[Sequence[int]], folds: int, seed: int) -> list[int]:
    """A fold number per sample: each group whole in one fold, each class spread evenly over the folds.

    ``groups`` lists samples that must stay together (duplicates); every other sample is its own group.
    A group's class is its first member's label.
    """
    n = len(labels)
    units: list[list[int]] = [list(g) for g in groups]
    grouped = {i for g in units for i in g}
    units += [[i] for i in range(n) if i not in grouped]
    random.Random(seed).shuffle(units)
    units.sort(key=lambda u: labels[u[0]])  # stable: shuffled within a class
    fold_of = [0] * n
    filled = [0] * folds
    for unit in units:
        target = min(range(folds), key=lambda f: (filled[f], f))  # the emptiest fold, so sizes stay even
        for i in unit:
            fold_of[i] = target
        filled[target] += len(unit)
    return fold_of


def out_of_fold_probabilities(
    features: torch.Tensor,
    labels: Sequence[int],
    num_classes: int,
    fold_of: Sequence[int],
    *,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    on_fold: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """``[N, C]`` probabilities, each row from a head fitted without that row's fold."""
    y = torch.tensor(list(labels), dtype=torch.long)
    folds = torch.tensor(list(fold_of), dtype=torch.long)
    count = int(folds.max()) + 1 if len(fold_of) else 0
    probabilities = torch.full((len(y), num_classes), 1.0 / num_classes)
    for k in range(count):
        held = folds == k
        if held.any() and (~held).any():
            head = fit_linear_head(features[~held], y[~held], num_classes, weight_decay=weight_decay)
            probabilities[held] = head.probabilities(features[held]).cpu()
        if on_fold:
            on_fold(k + 1, count)
    return probabilities


def confident_learning(probabilities: torch.Tensor, labels: Sequence[int]) -> list[Suspect]:
    """The photos confident learning flags (see the module docstring), most likely wrong first."""
    n, classes = probabilities.shape
    y = torch.tensor(list(labels), dtype=torch.long)
    if n == 0:
        return []
    thresholds = torch.ones(classes)
    for j in range(classes):
        mine = y == j
        if mine.any():
            thresholds[j] = probabilities[mine, j].mean()
    above = probabilities >= thresholds
    masked = torch.where(above, probabilities, torch.full_like(probabilities, -1.0))
    assigned = masked.argmax(dim=1)
    counted = above.any(dim=1)
    joint = torch.zeros(classes, classes)
    joint.index_put_((y[counted], assigned[counted]), torch.ones(int(counted.sum())), accumulate=True)
    sizes = torch.bincount(y, minlength=classes).float()
    calibrated = joint / joint.sum(dim=1, keepdim=True).clamp(min=1) * sizes[:, None]

    flagged: dict[int, int] = {}  # index -> suggested class
    for i in torch.nonzero(counted & (assigned != y)).flatten().tolist():
        flagged[i] = int(assigned[i])
    for given in range(classes):
        members = torch.nonzero(y == given).flatten()
        for other in range(classes):
            quota = int(round(float(calibrated[given, other])))
            if other == given or quota == 0:
                continue
            margin = probabilities[members, other] - probabilities[members, given]
            for i in members[torch.argsort(margin, descending=True, stable=True)[:quota]].tolist():
                if margin_of(probabilities, i, other, given) > margin_of(
                    probabilities, i, flagged.get(i, given), given
                ):
                    flagged[i] = other
    suspects = [
        Suspect(i, int(y[i]), s, float(probabilities[i, s]), float(probabilities[i, y[i]]))
        for i, s in flagged.items()
        if s != int(y[i])
    ]
    return sorted(suspects, key=lambda s: (-s.margin, s.index))


def margin_of(probabilities: torch.Tensor, index: int, suggested: int, given: int) -> float:
    """How far the suggested class's probability exceeds the given one's (0 when they are the same)."""
    return float(probabilities[index, suggested] - probabilities[index, given])
