"""Grad-CAM overlays for the GUI: computed on worker threads, delivered as QImages.

:func:`gradcam_overlay` runs on a worker thread: it opens the photo, computes the Grad-CAM heatmap
with ``engine.inference.gradcam`` and blends it over the photo, returning a QImage (safe off the GUI thread).
Grad-CAM registers hooks on the model and needs gradients, so it never shares a network with the
prediction or evaluation workers: :class:`GradCamModels` keeps one private CPU copy per bundle and a
lock serialises the computations.

:class:`GradCamJob` is the GUI-side helper: ``request(path, class_index)`` starts the work through
the window's :class:`~gui.background.worker.ThreadRunner`; ``ready(path, QImage)`` or ``failed(path, message)``
comes back (the ``GradCamUnavailable`` text for models without a convolutional backbone).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from gui.background.worker import FunctionWorker, ThreadRunner

if TYPE_CHECKING:
    from engine.inference.predict import Predictor
    from engine.models.bundle import Bundle


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


class GradCamJob(QObject):
    """Starts Grad-CAM overlays on worker threads; only the latest request's answer is delivered."""

    ready = Signal(str, QImage)
    failed = Signal(str, str)

    def __init__(self, runner: ThreadRunner, size: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.size = size
        self.models = GradCamModels()
        self._worker: FunctionWorker | None = None
        self._path = ""

    def request(self, bundle: Bundle, path: str | Path, class_index: int | None = None) -> None:
        """Compute the overlay of ``path`` for ``class_index`` (None: the predicted class)."""
        if self._worker is not None:
            self._worker.abort()
        self._path = str(path)
        models, size, target = self.models, self.size, str(path)
        worker = FunctionWorker(lambda _w: models.compute(bundle, target, class_index, size))
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        self._worker = worker
        self.runner.start(worker, "grad-cam")

    def cancel(self) -> None:
        """Forget the pending request (its answer is dropped)."""
        if self._worker is not None:
            self._worker.abort()
        self._worker = None
        self._path = ""

    def is_busy(self) -> bool:
        return self._worker is not None

    @Slot(object)
    def _on_returned(self, image: QImage) -> None:
        if self.sender() is not self._worker:
            return
        self._worker = None
        self.ready.emit(self._path, image)

    @Slot(str)
    def _on_errored(self, message: str) -> None:
        if self.sender() is not self._worker:
            return
        self._worker = None
        self.failed.emit(self._path, message)
