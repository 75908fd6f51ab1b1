"""Proposals for photos to sort: a suggested class, a calibrated confidence and a place in the review order.

:func:`fit_proposals` fits a logistic-regression head on the labelled photos' cached features (under a
second), calibrates it with a temperature fitted on its own cross-validated predictions
(:mod:`engine.models.calibration`: out-of-fold logits, so a confidence of 0.9 means right about nine
times in ten), and ranks the photos to sort (:mod:`engine.sorting.review`). The cross-validated
accuracy is the model's estimated accuracy so far. A class with no labelled photo gets no suggestions
until it has one. :func:`bundle_proposals` gives the same from an opened model instead.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.core.errors import Cancelled, StopCheck, TransferStudioError
from engine.data.datasets import DatasetReport, SkippedFile
from engine.models.calibration import fit_temperature
from engine.sorting.features import PhotoFeatures
from engine.sorting.review import review_order
from engine.training.linear_head import DEFAULT_WEIGHT_DECAY, fit_linear_head, held_out_folds

#: Folds of the cross-validation that calibrates the head and estimates its accuracy.
CALIBRATION_FOLDS = 5
#: The confidence "accept every photo the model is sure of" starts from.
DEFAULT_SURE = 0.9


@dataclass(frozen=True)
class Proposal:
    """One photo to sort: the suggested class, its calibrated probability, and 1 = review first."""

    path: Path
    suggested: str
    confidence: float
    review_rank: int
    runner_up: str | None = None  # the second likeliest class
    runner_up_confidence: float = 0.0


@dataclass
class Proposals:
    """Every photo to sort with its proposal (in the order the photos were given)."""

    classes: list[str]  # the dataset's classes (also those with no labelled photo yet)
    labeled: int
    proposals: list[Proposal]
    temperature: float = 1.0
    estimated_accuracy: float | None = None  # cross-validated on the labelled photos
    classes_without_photos: list[str] = field(default_factory=list)  # never suggested until they have one
    skipped: list[SkippedFile] = field(default_factory=list)
    source: str = ""  # "efficientnet_lite0 features" or the bundle's path

    def in_review_order(self) -> list[Proposal]:
        return sorted(self.proposals, key=lambda p: p.review_rank)

    def sure(self, threshold: float) -> list[Proposal]:
        """The proposals at or above ``threshold`` confidence (in review order)."""
        return [p for p in self.in_review_order() if p.confidence >= threshold]

    def to_json(self, root: Path) -> dict[str, Any]:
        """What ``sort --json`` prints: paths relative to the dataset ``root`` when inside it."""
        return {
            "classes": list(self.classes),
            "labeled": self.labeled,
            "unlabeled": len(self.proposals),
            "estimated_accuracy": self.estimated_accuracy,
            "temperature": self.temperature,
            "classes_without_photos": list(self.classes_without_photos),
            "skipped": [{"path": shown_path(s.path, root), "reason": s.reason} for s in self.skipped],
            "proposals": [
                {"path": shown_path(p.path, root), "suggested": p.suggested,
                 "confidence": round(p.confidence, 6), "review_rank": p.review_rank}
                for p in self.in_review_order()
            ],
        }  # fmt: skip


def expected_mistakes(proposals: Sequence[Proposal]) -> float:
    """How many of ``proposals`` are expected to be wrong: the sum of ``1 - confidence``."""
    return sum(1.0 - p.confidence for p in proposals)


def shown_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (forward slashes) when inside it, else absolute."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread meanwhile: the head's many tiny L-BFGS steps run 10 to 50 times faster than
    on two (a fit on 24 labelled photos: 0.014 s instead of 0.4 s on a 2-core CPU), where waking the
    second thread costs more than the step. The setting is the process's, and comes back after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_proposals(
    features: PhotoFeatures, *, seed: int = 0, weight_decay: float = DEFAULT_WEIGHT_DECAY
) -> Proposals:
    """Proposals for ``features.unlabeled`` from a head fitted on ``features.labeled`` (see the module)."""
    with one_thread():
        return _fit_proposals(features, seed, weight_decay)


def _fit_proposals(features: PhotoFeatures, seed: int, weight_decay: float) -> Proposals:
    counts = torch.bincount(torch.tensor(features.labels, dtype=torch.long), minlength=len(features.classes))
    present = [c for c in range(len(features.classes)) if counts[c] > 0]
    if len(present) < 2:
        raise TransferStudioError(
            f"Sorting needs labelled photos of at least two classes; {len(present)} class has some. "
            "Sort a few photos of each class by hand first (or name a group on the photo map)"
        )
    own = {c: k for k, c in enumerate(present)}
    y = torch.tensor([own[c] for c in features.labels], dtype=torch.long)
    x = features.labeled
    folds = min(CALIBRATION_FOLDS, max(2, int(counts[present].min())))
    fold_of = held_out_folds(y, folds, seed)
    held_out = torch.zeros(len(y), len(present))
    for k in range(folds):
        held = fold_of == k
        if held.any() and (~held).any():
            head = fit_linear_head(x[~held], y[~held], len(present), weight_decay=weight_decay)
            held_out[held] = head.logits(x[held]).cpu()
    temperature = fit_temperature(held_out, y)
    accuracy = float((held_out.argmax(dim=1) == y).float().mean())
    head = fit_linear_head(x, y, len(present), weight_decay=weight_decay)
    probabilities = torch.softmax(head.logits(features.unlabeled).cpu() / temperature, dim=1)
    order = review_order(probabilities, features.unlabeled, x)
    rank = {i: n for n, i in enumerate(order, start=1)}
    return Proposals(
        classes=list(features.classes),
        labeled=len(y),
        proposals=_proposals(
            features.unlabeled_paths, probabilities, [features.classes[c] for c in present], rank
        ),
        temperature=temperature,
        estimated_accuracy=accuracy,
        classes_without_photos=[n for c, n in enumerate(features.classes) if counts[c] == 0],
        skipped=list(features.skipped),
        source=f"{features.backbone} features",
    )


def _proposals(
    paths: Sequence[Path], probabilities: torch.Tensor, names: Sequence[str], rank: dict[int, int]
) -> list[Proposal]:
    out: list[Proposal] = []
    if len(paths) == 0:
        return out
    k = min(2, probabilities.shape[1])
    values, indices = probabilities.topk(k, dim=1)
    for i, path in enumerate(paths):
        second = (names[int(indices[i, 1])], float(values[i, 1])) if k > 1 else (None, 0.0)
        out.append(
            Proposal(path, names[int(indices[i, 0])], float(values[i, 0]), rank[i], second[0], second[1])
        )
    return out


def read_accept_csv(text: str) -> list[tuple[str, str]]:
    """Rows ``(path, class)`` of an ``--accept`` file (columns ``path,class``, a header line)."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"path", "class"} <= {f.strip() for f in reader.fieldnames}:
        raise TransferStudioError("the accept file needs a header line with the columns path,class")
    rows = []
    for n, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not row.get("path") or not row.get("class"):
            raise TransferStudioError(f"line {n} of the accept file needs both a path and a class")
        rows.append((row["path"], row["class"]))
    return rows


def bundle_proposals(
    bundle_path: str | Path,
    report: DatasetReport,
    *,
    device: str = "auto",
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: StopCheck | None = None,
) -> Proposals:
    """Proposals from an opened model (a bundle) for ``report.unlabeled``.

    Its probabilities are calibrated with the model's own temperature (one made before calibration:
    a temperature fitted on the dataset's validation photos of its classes), and its accuracy on those
    photos is the estimate. The review order's diversity is measured between the photos'
    logits (the bundle carries no feature store).
    """
    from engine.inference.predict import Predictor

    predictor = Predictor.from_bundle(bundle_path, device)
    names = predictor.class_names
    val = [s for s in report.splits.get("val", []) if report.classes[s.label] in names]
    val_logits, val_kept, _ = _file_logits(predictor, [s.path for s in val], on_progress, should_stop, 0)
    y = torch.tensor([names.index(report.classes[val[i].label]) for i in val_kept], dtype=torch.long)
    if predictor.calibration is not None:  # the run's own calibration
        temperature = predictor.calibration.temperature
    else:  # a model made before calibration: fitted here, on the validation photos
        temperature = fit_temperature(val_logits, y) if len(y) else 1.0
    accuracy = float((val_logits.argmax(dim=1) == y).float().mean()) if len(y) else None
    logits, kept, failed = _file_logits(predictor, report.unlabeled, on_progress, should_stop, len(val))
    probabilities = torch.softmax(logits / temperature, dim=1)
    order = review_order(probabilities, logits, val_logits)
    rank = {i: n for n, i in enumerate(order, start=1)}
    return Proposals(
        classes=list(names),
        labeled=sum(len(s) for s in report.splits.values()),
        proposals=_proposals([report.unlabeled[i] for i in kept], probabilities, names, rank),
        temperature=temperature,
        estimated_accuracy=accuracy,
        skipped=[SkippedFile(report.unlabeled[i], reason) for i, reason in failed],
        source=str(bundle_path),
    )


def _file_logits(
    predictor: Any,
    paths: Sequence[Path],
    on_progress: Callable[[int, int], None] | None,
    should_stop: StopCheck | None,
    offset: int,
) -> tuple[torch.Tensor, list[int], list[tuple[int, str]]]:
    """Logits of the readable ``paths`` (rows), their indices, and ``(index, reason)`` of the others."""
    from concurrent.futures import ThreadPoolExecutor

    rows: list[torch.Tensor] = []
    kept: list[int] = []
    failed: list[tuple[int, str]] = []
    batch = 32
    with ThreadPoolExecutor(4, thread_name_prefix="sort") as pool:
        for start in range(0, len(paths), batch):
            if should_stop and should_stop():
                raise Cancelled("the proposals stopped")
            chunk = list(range(start, min(start + batch, len(paths))))
            loaded = list(pool.map(predictor.try_preprocessed, [paths[i] for i in chunk]))
            good = [(i, t) for i, t in zip(chunk, loaded) if isinstance(t, torch.Tensor)]
            failed += [(i, t) for i, t in zip(chunk, loaded) if isinstance(t, str)]
            if good:
                rows.append(
                    predictor.file_logits([paths[i] for i, _ in good], torch.stack([t for _, t in good]))
                )
                kept += [i for i, _ in good]
            if on_progress:
                on_progress(offset + chunk[-1] + 1, offset + len(paths))
    width = len(predictor.class_names)
    return (torch.cat(rows) if rows else torch.empty(0, width)), kept, failed
