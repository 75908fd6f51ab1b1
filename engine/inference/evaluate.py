"""Evaluating a bundle on a labelled folder: where the model is right, where it fails, and how badly.

Owns :class:`EvaluationReport` (accuracy, top-k accuracy, per-class precision/recall/F1/support, the
confusion matrix with rows = true class, and every image's result so the worst errors can be listed
by loss), the pure :func:`metrics_from_predictions` that computes it from predictions, the folder
level :func:`evaluate`, and the plain-text summary of the command line (:func:`format_evaluation`).

Images go through exactly the preprocessing of training's validation (``eval_transform`` of the
bundle's ``Preprocessing``, and its test-time augmentation), so for the same weights the accuracy
equals the run's val accuracy, and the mean loss (the cross-entropy of the logits, before
calibration) its val loss. Probabilities are the calibrated ones (:mod:`engine.models.calibration`).
:func:`evaluate` is plain and blocking; a GUI calls it from a worker thread with ``on_progress`` and
``should_stop``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.core.errors import TransferStudioError, raise_if_stopped
from engine.data.datasets import DatasetReport, Sample, scan_dataset
from engine.inference.predict import Predictor
from engine.models.bundle import Bundle, load_bundle
from engine.models.calibration import coverage, expected_calibration_error, reliability

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
BATCH_SIZE = 32
_LOAD_THREADS = 4
_MIN_PROB = 1e-12  # loss of a probability that underflowed to 0 is -log(1e-12), not infinity
EVALUATION_SPLITS = ("val", "train", "test", "all")


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall, F1 and number of true images of one class."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ImageResult:
    """One evaluated image: its true and predicted class (indices into the model's classes)."""

    path: Path | None
    true_index: int
    predicted_index: int
    loss: float
    probabilities: tuple[float, ...]

    @property
    def correct(self) -> bool:
        return self.true_index == self.predicted_index


@dataclass
class EvaluationReport:
    """Everything :func:`evaluate` measured; classes are the model's, in the model's order."""

    class_names: list[str]
    accuracy: float
    top_k: int
    top_k_accuracy: float
    mean_loss: float
    per_class: list[ClassMetrics]
    confusion_matrix: list[list[int]]
    results: list[ImageResult]
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    #: How honest the probabilities are (:func:`calibration_summary`): ECE before and after the
    #: temperature, the reliability diagram's bins, accuracy and coverage at thresholds, and how many
    #: photos "none of these" would reject.
    honesty: dict[str, Any] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return len(self.results)

    @property
    def misclassified(self) -> list[ImageResult]:
        """The wrongly classified images, worst (highest loss) first."""
        wrong = [r for r in self.results if not r.correct]
        return sorted(wrong, key=lambda r: r.loss, reverse=True)

    def images_in_cell(self, true_index: int, predicted_index: int) -> list[ImageResult]:
        """The images of one confusion-matrix cell, highest loss first."""
        cell = [r for r in self.results if (r.true_index, r.predicted_index) == (true_index, predicted_index)]
        return sorted(cell, key=lambda r: r.loss, reverse=True)

    def macro_average(self) -> dict[str, float]:
        """Unweighted mean precision/recall/F1 over the classes that have images in the evaluated data."""
        present = [m for m in self.per_class if m.support > 0]
        if not present:
            return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        return {
            key: float(np.mean([getattr(m, key) for m in present])) for key in ("precision", "recall", "f1")
        }

    def result_json(self, result: ImageResult) -> dict[str, Any]:
        names = self.class_names
        return {
            "path": str(result.path) if result.path is not None else None,
            "true": names[result.true_index],
            "predicted": names[result.predicted_index],
            "loss": result.loss,
            "probability": result.probabilities[result.predicted_index],
            "true_probability": result.probabilities[result.true_index],
            "probabilities": dict(zip(names, result.probabilities)),
        }

    def to_json(self, include_images: bool = False) -> dict[str, Any]:
        """A JSON-able dict; ``include_images`` adds every image's result under ``images``."""
        payload: dict[str, Any] = {
            "n_images": self.n_images,
            "accuracy": self.accuracy,
            "top_k": self.top_k,
            "top_k_accuracy": self.top_k_accuracy,
            "mean_loss": self.mean_loss,
            "class_names": list(self.class_names),
            "per_class": {
                m.name: {k: v for k, v in asdict(m).items() if k != "name"} for m in self.per_class
            },
            "macro_average": self.macro_average(),
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "misclassified": [self.result_json(r) for r in self.misclassified],
            "unreadable": [{"path": str(p), "reason": reason} for p, reason in self.unreadable],
            **self.source,
        }
        if self.honesty:
            payload["ece_before"] = self.honesty["ece_before"]
            payload["ece_after"] = self.honesty["ece_after"]
            payload["calibration"] = self.honesty
        if include_images:
            payload["images"] = [self.result_json(r) for r in self.results]
        return payload


def metrics_from_predictions(
    y_true: Sequence[int],
    y_pred: Sequence[int] | None,
    probs: Any,
    class_names: Sequence[str],
    *,
    paths: Sequence[Path] | None = None,
    losses: Sequence[float] | None = None,
    top_k: int = DEFAULT_TOP_K,
) -> EvaluationReport:
    """The report for given predictions: ``probs`` is ``[N, C]`` (rows sum to 1), labels index ``class_names``.

    ``y_pred`` None means the argmax of ``probs``. ``losses`` (per-image cross-entropy) default to
    ``-log(probability of the true class)``. Precision of a class nobody predicted, and recall of a
    class without images, are 0.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true_arr = np.asarray(y_true, dtype=np.int64)
    n, c = len(y_true_arr), len(class_names)
    if n == 0:
        raise TransferStudioError("no images to evaluate")
    if probs.shape != (n, c):
        raise ValueError(f"probs must be [{n}, {c}], got {list(probs.shape)}")
    y_pred_arr = probs.argmax(axis=1) if y_pred is None else np.asarray(y_pred, dtype=np.int64)
    if losses is None:
        losses = -np.log(np.maximum(probs[np.arange(n), y_true_arr], _MIN_PROB))
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (y_true_arr, y_pred_arr), 1)
    per_class = []
    for i, name in enumerate(class_names):
        tp, support, predicted = int(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        per_class.append(ClassMetrics(str(name), precision, recall, f1, support))
    k = max(1, min(int(top_k), c))
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    top_k_hits = int((top == y_true_arr[:, None]).any(axis=1).sum())
    results = [
        ImageResult(
            path=Path(paths[i]) if paths is not None else None,
            true_index=int(y_true_arr[i]),
            predicted_index=int(y_pred_arr[i]),
            loss=float(losses[i]),
            probabilities=tuple(float(p) for p in probs[i]),
        )
        for i in range(n)
    ]
    return EvaluationReport(
        class_names=[str(name) for name in class_names],
        accuracy=int(np.trace(cm)) / n,
        top_k=k,
        top_k_accuracy=top_k_hits / n,
        mean_loss=float(np.mean(losses)),
        per_class=per_class,
        confusion_matrix=cm.tolist(),
        results=results,
    )


def select_samples(report: DatasetReport, split: str | None) -> tuple[list[Sample], str]:
    """The samples to evaluate and the split's name.

    ``None`` picks ``val`` when the folder has a val/ folder, else every image (a flat class-folder
    layout); ``all`` is every image of every split.
    """
    if split is None:
        split = "all" if report.auto_split else "val"
    if split not in EVALUATION_SPLITS:
        raise TransferStudioError(f"unknown split {split!r}; choose one of {', '.join(EVALUATION_SPLITS)}")
    if split == "all":
        return [s for samples in report.splits.values() for s in samples], split
    if split not in report.splits:
        raise TransferStudioError(f"{report.root} has no {split}/ folder")
    return list(report.splits[split]), split


def _as_predictor(model: str | Path | Bundle | Predictor, device: str) -> Predictor:
    if isinstance(model, Predictor):
        return model
    return Predictor(model if isinstance(model, Bundle) else load_bundle(model), device)


def _label_map(dataset_classes: Sequence[str], model_classes: Sequence[str], root: Path) -> list[int]:
    """Dataset label -> model class index, matched by name."""
    index = {name: i for i, name in enumerate(model_classes)}
    unknown = [name for name in dataset_classes if name not in index]
    if unknown:
        listed = ", ".join(repr(u) for u in unknown)
        raise TransferStudioError(
            f"the model does not know the class{'es' if len(unknown) > 1 else ''} {listed} of {root}; "
            f"it was trained on: {', '.join(model_classes)}"
        )
    return [index[name] for name in dataset_classes]


def evaluate(
    model: str | Path | Bundle | Predictor,
    data: str | Path | DatasetReport,
    *,
    split: str | None = None,
    device: str = "auto",
    top_k: int = DEFAULT_TOP_K,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EvaluationReport:
    """Evaluate a bundle (path, :class:`Bundle` or loaded :class:`Predictor`) on a labelled folder.

    ``data`` is a dataset folder (either layout, see :func:`select_samples`) or a scanned report. The
    folder's classes are matched to the model's by name. ``on_progress(done, total)`` counts images;
    ``should_stop()`` is polled between batches and raises :class:`~engine.core.errors.Cancelled`.
    """
    predictor = _as_predictor(model, device)
    bundle = predictor.bundle
    if isinstance(data, DatasetReport):
        report = data
    else:
        # The bundle's own split settings, so an auto-split "val" is the very images the run validated on.
        cfg = bundle.config
        report = scan_dataset(
            data, val_fraction=float(cfg.get("val_fraction", 0.2)), seed=int(cfg.get("seed", 0)), verify=False
        )
    samples, split_name = select_samples(report, split)
    to_model = _label_map(report.classes, bundle.class_names, report.root)
    total = len(samples)
    if on_progress:
        on_progress(0, total)

    paths: list[Path] = []
    y_true: list[int] = []
    probs: list[torch.Tensor] = []
    losses: list[torch.Tensor] = []
    raw_logits: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []
    unreadable: list[tuple[Path, str]] = []
    predictor.model.eval()
    with ThreadPoolExecutor(_LOAD_THREADS, thread_name_prefix="evaluate") as pool:
        for start in range(0, total, batch_size):
            raise_if_stopped(should_stop, "evaluation")
            chunk = samples[start : start + batch_size]
            loaded = list(pool.map(predictor.try_preprocessed, [s.path for s in chunk]))
            tensors, files = [], []
            for sample, item in zip(chunk, loaded):
                if isinstance(item, str):
                    unreadable.append((sample.path, item))
                    continue
                tensors.append(item)
                files.append(sample.path)
                y_true.append(to_model[sample.label])
            paths += files
            if tensors:
                labels = torch.tensor(y_true[len(y_true) - len(tensors) :])
                logits, ood = predictor.file_outputs(files, torch.stack(tensors))
                batch_probs = predictor.probabilities_of(logits)
                probs.append(batch_probs)
                # the model's own cross-entropy (before calibration): the run's val loss
                losses.append(torch.nn.functional.cross_entropy(logits, labels, reduction="none"))
                raw_logits.append(logits)
                scores.append(ood)
            if on_progress:
                on_progress(min(start + batch_size, total), total)
    if not paths:
        raise TransferStudioError(f"no image of {report.root} ({split_name}) could be read")
    for path, reason in unreadable:
        log.warning("skipping %s: %s", path, reason)
    result = metrics_from_predictions(
        y_true,
        None,
        torch.cat(probs).numpy(),
        bundle.class_names,
        paths=paths,
        losses=torch.cat(losses).tolist(),
        top_k=top_k,
    )
    result.unreadable = unreadable
    result.honesty = calibration_summary(
        predictor, torch.cat(raw_logits), torch.tensor(y_true), torch.cat(scores)
    )
    result.source = {
        "data": str(report.root),
        "split": split_name,
        "architecture": bundle.architecture,
        "head": bundle.head.kind,
    }
    return result


def calibration_summary(
    predictor: Predictor, logits: torch.Tensor, labels: torch.Tensor, ood: torch.Tensor
) -> dict[str, Any]:
    """How honest the model's probabilities are on these photos: the expected calibration error of
    the plain softmax (before) and of the calibrated probabilities (after; the same for a model made
    before calibration), both reliability diagrams, accuracy and coverage at thresholds, and how many
    photos "none of these" rejects at the model's threshold."""
    raw = torch.softmax(logits.float(), dim=1)
    calibrated = predictor.probabilities_of(logits)
    rejected = [bool(predictor.is_unknown(float(v))) for v in ood]
    return {
        "calibrated": predictor.calibrated,
        "temperature": predictor.calibration.temperature if predictor.calibration else None,
        "ece_before": expected_calibration_error(raw, labels),
        "ece_after": expected_calibration_error(calibrated, labels),
        "reliability_before": reliability(raw, labels),
        "reliability_after": reliability(calibrated, labels),
        "coverage": coverage(calibrated, labels),
        "unknown_threshold": predictor.unknown_threshold,
        "rejected": sum(rejected),
        "rejected_share": sum(rejected) / max(1, len(rejected)),
    }


def format_evaluation(report: EvaluationReport, max_errors: int = 10) -> str:
    """Human-readable summary: overall numbers, per-class table, confusion matrix, worst errors."""
    names = report.class_names
    width = max(len("macro avg"), *(len(n) for n in names))
    src = report.source
    lines = [
        f"Evaluated {report.n_images} images"
        + (f" of {src['data']} ({src['split']})" if src.get("data") else ""),
        f"accuracy {report.accuracy:.4f}   top-{report.top_k} accuracy {report.top_k_accuracy:.4f}   "
        f"mean loss {report.mean_loss:.4f}",
        "",
        f"  {'class'.ljust(width)} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
    ]
    for m in report.per_class:
        lines.append(
            f"  {m.name.ljust(width)} {m.precision:>9.4f} {m.recall:>9.4f} {m.f1:>9.4f} {m.support:>8}"
        )
    macro = report.macro_average()
    lines.append(
        f"  {'macro avg'.ljust(width)} {macro['precision']:>9.4f} {macro['recall']:>9.4f} {macro['f1']:>9.4f}"
    )
    cell = max(5, *(len(str(v)) for row in report.confusion_matrix for v in row))
    lines += ["", "Confusion matrix (rows = true class, columns = predicted):"]
    lines.append("  " + " " * width + "".join(f" {n[:cell]:>{cell}}" for n in names))
    for name, row in zip(names, report.confusion_matrix):
        lines.append("  " + name.ljust(width) + "".join(f" {v:>{cell}}" for v in row))
    wrong = report.misclassified
    if wrong:
        lines += ["", f"Misclassified: {len(wrong)} (highest loss first)"]
        for r in wrong[:max_errors]:
            p = r.probabilities
            lines.append(
                f"  {r.path}  true {names[r.true_index]} ({p[r.true_index]:.3f})  "
                f"predicted {names[r.predicted_index]} ({p[r.predicted_index]:.3f})  loss {r.loss:.3f}"
            )
        if len(wrong) > max_errors:
            lines.append(f"  ... and {len(wrong) - max_errors} more (see --json)")
    honesty = report.honesty
    if honesty:
        lines += [""]
        if honesty["calibrated"]:
            lines.append(
                f"Calibration: expected calibration error {honesty['ece_before']:.3f} before, "
                f"{honesty['ece_after']:.3f} after (temperature {honesty['temperature']:.2f})"
            )
        else:
            lines.append(
                f"Uncalibrated model (made before calibration): expected calibration error {honesty['ece_before']:.3f}"
            )
        lines.append("If only answers at or above p are accepted: " + ", ".join(
            f"p {c['threshold']:g}: {c['coverage']:.0%} kept, " + ("none" if c["accuracy"] is None else f"{c['accuracy']:.1%} right")
            for c in honesty["coverage"]
        ))  # fmt: skip
        if honesty["unknown_threshold"] is not None:
            lines.append(
                f"None of these: {honesty['rejected']} of {report.n_images} photos would be answered unknown"
            )
    if report.unreadable:
        lines += ["", f"Unreadable images skipped: {len(report.unreadable)}"]
    return "\n".join(lines)
