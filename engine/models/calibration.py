"""Calibrated probabilities: one temperature that makes a confidence of 0.9 right about nine times in ten.

:func:`fit_temperature` divides logits by the ``T`` that minimises the negative log-likelihood of
held-out predictions (Guo et al., 2017, "On Calibration of Modern Neural Networks"): a one-dimensional
search over ``log T``, deterministic, no gradient. On a handful of held-out photos that are all
right, the likelihood alone would push ``T`` towards 0 and every answer towards certainty, so the
mean confidence is also capped at the accuracy a uniform prior gives (``(right + 1) / (n + 2)``,
Laplace's rule): ten right out of ten allows an average of 0.92, not 1.0. On hundreds of photos the
cap is close to the accuracy itself and rarely binds.

:func:`expected_calibration_error` is the usual 15-bin ECE.

A trained model's :class:`Calibration` (fitted at the end of every run on its validation photos, kept
in the bundle) holds its temperature and what says "none of these": the class means of the training
photos' features and a threshold on :func:`ood_scores` that :data:`OOD_PASS_RATE` of the validation
photos pass. :func:`reliability` and :func:`coverage` are what Evaluate and the report show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

#: ``log T`` is searched in this range (T from 0.02 to 200).
LOG_T_RANGE = (math.log(0.02), math.log(200.0))
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


# -- a trained model's calibration and its "none of these" ---------------------------------------------

#: How a photo's unlikeness to the training photos is scored: one minus the cosine similarity of its
#: features (the head's input) to the nearest class mean of the training photos' features. Of the
#: methods measured (BENCHMARKS.md, "Issue 24"), it flagged every out-of-distribution test photo at a
#: 95% pass rate on hymenoptera's val photos, and it costs C x D numbers in the bundle.
OOD_METHOD = "class-mean-cosine"
#: The share of in-distribution (validation) photos the threshold lets through.
OOD_PASS_RATE = 0.95
#: The confidence thresholds Evaluate and the report give accuracy and coverage at.
COVERAGE_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
RELIABILITY_BINS = 15


def ood_scores(features: torch.Tensor, class_means: torch.Tensor) -> torch.Tensor:
    """``1 - max_c cos(feature, mean_c)`` per row of ``features [N, D]`` (higher: less like training)."""
    x = F.normalize(_flat(features).float(), dim=1)
    return 1.0 - (x @ F.normalize(class_means.float(), dim=1).T).max(dim=1).values


def _flat(features: torch.Tensor) -> torch.Tensor:
    """``[N, D]`` features: a convolutional head's ``[N, C, H, W]`` input is averaged over space."""
    return features.mean(dim=(2, 3)) if features.ndim == 4 else features.flatten(1)


@dataclass(frozen=True)
class Calibration:
    """What a bundle carries to answer honestly: a temperature for its probabilities, and the class means
    and threshold that say "none of these" for a photo unlike every class."""

    temperature: float
    ece_before: float
    ece_after: float
    photos: int  # validation photos it was fitted on
    class_means: torch.Tensor | None = None  # [C, D] unit rows; None: no "none of these"
    ood_threshold: float | None = None
    ood_method: str = OOD_METHOD

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float() / self.temperature, dim=1)

    def ood(self, features: torch.Tensor) -> torch.Tensor | None:
        """Out-of-distribution scores of head inputs ``features``; None without class means."""
        return None if self.class_means is None else ood_scores(features, self.class_means)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "temperature": self.temperature, "ece_before": self.ece_before, "ece_after": self.ece_after,
            "photos": self.photos, "ood_method": self.ood_method if self.class_means is not None else "none",
        }  # fmt: skip
        if self.class_means is not None:
            out["class_means"] = self.class_means.float().contiguous()
            out["ood_threshold"] = self.ood_threshold
        return out

    @classmethod
    def from_dict(cls, raw: Any, num_classes: int) -> Calibration | None:
        """A bundle's calibration; None for a bundle made before calibration. ValueError when damaged."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise ValueError("its calibration is not a table")
        temperature = float(raw["temperature"])
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"its temperature {temperature} is not a positive number")
        means = raw.get("class_means")
        threshold = raw.get("ood_threshold")
        if means is not None:
            if not isinstance(means, torch.Tensor) or means.ndim != 2 or means.shape[0] != num_classes:
                raise ValueError("its class means do not fit its classes")
            if not isinstance(threshold, (int, float)):
                raise ValueError("its out-of-distribution threshold is not a number")
            threshold = float(threshold)
            if not math.isfinite(threshold):
                raise ValueError("its out-of-distribution threshold is not a number")
        return cls(
            temperature=temperature, ece_before=float(raw.get("ece_before", math.nan)),
            ece_after=float(raw.get("ece_after", math.nan)), photos=int(raw.get("photos", 0)),
            class_means=means, ood_threshold=threshold, ood_method=str(raw.get("ood_method", OOD_METHOD)),
        )  # fmt: skip


def fit_calibration(
    val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    val_features: torch.Tensor | None = None,
    train_features: torch.Tensor | None = None,
    train_labels: torch.Tensor | None = None,
) -> Calibration:
    """The temperature from held-out ``val_logits`` (:func:`fit_temperature`; when that raises the
    expected calibration error on these photos, the temperature between 1 and it with the least
    error, so calibrating never makes the error worse where it was measured); with features, the class means of the training
    photos' features and the out-of-distribution threshold that lets :data:`OOD_PASS_RATE` of the
    validation photos through."""
    temperature = fit_temperature(val_logits, val_labels)
    before = expected_calibration_error(torch.softmax(val_logits.float(), dim=1), val_labels)
    after = expected_calibration_error(torch.softmax(val_logits.float() / temperature, dim=1), val_labels)
    if after > before:  # the likelihood's optimum is not the binned error's: go no further than helps
        steps = [math.exp(math.log(temperature) * k / 20) for k in range(21)]  # from 1 to the fitted T
        errors = [
            expected_calibration_error(torch.softmax(val_logits.float() / t, dim=1), val_labels)
            for t in steps
        ]
        best = min(range(21), key=lambda k: (errors[k], -k))  # the least error; on a tie the larger move
        temperature, after = steps[best], errors[best]
    means = threshold = None
    if (
        val_features is not None
        and train_features is not None
        and train_labels is not None
        and len(val_labels)
    ):
        x = F.normalize(_flat(train_features).float(), dim=1)
        classes = val_logits.shape[1]
        means = torch.zeros(classes, x.shape[1])
        for c in range(classes):
            mine = train_labels == c
            if mine.any():
                means[c] = F.normalize(x[mine].mean(dim=0), dim=0)
        threshold = float(torch.quantile(ood_scores(val_features, means), OOD_PASS_RATE))
    return Calibration(temperature, before, after, int(val_labels.numel()), means, threshold)


def reliability(
    probabilities: torch.Tensor, labels: torch.Tensor, bins: int = RELIABILITY_BINS
) -> list[dict[str, float]]:
    """The reliability diagram's bins: ``{"low", "high", "photos", "confidence", "accuracy"}`` (empty bins kept,
    with confidence and accuracy 0)."""
    confidence, predicted = probabilities.float().max(dim=1)
    right = (predicted == labels.to(predicted.device)).float()
    out = []
    for k in range(bins):
        low, high = k / bins, (k + 1) / bins
        inside = (confidence > low) & (confidence <= high) if k else (confidence <= high)
        count = int(inside.sum())
        out.append({
            "low": low, "high": high, "photos": count,
            "confidence": float(confidence[inside].mean()) if count else 0.0,
            "accuracy": float(right[inside].mean()) if count else 0.0,
        })  # fmt: skip
    return out


def coverage(
    probabilities: torch.Tensor, labels: torch.Tensor, thresholds: tuple[float, ...] = COVERAGE_THRESHOLDS
) -> list[dict[str, float]]:
    """If only answers at or above ``p`` are accepted: how many photos are kept and how many of those
    are right (``{"threshold", "kept", "coverage", "accuracy"}``; accuracy None when none is kept)."""
    confidence, predicted = probabilities.float().max(dim=1)
    right = predicted == labels.to(predicted.device)
    out: list[dict[str, Any]] = []
    for p in thresholds:
        kept = confidence >= p
        n = int(kept.sum())
        out.append({"threshold": p, "kept": n, "coverage": n / max(1, confidence.numel()),
                    "accuracy": float(right[kept].float().mean()) if n else None})  # fmt: skip
    return out
