"""What an export is like where it goes: its size, its accuracy and its speed, against the app's model.

Owns :class:`ExportReport` and :func:`export_report`: the exported file and the app's own model
(:class:`~engine.inference.predict.Predictor`, in the bundle's precision, on this CPU) classify the same
preprocessed validation photos; the report gives the file's size, both top-1 accuracies, how often
their top-1 agree, the largest probability difference, and the median time per photo at batch 1 of
each (for ``onnx-int8`` also the float32 ONNX's). A drop of more than :data:`WARN_DROP` in accuracy
is a warning, listing the photos whose answer changed. A format that cannot run on this machine
(Core ML off macOS) reports its size and why there are no figures.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.core.errors import TransferStudioError, raise_if_stopped
from engine.data.datasets import Sample
from engine.inference.export import runner
from engine.inference.predict import Predictor
from engine.models.bundle import Bundle

log = logging.getLogger(__name__)

#: An accuracy drop above this (1 point) is shown as a warning.
WARN_DROP = 0.01
#: Photos timed one at a time for the latency (after two warm-up runs).
LATENCY_PHOTOS = 30
BATCH = 32


@dataclass(frozen=True)
class ExportReport:
    """One export's figures on the validation photos (None where the file cannot run here)."""

    format: str
    path: Path
    size_bytes: int
    n_images: int = 0
    val_accuracy: float | None = None
    reference_val_accuracy: float | None = None
    top1_agreement: float | None = None
    max_prob_diff: float | None = None
    latency_ms: float | None = None
    reference_latency_ms: float | None = None
    fp32_onnx_latency_ms: float | None = None
    reason: str | None = None  # why there are no figures
    #: The photos whose top-1 changed: (photo, the app's answer, the export's answer).
    changed: tuple[tuple[Path, str, str], ...] = field(default=())

    @property
    def available(self) -> bool:
        return self.reason is None

    @property
    def accuracy_drop(self) -> float | None:
        if self.val_accuracy is None or self.reference_val_accuracy is None:
            return None
        return self.reference_val_accuracy - self.val_accuracy

    @property
    def warning(self) -> str | None:
        """In words, when the export lost more than :data:`WARN_DROP` of the app's accuracy."""
        drop = self.accuracy_drop
        if drop is None or drop <= WARN_DROP:
            return None
        return (
            f"the {self.format} model is {100 * drop:.1f} points less accurate than the app's "
            f"({self.val_accuracy:.1%} against {self.reference_val_accuracy:.1%}); "
            f"{len(self.changed)} photo(s) changed answer"
        )

    def to_json(self) -> dict[str, Any]:
        """The summary line of ``export --json``."""
        payload: dict[str, Any] = {
            "format": self.format,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "val_accuracy": self.val_accuracy,
            "reference_val_accuracy": self.reference_val_accuracy,
            "top1_agreement": self.top1_agreement,
            "max_prob_diff": self.max_prob_diff,
            "latency_ms": self.latency_ms,
            "reference_latency_ms": self.reference_latency_ms,
        }
        if self.format == "onnx-int8":
            payload["fp32_onnx_latency_ms"] = self.fp32_onnx_latency_ms
        return payload

    def details(self) -> dict[str, Any]:
        """Everything, for the window and the detailed JSON: the summary, the reason, the warning and
        the photos that changed answer."""
        return self.to_json() | {
            "n_images": self.n_images,
            "available": self.available,
            "reason": self.reason,
            "warning": self.warning,
            "changed": [{"path": str(p), "app": a, "export": e} for p, a, e in self.changed],
        }

    def rows(self) -> list[tuple[str, str, str]]:
        """(measure, this export, the app's model) in words, for a table."""

        def pct(value: float | None) -> str:
            return "-" if value is None else f"{value:.1%}"

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        rows = [
            ("file size", _size_text(self.size_bytes), "-"),
            (f"top-1 accuracy ({self.n_images} val photos)", pct(self.val_accuracy), pct(self.reference_val_accuracy)),
            ("top-1 agreement with the app", pct(self.top1_agreement), "-"),
            ("largest probability difference", "-" if self.max_prob_diff is None else f"{self.max_prob_diff:.4f}", "-"),
            ("median time per photo (batch 1, this CPU)", ms(self.latency_ms), ms(self.reference_latency_ms)),
        ]  # fmt: skip
        if self.fp32_onnx_latency_ms is not None:
            rows.append(("float32 ONNX, for comparison", ms(self.fp32_onnx_latency_ms), "-"))
        return rows


def size_on_disk(path: Path, fmt: str) -> int:
    """Bytes of an export: the file, an OpenVINO ``.xml`` with its ``.bin``, a Core ML folder's files."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    size = path.stat().st_size
    if fmt == "openvino" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return size


def _size_text(size: int) -> str:
    return f"{size / 1024:.0f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB"


def export_report(
    bundle: Bundle,
    fmt: str,
    path: Path,
    samples: Sequence[Sample],
    dataset_classes: Sequence[str],
    *,
    fp32_onnx: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ExportReport:
    """Classify ``samples`` (labelled photos; their labels index ``dataset_classes``) with the export at
    ``path`` and with the app's model; see the module docstring. ``fp32_onnx``: the float32 ONNX file
    whose latency an ``onnx-int8`` report gives beside its own."""
    size = size_on_disk(path, fmt)
    run = runner(path, fmt)
    if isinstance(run, str):
        return ExportReport(fmt, path, size, reason=run)
    index = {name: i for i, name in enumerate(bundle.class_names)}
    labelled = [
        (s.path, index[dataset_classes[s.label]]) for s in samples if dataset_classes[s.label] in index
    ]
    if not labelled:
        raise TransferStudioError("no validation photo of the model's classes to check the export on")
    predictor = Predictor(bundle, "cpu")
    names = bundle.class_names
    right = app_right = agree = seen = 0
    max_diff = 0.0
    changed: list[tuple[Path, str, str]] = []
    timed: list[torch.Tensor] = []
    for start in range(0, len(labelled), BATCH):
        raise_if_stopped(should_stop, "the export's report")
        chunk = labelled[start : start + BATCH]
        loaded = [(p, y, predictor.try_preprocessed(p)) for p, y in chunk]
        kept = [(p, y, t) for p, y, t in loaded if isinstance(t, torch.Tensor)]
        if kept:
            batch = torch.stack([t for _, _, t in kept])
            timed += [t for _, _, t in kept][: LATENCY_PHOTOS - len(timed)]
            logits, _ = predictor.file_outputs([p for p, _, _ in kept], batch)
            app = predictor.probabilities_of(logits)
            first = torch.from_numpy(np.asarray(run(batch.numpy())[0])).float()
            other = first if predictor.calibrated else torch.softmax(first, dim=1)
            app_top, other_top = app.argmax(1).tolist(), other.argmax(1).tolist()
            for (photo, label, _), a, o in zip(kept, app_top, other_top, strict=True):
                right += int(o == label)
                app_right += int(a == label)
                agree += int(a == o)
                if a != o:
                    changed.append((photo, names[a], names[o]))
            max_diff = max(max_diff, float((app - other).abs().max()))
            seen += len(kept)
        if on_progress:
            on_progress(min(start + BATCH, len(labelled)), len(labelled))
    if seen == 0:
        raise TransferStudioError("no readable validation photo to check the export on")
    runs: dict[str, Callable[[np.ndarray], list[np.ndarray]]] = {
        "export": run,
        "app": lambda x: [predictor.outputs(torch.from_numpy(x))[0].numpy()],
    }
    if fmt == "onnx-int8" and fp32_onnx is not None:
        fp32_run = runner(fp32_onnx, "onnx")
        if not isinstance(fp32_run, str):
            runs["fp32"] = fp32_run
    latency = _median_ms(runs, timed)
    return ExportReport(
        fmt,
        path,
        size,
        n_images=seen,
        val_accuracy=right / seen,
        reference_val_accuracy=app_right / seen,
        top1_agreement=agree / seen,
        max_prob_diff=max_diff,
        latency_ms=latency["export"],
        reference_latency_ms=latency["app"],
        fp32_onnx_latency_ms=latency.get("fp32"),
        changed=tuple(changed),
    )


def _median_ms(
    runs: dict[str, Callable[[np.ndarray], list[np.ndarray]]], photos: Sequence[torch.Tensor]
) -> dict[str, float]:
    """The median milliseconds of each of ``runs`` on one photo at a time: each runs over all the photos
    in turn (after two warm-up runs; taking turns photo by photo would measure how one runtime's idle
    threads slow the other's), in two rounds, the second in the reverse order."""
    inputs = [t.unsqueeze(0).numpy() for t in photos]
    times: dict[str, list[float]] = {name: [] for name in runs}
    for order in (list(runs), list(reversed(runs))):
        for name in order:
            run = runs[name]
            for warm in inputs[:2]:
                run(warm)
            for single in inputs:
                started = time.perf_counter()
                run(single)
                times[name].append((time.perf_counter() - started) * 1000)
    return {name: round(statistics.median(values), 2) for name, values in times.items()}
