"""The work of inference: classifying photos in chunks, and rendering Grad-CAM overlays.

Grad-CAM registers hooks on the model and needs gradients, so it never shares a network with the
prediction or evaluation workers: :class:`GradCamModels` keeps one private CPU copy per bundle and a
lock serialises the computations.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QImage

from gui.background.jobs import Worker

if TYPE_CHECKING:
    from engine.inference.predict import Predictor
    from engine.models.bundle import Bundle


@dataclass(frozen=True)
class PhotosFound:
    """How many photos :class:`PredictWorker` found to classify (yielded first)."""

    count: int


class PredictWorker(Worker):
    """Classifies files with a loaded ``engine.inference.predict.Predictor``, streaming results in chunks.

    ``sources`` may mix image files and folders (searched recursively). Yields :class:`PhotosFound`, then
    a ``list[Prediction]`` after every batch; abort is checked between batches.
    """

    def __init__(
        self, predictor: Predictor, sources: list[Path], top_k: int = 5, batch_size: int = 16
    ) -> None:
        super().__init__()
        self.predictor = predictor
        self.sources = sources
        self.top_k = top_k
        self.batch_size = batch_size

    def work(self) -> int:
        from engine.inference.predict import list_images

        paths: list[Path] = []
        for source in self.sources:
            paths.extend(list_images(source))
            self.check_abort()
        self.yielded.emit(PhotosFound(len(paths)))
        for start in range(0, len(paths), self.batch_size):
            self.check_abort()
            part = paths[start : start + self.batch_size]
            self.yielded.emit(self.predictor.predict_paths(part, top_k=self.top_k, batch_size=len(part)))
        return len(paths)


class GradCamModels:
    """One private CPU Predictor per bundle, for Grad-CAM only (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bundle: Bundle | None = None
        self._predictor: Predictor | None = None

    def compute(self, bundle: Bundle, path: str | Path, class_index: int | None, size: int) -> QImage:
        """The photo at ``path`` with its Grad-CAM overlay, longer side at most ``size`` (worker thread)."""
        from engine.data.images import open_image
        from engine.inference.gradcam import grad_cam_for_image, overlay
        from engine.inference.predict import Predictor

        with self._lock:
            if self._predictor is None or self._bundle is not bundle:
                self._predictor = Predictor(bundle, device="cpu")
                self._bundle = bundle
            image = open_image(path).convert("RGB")
            heatmap = grad_cam_for_image(self._predictor, image, class_index)
        blended = overlay(image, heatmap)
        blended.thumbnail((size, size))
        data = blended.tobytes()
        return QImage(
            data, blended.width, blended.height, 3 * blended.width, QImage.Format.Format_RGB888
        ).copy()


class GradCamRender:
    """A render for :class:`gui.background.images.ImageLoader`: the photo with the Grad-CAM of
    ``class_index`` (None: the predicted class) over it, longer side at most ``size``."""

    def __init__(self, models: GradCamModels, bundle: Bundle, class_index: int | None, size: int) -> None:
        self.models, self.bundle, self.class_index, self.size = models, bundle, class_index, size

    def __call__(self, path: str) -> QImage:
        return self.models.compute(self.bundle, path, self.class_index, self.size)
