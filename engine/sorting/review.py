"""The review order: which photos to sort first so that each label teaches the model most.

Uncertainty alone (the smallest margin between the two likeliest classes) puts the model's mistakes
in front of the person, but it picks odd photos from the borders between classes, and a model trained
on them generalises worse (issue 23's probe: val accuracy 0.935-0.948 against 0.941-0.961 for random).
So the first :data:`DIVERSE_FIRST` places alternate between two kinds of photo, one suggested class
after another:

- *a likely mistake*: the highest ``uncertainty * min(1, distance / NEAR)``;
- *a typical photo nothing covers yet*: the highest ``typicality * distance``;

where ``distance`` is the cosine distance (of L2-normalised features) to the nearest labelled photo or
photo already placed (a near-duplicate of one scores about 0) and ``typicality`` the mean similarity
to its nearest photos to sort. The rest follow by uncertainty. On hymenoptera with 5 labelled photos
per class, four rounds of 20 in this order left the suggestions for the remaining photos right 98.5%
of the time (random rounds: 97.0%) and trained a model as accurate as random rounds did (within
0.3 points; tests/test_sort_hymenoptera.py; uncertainty with the distance term alone: 100% and 0.7
points less).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Places chosen greedily (each costs one pass over the photos to sort); the rest by uncertainty.
DIVERSE_FIRST = 400
#: Cosine distance below which a photo counts as a near-copy of one already labelled or placed.
NEAR = 0.15
_CHUNK = 2048


def uncertainty(probabilities: torch.Tensor) -> torch.Tensor:
    """``1 - (p1 - p2)``: 1 for a photo exactly between two classes, 0 for a sure one."""
    if probabilities.shape[1] < 2:
        return torch.zeros(probabilities.shape[0])
    top = probabilities.topk(2, dim=1).values
    return 1.0 - (top[:, 0] - top[:, 1])


def nearest_distance(points: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Cosine distance from each of ``points [M, D]`` to the nearest of ``others [N, D]`` (2 when N is 0)."""
    if others.shape[0] == 0:
        return torch.full((points.shape[0],), 2.0)
    x, y = F.normalize(points.float(), dim=1), F.normalize(others.float(), dim=1)
    best = torch.empty(points.shape[0])
    for start in range(0, points.shape[0], _CHUNK):
        best[start : start + _CHUNK] = (x[start : start + _CHUNK] @ y.T).max(dim=1).values
    return (1.0 - best).clamp(min=0.0)


def typicality(x: torch.Tensor, neighbours: int = 10, reference: int = 2000) -> torch.Tensor:
    """Mean cosine similarity of each of the unit vectors ``x`` to its ``neighbours`` nearest among (an
    evenly spaced subset of at most ``reference`` of) them: high for a photo like many others."""
    if x.shape[0] < 2:
        return torch.ones(x.shape[0])
    ref = x[:: max(1, x.shape[0] // reference)]
    k = min(neighbours + 1, ref.shape[0])
    out = torch.empty(x.shape[0])
    for start in range(0, x.shape[0], _CHUNK):
        nearest = (x[start : start + _CHUNK] @ ref.T).topk(k, dim=1).values
        out[start : start + _CHUNK] = nearest[:, 1:].mean(dim=1)  # the first is (about) the photo itself
    return out.clamp(min=0.0)


def review_order(
    probabilities: torch.Tensor,
    features: torch.Tensor,
    labeled_features: torch.Tensor,
    *,
    diverse_first: int = DIVERSE_FIRST,
) -> list[int]:
    """Indices of the photos to sort (rows of ``probabilities [M, C]`` and ``features [M, D]``), review first."""
    m = probabilities.shape[0]
    if m == 0:
        return []
    doubt = uncertainty(probabilities.float().cpu())
    suggested = probabilities.argmax(dim=1).cpu()
    x = F.normalize(features.float().cpu(), dim=1)
    distance = nearest_distance(x, labeled_features.cpu())
    typical = typicality(x)
    remaining = torch.ones(m, dtype=torch.bool)
    order: list[int] = []
    classes = sorted(set(suggested.tolist()))
    turn = 0
    for step in range(min(diverse_first, m)):
        # even places: a likely mistake, not a near-copy; odd: a typical photo nothing covers yet
        score = doubt * (distance / NEAR).clamp(max=1.0) if step % 2 == 0 else typical * distance
        score = torch.where(remaining, score, torch.full_like(score, -1.0))
        pick = -1
        for offset in range(len(classes)):  # this class's turn, or the next one that has photos left
            cls = classes[(turn + offset) % len(classes)]
            mine = remaining & (suggested == cls)
            if mine.any():
                pick = int(torch.where(mine, score, torch.full_like(score, -2.0)).argmax())
                turn = (turn + offset + 1) % len(classes)
                break
        order.append(pick)
        remaining[pick] = False
        distance = torch.minimum(distance, (1.0 - x @ x[pick]).clamp(min=0.0))
    rest = torch.nonzero(remaining).flatten()
    rest = rest[torch.argsort(-doubt[rest], stable=True)]
    return order + rest.tolist()
