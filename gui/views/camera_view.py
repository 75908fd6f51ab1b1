"""The live camera's picture, shared by the Predict tab and the sort view's capture dialog.

:class:`CameraPanel` is a camera picker, **Look again** (after plugging a camera in), the picture
(:class:`LiveView`: the latest frame, with the model's top classes or "None of these" drawn over it)
and, in place of the picture, one plain message when there is none: no camera, no permission, or Qt
Multimedia missing. Owners add their own buttons to :attr:`CameraPanel.controls`.

Qt Multimedia (:mod:`gui.background.camera`) is imported on the first :meth:`CameraPanel.start`,
through :func:`camera_support`, never when the window opens.
"""

from __future__ import annotations

import logging
import types
from typing import TYPE_CHECKING

from PySide6.QtCore import QRectF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from PySide6.QtMultimedia import QVideoFrameInput

    from engine.inference.predict import Prediction
    from gui.background.camera import CameraFeed

logger = logging.getLogger(__name__)

NO_MULTIMEDIA = (
    "The live camera needs Qt Multimedia, which cannot load here: {error}. "
    "On Linux, install PulseAudio's client library (Debian and Ubuntu: <i>sudo apt install libpulse0</i>), "
    "then restart the app."
)
STARTING = "Starting the camera…"
#: How many of the top classes the picture shows.
SHOWN_CLASSES = 3


def camera_support() -> tuple[types.ModuleType | None, str]:
    """:mod:`gui.background.camera` and "", or None and the one line saying why it cannot load."""
    try:
        from gui.background import camera
    except ImportError as exc:
        logger.warning("Qt Multimedia cannot load: %s", exc)
        return None, NO_MULTIMEDIA.format(error=exc)
    return camera, ""


class LiveView(QWidget):
    """The latest frame, scaled to fit, with the model's answer drawn in its lower-left corner."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("cameraView")
        self.setAccessibleName("Live camera picture")
        self.setMinimumSize(320, 240)
        self.frame = QImage()
        self.prediction: Prediction | None = None
        self.note = ""  # one line drawn over the picture when there is no answer (no model yet)

    def set_frame(self, frame: QImage) -> None:
        self.frame = frame
        self.update()

    def set_prediction(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.update()

    def answer_lines(self) -> list[tuple[str, float | None]]:
        """What is drawn over the picture: (text, probability bar or None), top line first."""
        prediction = self.prediction
        if prediction is None:
            return [(self.note, None)] if self.note else []
        top = list(prediction.top[:SHOWN_CLASSES])
        if prediction.unknown:
            best = f"best guess {top[0][0]} {top[0][1]:.0%}" if top else ""
            lines: list[tuple[str, float | None]] = [("None of these", None)]
            return lines + ([(best, None)] if best else [])
        return [(f"{label}  {probability:.0%}", probability) for label, probability in top]

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#202124"))
        if not self.frame.isNull():
            scaled = self.frame.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x = (self.width() - scaled.width()) / 2
            y = (self.height() - scaled.height()) / 2
            painter.drawImage(QRectF(x, y, scaled.width(), scaled.height()), self.frame)
        lines = self.answer_lines()
        if lines:
            self._paint_answer(painter, lines)
        painter.end()

    def _paint_answer(self, painter: QPainter, lines: list[tuple[str, float | None]]) -> None:
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        pad, line_height = 10, metrics.height() + 8
        width = max(metrics.horizontalAdvance(text) for text, _ in lines) + 2 * pad
        width = max(width, 220)
        height = line_height * len(lines) + pad
        box = QRectF(12, self.height() - height - 12, width, height)
        unknown = self.prediction is not None and self.prediction.unknown
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(102, 60, 0, 215) if unknown else QColor(0, 0, 0, 170))
        painter.drawRoundedRect(box, 8, 8)
        for n, (text, probability) in enumerate(lines):
            top = box.top() + pad / 2 + n * line_height
            if probability is not None:
                bar = QRectF(box.left() + 4, top + 2, (box.width() - 8) * probability, line_height - 4)
                painter.setBrush(QColor(26, 115, 232, 150) if n == 0 else QColor(255, 255, 255, 60))
                painter.drawRoundedRect(bar, 4, 4)
            painter.setPen(QColor("#ffffff") if n == 0 else QColor("#e0e0e0"))
            text_rect = QRectF(box.left() + pad, top, box.width() - 2 * pad, line_height)
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
            painter.setPen(Qt.PenStyle.NoPen)


class CameraPanel(QWidget):
    """Camera picker, Look again, the picture or its message (see the module docstring).

    ``frameArrived(QImage)`` for every frame of the camera (or of a frame input); owners classify,
    pause or save them. :attr:`controls` is the row where owners put their own buttons.
    """

    frameArrived = Signal(QImage)
    running = Signal(bool)  # whether frames can come (False after a problem or stop)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("cameraPanel")
        self.feed: CameraFeed | None = None
        self.picker = QComboBox()
        self.picker.setObjectName("cameraPicker")
        self.picker.setAccessibleName("Camera")
        self.picker.setMinimumContentsLength(18)
        self.picker.activated.connect(self._on_camera_picked)
        self.again_button = QPushButton("Look again")
        self.again_button.setObjectName("cameraAgainButton")
        self.again_button.setToolTip("Look for cameras again and start the one picked")
        self.again_button.clicked.connect(self.start)
        self.controls = QHBoxLayout()
        top = QHBoxLayout()
        top.addWidget(QLabel("Camera:"))
        top.addWidget(self.picker)
        top.addWidget(self.again_button)
        top.addLayout(self.controls, 1)
        self.message = QLabel()
        self.message.setObjectName("cameraMessage")
        self.message.setAccessibleName("Camera message")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.view = LiveView()
        self.pages = QStackedWidget()
        self.pages.addWidget(self.message)
        self.pages.addWidget(self.view)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.pages, 1)

    def message_text(self) -> str:
        """The message shown instead of the picture ("" while the picture shows)."""
        return self.message.text() if self.pages.currentWidget() is self.message else ""

    def show_message(self, text: str) -> None:
        self.message.setText(f"<p style='font-size:13pt'>{text}</p>")
        self.pages.setCurrentWidget(self.message)

    def _ensure_feed(self) -> CameraFeed | None:
        if self.feed is None:
            camera, problem = camera_support()
            if camera is None:
                self.picker.setEnabled(False)
                self.show_message(problem)
                self.running.emit(False)
                return None
            self.feed = camera.CameraFeed(self)
            self.feed.frameArrived.connect(self._on_frame)
            self.feed.problem.connect(self._on_problem)
            self.feed.camerasChanged.connect(self._fill_picker)
            self.feed.started.connect(self.running)
        return self.feed

    @Slot()
    def _fill_picker(self) -> None:
        if self.feed is None:
            return
        chosen = self.picker.currentData()
        self.picker.clear()
        for device in self.feed.cameras():
            self.picker.addItem(device.description(), device)
        index = next(
            (
                i
                for i in range(self.picker.count())
                if chosen is not None and self.picker.itemData(i) == chosen
            ),
            0,
        )
        self.picker.setCurrentIndex(index)
        self.picker.setEnabled(self.picker.count() > 1)

    @Slot()
    def start(self) -> None:
        """Start the picked camera (the default one at first), or say why there is none."""
        feed = self._ensure_feed()
        if feed is None:
            return
        self._fill_picker()
        self.show_message(STARTING)
        feed.start_camera(self.picker.currentData())
        self.running.emit(feed.is_running())

    def feed_from(self, frame_input: QVideoFrameInput) -> bool:
        """Show the frames of ``frame_input`` (frames made in code) instead of a camera's."""
        feed = self._ensure_feed()
        if feed is None:
            return False
        self.show_message(STARTING)
        self.picker.clear()
        self.picker.addItem("Test source (frames made in code)")
        self.picker.setEnabled(False)
        feed.feed_from(frame_input)
        self.running.emit(True)
        return True

    @Slot(int)
    def _on_camera_picked(self, _index: int) -> None:
        self.start()

    def stop(self) -> None:
        """Stop the camera (its light goes off); the last frame stays on screen."""
        if self.feed is not None and self.feed.is_running():
            self.feed.stop()
            self.running.emit(False)

    def is_running(self) -> bool:
        return self.feed is not None and self.feed.is_running()

    @Slot(QImage)
    def _on_frame(self, frame: QImage) -> None:
        if self.pages.currentWidget() is not self.view:
            self.pages.setCurrentWidget(self.view)
        self.frameArrived.emit(frame)

    @Slot(str)
    def _on_problem(self, text: str) -> None:
        self.show_message(text)
        self.running.emit(False)

    def shutdown(self) -> None:
        if self.feed is not None:
            self.feed.shutdown()
