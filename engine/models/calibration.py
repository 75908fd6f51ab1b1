"""Calibrated probabilities: one temperature that makes a confidence of 0.9 right about nine times in ten.

:func:`fit_temperature` divides logits by the ``T`` that minimises the negative log-likelihood of
held-out predictions (Guo et al., 2017, "On Calibration of Modern Neural Networks"): a one-dimensional
search over ``log T``, deterministic, no gradient. On a handful of held-out photos that are all
right, the likelihood alone would push ``T`` towards 0 and every answer towards certainty, so the
mean confidence is also capped at the accuracy a uniform prior gives (``(right + 1) / (n + 2)``,
Laplace's rule): ten right out of ten allows an average of 0.92, not 1.0. On hundreds of photos the
cap is close to the accuracy itself and rarely binds.

:func:`expected_calibration_error` is the usual 15-bin ECE.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: ``log T`` is searched in this range (T from 0.05 to 20).
LOG_T_RANGE = (math.log(0.05), math.log(20.0))
_GRID = 61
_REFINE = 40


def _nll(logits: torch.Tensor, labels: torch.Tensor, log_t: float) -> float:
    return float(F.cross_entropy(logits / math.exp(log_t), labels))


def _mean_confidence(logits: torch.Tensor, log_t: float) -> float:
    return float(torch.softmax(logits / math.exp(log_t), dim=1).max(dim=1).values.mean())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature ``T`` for held-out ``logits [N, C]`` with true ``labels [N]`` (1.0 when N is 0).

    Calibrated probabilities are ``softmax(logits / T)``; the predicted class never changes.
    """
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu()
    if logits.shape[0] == 0:
        return 1.0
    low, high = LOG_T_RANGE
    grid = [low + (high - low) * k / (_GRID - 1) for k in range(_GRID)]
    best = min(grid, key=lambda t: _nll(logits, labels, t))
    step = (high - low) / (_GRID - 1)
    a, b = max(low, best - step), min(high, best + step)
    for _ in range(_REFINE):  # golden-section search around the best grid point
        c = b - (b - a) / 1.618033988749895
        d = a + (b - a) / 1.618033988749895
        if _nll(logits, labels, c) < _nll(logits, labels, d):
            b = d
        else:
            a = c
    log_t = (a + b) / 2
    right = int((logits.argmax(dim=1) == labels).sum())
    cap = (right + 1) / (labels.numel() + 2)
    if _mean_confidence(logits, log_t) > cap:  # more sure than the evidence allows: warm up to the cap
        a, b = log_t, high
        if _mean_confidence(logits, b) > cap:
            return math.exp(b)
        for _ in range(_REFINE):
            mid = (a + b) / 2
            if _mean_confidence(logits, mid) > cap:
                a = mid
            else:
                b = mid
        log_t = b
    return math.exp(log_t)


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error: the photo-weighted gap between confidence and accuracy over
    ``bins`` equal-width confidence bins (top-1 confidence)."""
    if probabilities.shape[0] == 0:
        return 0.0
    confidence, predicted = probabilities.float().max(dim=1)
    right = (predicted == labels.to(predicted.device)).float()
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for k in range(bins):
        inside = (confidence > edges[k]) & (confidence <= edges[k + 1])
        if k == 0:
            inside |= confidence == 0
        if inside.any():
            gap = abs(float(confidence[inside].mean()) - float(right[inside].mean()))
            total += gap * int(inside.sum()) / confidence.numel()
    return total
