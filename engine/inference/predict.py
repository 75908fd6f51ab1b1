"""Classifying images with a trained bundle: one image, a list, or a whole folder, top-k with probabilities.

Probabilities are calibrated with the bundle's temperature (:mod:`engine.models.calibration`), and a
photo whose features are unlike every class's training photos (its out-of-distribution score above
the bundle's threshold) is answered "unknown" ("none of these"). A bundle made before calibration
predicts as before: uncalibrated, never "unknown".
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from engine.core.device import resolve_device
from engine.core.errors import TransferStudioError, UnreadableImageError
from engine.core.files import atomic_write_text
from engine.core.memory import fit_batch
from engine.core.precision import for_bundle
from engine.data.images import IMAGE_EXTENSIONS, open_image
from engine.models.bundle import Bundle, load_bundle
from engine.models.preprocessing import eval_transform
from engine.models.tta import tta_logits

log = logging.getLogger(__name__)

#: The label of an image whose top probability is below the confidence threshold.
UNSURE_LABEL = "unsure"
#: The label of an image unlike every class's training photos ("none of these").
UNKNOWN_LABEL = "unknown"


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one image, best first, or why it could not be classified."""

    path: Path
    top: tuple[tuple[str, float], ...]
    error: str | None = None
    unknown: bool = False  # unlike every class's training photos: "none of these"
    ood_score: float | None = None  # how unlike (None: the bundle cannot tell)

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None

    @property
    def probability(self) -> float | None:
        return self.top[0][1] if self.top else None

    def label_at(self, threshold: float | None) -> str | None:
        """The top-1 class, ``UNKNOWN_LABEL`` for a photo unlike every class, or ``UNSURE_LABEL`` when
        the top probability is below ``threshold``."""
        if self.unknown and self.top:
            return UNKNOWN_LABEL
        if threshold is not None and self.top and self.top[0][1] < threshold:
            return UNSURE_LABEL
        return self.label


def list_images(path: str | Path) -> list[Path]:
    """``path`` itself when it is a file, else every image file under the folder, sorted."""
    path = Path(path)
    if not path.exists():
        raise TransferStudioError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    found = [
        p
        for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted(found)


#: Threads that decode photos for a prediction (PIL releases the GIL while it decodes).
LOAD_THREADS = 4
#: How many files' answers a predictor remembers (a few floats each: 100,000 files of 10 classes take
#: about 4 MB).
REMEMBERED_FILES = 100_000


class Predictor:
    """A bundle's model ready for inference."""

    def __init__(self, bundle: Bundle, device: str = "auto", *, precision: str | None = None) -> None:
        self.bundle = bundle
        self.device = resolve_device(device)
        #: The bundle's own precision where this device computes it (engine.core.precision.for_bundle):
        #: its answers are then exactly those of the run's validation. ``precision`` (a recorded name,
        #: e.g. ``float32``) computes in another: an export's parity check compares float32 with float32.
        self.precision = for_bundle(precision or bundle.precision, self.device)
        # channels_last, as training ran it: faster convolutions on CPUs and GPUs alike, and the same
        # float sums as the run's validation (BENCHMARKS.md, "CPU floor").
        model, feature_head = bundle.build()
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self.transform = eval_transform(bundle.preprocessing)
        self.calibration = bundle.calibration
        self._feature_head = dict(self.model.named_modules())[feature_head] if feature_head else None
        #: The out-of-distribution score above which a photo is "unknown"; None: never (adjustable).
        self.unknown_threshold: float | None = self.calibration.ood_threshold if self.calibration else None
        # A file's answer (logits and out-of-distribution score), by its identity (path, size,
        # modification time): the photos a user predicts, evaluates and checks an export on are run
        # through the network once per predictor.
        self._remembered: OrderedDict[tuple[str, int, int], tuple[torch.Tensor, float]] = OrderedDict()
        self._remembered_lock = threading.Lock()  # a window may run two jobs on one predictor
        # One pass through the model at a time: a pass hooks the shared feature layer to read the
        # features of "none of these", and two threads inside it would read each other's.
        self._pass_lock = threading.Lock()

    @property
    def calibrated(self) -> bool:
        """Whether the bundle carries a calibration (made by a version that fits one)."""
        return self.calibration is not None

    @property
    def can_say_unknown(self) -> bool:
        """Whether this model can tell a photo unlike every class ("none of these")."""
        return (
            self.calibration is not None
            and self.calibration.class_means is not None
            and self._feature_head is not None
        )

    def load(self, path: str | Path) -> Image.Image:
        """Decode an image the way training did for this model (JPEG draft to its resize size)."""
        return open_image(path, min_size=self.bundle.preprocessing.resize_size)

    @classmethod
    def from_bundle(cls, path: str | Path, device: str = "auto") -> Predictor:
        return cls(load_bundle(path), device)

    @property
    def class_names(self) -> list[str]:
        return self.bundle.class_names

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Main logits of a preprocessed ``[B, 3, H, W]`` batch, averaged over the bundle's test-time
        augmentation views (the batch alone, or also its mirror image), on the CPU as float32."""
        return self.outputs(batch)[0]

    @torch.inference_mode()
    def outputs(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`logits` and each photo's out-of-distribution score (of its plain view's features;
        NaN when the model cannot tell), in one pass."""
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        seen: list[torch.Tensor] = []
        handle = None
        with self._pass_lock:
            if self.can_say_unknown and self._feature_head is not None:
                handle = self._feature_head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
            try:
                with self.precision.autocast(self.device):
                    logits = tta_logits(self.model, batch, self.bundle.preprocessing.tta).float().cpu()
            finally:
                if handle is not None:
                    handle.remove()
        scores = None
        if seen and self.calibration is not None:
            scores = self.calibration.ood(seen[0].float().cpu())  # the first call: the plain view
        if scores is None:
            scores = torch.full((logits.shape[0],), math.nan)
        return logits, scores

    def probabilities_of(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities from logits: calibrated with the bundle's temperature (softmax without one)."""
        if self.calibration is None:
            return torch.softmax(logits.float(), dim=1)
        return self.calibration.probabilities(logits)

    def file_logits(self, files: Sequence[Path], batch: torch.Tensor) -> torch.Tensor:
        """:meth:`logits` of ``batch``, the preprocessed images of ``files`` (row for row)."""
        return self.file_outputs(files, batch)[0]

    def file_outputs(self, files: Sequence[Path], batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`outputs` of ``batch``, the preprocessed images of ``files`` (row for row).

        Each file's answer is remembered by its path, size and modification time: a file this
        predictor has seen unchanged is not run through the network again (the model is fixed).
        """
        keys = [_identity(path) for path in files]
        with self._remembered_lock:
            known = {
                i: self._remembered[k] for i, k in enumerate(keys) if k is not None and k in self._remembered
            }
        todo = [i for i in range(len(keys)) if i not in known]
        fresh: dict[int, tuple[torch.Tensor, float]] = {}
        if todo:
            logits, scores = self.outputs(batch[todo])
            fresh = {i: (logits[n], float(scores[n])) for n, i in enumerate(todo)}
        with self._remembered_lock:
            for i in todo:
                key = keys[i]
                if key is not None:
                    self._remembered[key] = fresh[i]
            for i in known:
                key = keys[i]
                if key is not None and key in self._remembered:
                    self._remembered.move_to_end(key)
            while len(self._remembered) > REMEMBERED_FILES:
                self._remembered.popitem(last=False)
        answers = [known[i] if i in known else fresh[i] for i in range(len(keys))]
        return torch.stack([a[0] for a in answers]), torch.tensor([a[1] for a in answers])

    def is_unknown(self, score: float) -> bool:
        """Whether an out-of-distribution ``score`` is past the threshold ("none of these")."""
        return self.unknown_threshold is not None and math.isfinite(score) and score > self.unknown_threshold

    def relabelled(self, prediction: Prediction) -> Prediction:
        """``prediction`` answered again at the current "none of these" threshold (no new pass)."""
        if prediction.ood_score is None:
            return prediction
        return replace(prediction, unknown=self.is_unknown(prediction.ood_score))

    def probabilities(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Softmax probabilities, one row per image, on the CPU."""
        batch = torch.stack([self.transform(img) for img in images])
        return self.probabilities_of(self.logits(batch))

    def preprocessed(self, path: str | Path) -> torch.Tensor:
        """The file at ``path`` decoded and preprocessed (UnreadableImageError if it cannot be)."""
        return self.transform(self.load(path))

    def predict_image(self, image: str | Path | Image.Image, top_k: int = 3) -> list[tuple[str, float]]:
        """Top-k (class, probability) for one image; UnreadableImageError if it cannot be decoded."""
        img = image if isinstance(image, Image.Image) else self.load(image)
        return self._top(self.probabilities([img])[0], top_k)

    def classify_image(self, image: Image.Image, top_k: int = 3, name: str = "") -> Prediction:
        """The full answer for one decoded image (a camera frame): top-k classes and "none of these".

        ``name`` stands in for the file's path in the :class:`Prediction`.
        """
        logits, scores = self.outputs(self.transform(image.convert("RGB")).unsqueeze(0))
        return self._prediction(Path(name), self.probabilities_of(logits)[0], float(scores[0]), top_k)

    def predict_paths(
        self,
        paths: Iterable[str | Path],
        top_k: int = 3,
        batch_size: int = 32,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[Prediction]:
        """Classify many files; an unreadable file gets a Prediction with ``error`` set, never an exception."""
        files = [Path(p) for p in paths]
        results: list[Prediction] = []
        if self.device.type == "cpu":
            crop = self.bundle.preprocessing.crop_size
            batch_size = fit_batch(batch_size, crop, training=False, what="the prediction batch")
        with ThreadPoolExecutor(
            LOAD_THREADS, thread_name_prefix="predict"
        ) as pool:  # PIL decodes off the GIL
            for start in range(0, len(files), batch_size):
                chunk = files[start : start + batch_size]
                loaded = list(pool.map(self.try_preprocessed, chunk))
                readable = [(p, t) for p, t in zip(chunk, loaded) if isinstance(t, torch.Tensor)]
                answers: Iterator[tuple[torch.Tensor, float]] = iter(())
                if readable:
                    batch = torch.stack([t for _, t in readable])
                    logits, scores = self.file_outputs([p for p, _ in readable], batch)
                    answers = iter(zip(self.probabilities_of(logits), scores.tolist()))
                for p, item in zip(chunk, loaded):
                    if isinstance(item, str):
                        results.append(Prediction(p, (), item))
                    else:
                        probs, score = next(answers)
                        results.append(self._prediction(p, probs, score, top_k))
                if on_progress:
                    on_progress(len(results), len(files))
        return results

    def _prediction(self, path: Path, probs: torch.Tensor, score: float, top_k: int) -> Prediction:
        ood = score if math.isfinite(score) else None
        return Prediction(path, tuple(self._top(probs, top_k)), None, self.is_unknown(score), ood)

    def try_preprocessed(self, path: Path) -> torch.Tensor | str:
        """:meth:`preprocessed`, or the reason the file cannot be read (predict, evaluate and the
        export's parity check skip such a file and say why)."""
        try:
            return self.preprocessed(path)
        except UnreadableImageError as exc:
            return str(exc)

    def _top(self, probs: torch.Tensor, top_k: int) -> list[tuple[str, float]]:
        k = max(1, min(top_k, len(self.class_names)))
        values, indices = torch.topk(probs, k)
        return [(self.class_names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]


def _identity(path: Path) -> tuple[str, int, int] | None:
    """What tells a file's content apart cheaply: its absolute path, size and modification time."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


def write_predictions_csv(
    predictions: Sequence[Prediction], out: str | Path, top_k: int = 1, threshold: float | None = None
) -> Path:
    """One row per image: path, top-1 class, its probability, then further top-k pairs, ``unknown``
    (1 for a photo unlike every class, whose ``label`` is then ``unknown``), ``ood_score`` (empty when
    the model cannot tell) and any error.

    With a ``threshold``, ``label`` is ``unsure`` when the top probability is below it; with a threshold
    or a photo found unknown, a ``best_guess`` column after ``probability`` keeps the top-1 class.
    """
    out = Path(out)
    extra = max(0, top_k - 1)
    guesses = threshold is not None or any(p.unknown for p in predictions)
    header = ["path", "label", "probability"] + (["best_guess"] if guesses else [])
    for n in range(2, extra + 2):
        header += [f"label_{n}", f"probability_{n}"]
    header += ["unknown", "ood_score", "error"]
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(header)
    for pred in predictions:
        row: list[object] = [str(pred.path)]
        pairs = list(pred.top) + [("", None)] * (extra + 1 - len(pred.top))
        for label, prob in pairs[: extra + 1]:
            row += [label, f"{prob:.6f}" if prob is not None else ""]
        if guesses:
            row[1] = pred.label_at(threshold) or ""
            row.insert(3, pred.label or "")
        row += [
            int(pred.unknown) if pred.top else "",
            f"{pred.ood_score:.6f}" if pred.ood_score is not None else "",
        ]
        row.append(pred.error or "")
        writer.writerow(row)
    atomic_write_text(out, handle.getvalue())
    return out
