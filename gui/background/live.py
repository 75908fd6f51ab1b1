"""Classifying a stream of frames (the live camera) without ever blocking the window.

:class:`LiveClassifier` classifies the frames it is offered on one long-lived :class:`LiveWorker`,
one frame at a time: a frame offered while another is being classified is dropped, so the answers keep
up with the camera at whatever rate the CPU allows and the window's event loop never waits for the
model. The frames come from :class:`gui.background.camera.CameraFeed` (or any other source).
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from gui.background.jobs import Job, ThreadRunner, Worker, friendly_error

if TYPE_CHECKING:
    from PIL import Image

    from engine.inference.predict import Prediction, Predictor

logger = logging.getLogger(__name__)

#: Answers over which :meth:`LiveClassifier.rate` averages.
RATE_WINDOW = 10
#: Seconds the worker waits for a frame before it checks whether it should stop.
IDLE_WAIT_S = 0.1


def pil_image(image: QImage) -> Image.Image:
    """A PIL RGB copy of ``image`` (any thread)."""
    from PIL import Image

    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    data = bytes(rgb.constBits())
    return Image.frombuffer("RGB", (rgb.width(), rgb.height()), data, "raw", "RGB", rgb.bytesPerLine(), 1)


@dataclass(frozen=True)
class LiveAnswer:
    """The model's answer for one frame, the frame, and how long it took."""

    prediction: Prediction
    frame: QImage
    seconds: float


@dataclass(frozen=True)
class LiveFailure:
    """Why one frame could not be classified (the worker goes on with the next)."""

    message: str


class LiveWorker(Worker):
    """Classifies the frames handed to :meth:`offer`, one at a time, until aborted (yields LiveAnswer)."""

    def __init__(self, predictor: Predictor, top_k: int = 3) -> None:
        super().__init__()
        self.predictor = predictor
        self.top_k = top_k
        self._frames: queue.Queue[QImage] = queue.Queue(maxsize=1)

    def offer(self, image: QImage) -> None:
        """Hand over a frame (GUI thread; :class:`LiveClassifier` never offers a second one early)."""
        try:
            self._frames.put_nowait(image)
        except queue.Full:  # pragma: no cover - the classifier keeps one in flight
            logger.debug("a frame came while another waited: dropped")

    def work(self) -> None:
        while True:
            self.check_abort()
            try:
                frame = self._frames.get(timeout=IDLE_WAIT_S)
            except queue.Empty:
                continue
            self.check_abort()
            start = time.perf_counter()
            try:
                prediction = self.predictor.classify_image(pil_image(frame), top_k=self.top_k, name="camera")
            except Exception as exc:  # noqa: BLE001 - one bad frame: say so, and go on with the next
                logger.warning("a camera frame could not be classified: %s", exc, exc_info=True)
                self.yielded.emit(LiveFailure(friendly_error(exc)))
                continue
            self.yielded.emit(LiveAnswer(prediction, frame, time.perf_counter() - start))


class LiveClassifier(QObject):
    """Classifies offered frames with a model, one at a time, dropping those that come meanwhile.

    ``answered(LiveAnswer)`` for each classified frame; ``failed(message)`` for a frame the model could
    not classify (the next frames are still classified), or when the worker itself fails (then it
    stops). Counts ``offered``, ``dropped`` and ``classified`` frames.
    """

    answered = Signal(object)
    failed = Signal(str)

    def __init__(self, runner: ThreadRunner, parent: QObject | None = None, top_k: int = 3) -> None:
        super().__init__(parent)
        self.top_k = top_k
        self.job = Job(runner, "live-classify", self, on_yielded=self._on_answer, on_errored=self._on_failed)
        self._worker: LiveWorker | None = None
        self._in_flight = False
        self._answer_times: deque[float] = deque(maxlen=RATE_WINDOW)
        self.offered = 0
        self.dropped = 0
        self.classified = 0

    def set_predictor(self, predictor: Predictor | None) -> None:
        """Classify with ``predictor`` from now on (None: stop classifying)."""
        self.stop()
        if predictor is None:
            return
        worker = LiveWorker(predictor, self.top_k)
        if self.job.start(worker):
            self._worker = worker

    def is_active(self) -> bool:
        return self._worker is not None

    def offer(self, frame: QImage) -> bool:
        """Classify ``frame`` if nothing is being classified now; False when it is dropped."""
        self.offered += 1
        if self._worker is None or self._in_flight:
            self.dropped += 1
            return False
        self._in_flight = True
        self._worker.offer(frame)
        return True

    def rate(self) -> float:
        """Frames classified per second, over the last few answers (0 before two answers)."""
        if len(self._answer_times) < 2:
            return 0.0
        span = self._answer_times[-1] - self._answer_times[0]
        return (len(self._answer_times) - 1) / span if span > 0 else 0.0

    def stop(self) -> None:
        """Stop classifying; an answer still on its way is dropped."""
        self.job.cancel()
        self._worker = None
        self._in_flight = False
        self._answer_times.clear()

    def _on_answer(self, answer: LiveAnswer | LiveFailure) -> None:
        self._in_flight = False
        if isinstance(answer, LiveFailure):
            self.failed.emit(answer.message)
            return
        self.classified += 1
        self._answer_times.append(time.monotonic())
        self.answered.emit(answer)

    def _on_failed(self, message: str) -> None:
        self._worker = None
        self._in_flight = False
        self.failed.emit(message)
