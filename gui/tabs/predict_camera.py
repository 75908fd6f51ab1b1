"""The Predict tab's live camera: the model's answer on every frame it has time for, Pause, Snapshot.

The picture and its messages are :class:`gui.views.camera_view.CameraPanel`'s; the frames go to a
:class:`gui.background.live.LiveClassifier`, which classifies one at a time on a worker thread and
drops the frames that come meanwhile, so the window stays responsive at any frame rate. The camera
runs only while the page is active (:meth:`LiveCameraPage.activate`): the Predict tab turns it off
when the user leaves the tab or goes back to photos, and the camera's light goes off with it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QStandardPaths, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog, QLabel, QPushButton, QVBoxLayout, QWidget

from engine.data.exclusions import free_name
from gui.background.jobs import ThreadRunner
from gui.background.live import LiveAnswer, LiveClassifier
from gui.core.settings import Settings
from gui.views.camera_view import SHOWN_CLASSES, CameraPanel
from gui.views.widgets import MessageBanner

if TYPE_CHECKING:
    from PySide6.QtMultimedia import QVideoFrameInput

    from engine.inference.predict import Predictor

logger = logging.getLogger(__name__)

NO_MODEL_NOTE = "No model yet: open one to see its answers"
SNAPSHOT_FILTER = "JPEG images (*.jpg *.jpeg);;PNG images (*.png)"


class LiveCameraPage(QWidget):
    """The camera picture with the model's top classes drawn live (see the module docstring)."""

    def __init__(self, settings: Settings, runner: ThreadRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("predictCameraPage")
        self.settings = settings
        self.predictor: Predictor | None = None
        self.active = False
        self.last_frame = QImage()
        self.classifier = LiveClassifier(runner, self, top_k=SHOWN_CLASSES)
        self.classifier.answered.connect(self._on_answer)
        self.classifier.failed.connect(self._on_failed)
        self.panel = CameraPanel()
        self.panel.frameArrived.connect(self._on_frame)
        self.panel.running.connect(self._update_buttons)
        self.panel.view.note = NO_MODEL_NOTE
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("cameraPauseButton")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Hold the picture and its answer (the camera stays on)")
        self.pause_button.toggled.connect(self._on_pause)
        self.snapshot_button = QPushButton("Snapshot…")
        self.snapshot_button.setObjectName("cameraSnapshotButton")
        self.snapshot_button.setToolTip("Save the picture shown as a photo")
        self.snapshot_button.clicked.connect(self.snapshot)
        self.rate = QLabel()
        self.rate.setObjectName("cameraRate")
        self.rate.setAccessibleName("Answers per second")
        self.panel.controls.addWidget(self.rate, 1)
        self.panel.controls.addWidget(self.pause_button)
        self.panel.controls.addWidget(self.snapshot_button)
        self.error = MessageBanner("cameraError")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.error)
        layout.addWidget(self.panel, 1)
        self._update_buttons()

    @property
    def paused(self) -> bool:
        return self.pause_button.isChecked()

    def set_predictor(self, predictor: Predictor | None) -> None:
        """Answer with ``predictor`` from the next frame on."""
        self.predictor = predictor
        self.panel.view.note = "" if predictor is not None else NO_MODEL_NOTE
        self.panel.view.set_prediction(None)
        if self.active:
            self.classifier.set_predictor(predictor)

    def activate(self, frame_input: QVideoFrameInput | None = None) -> None:
        """Start the camera (or take the frames of ``frame_input``) and answer on its frames."""
        self.active = True
        self.error.hide()
        self.classifier.set_predictor(self.predictor)
        if frame_input is not None:
            self.panel.feed_from(frame_input)
        else:
            self.panel.start()
        self._update_buttons()

    def deactivate(self) -> None:
        """Stop the camera and the answers (the last picture stays)."""
        self.active = False
        self.panel.stop()
        self.classifier.stop()
        self.rate.setText("")
        self._update_buttons()

    @Slot()
    def _update_buttons(self) -> None:
        self.pause_button.setEnabled(self.panel.is_running())
        self.snapshot_button.setEnabled(not self.last_frame.isNull() and self.active)

    @Slot(QImage)
    def _on_frame(self, frame: QImage) -> None:
        if self.paused:
            return
        first = self.last_frame.isNull()
        self.last_frame = frame
        self.panel.view.set_frame(frame)
        if self.predictor is not None:
            self.classifier.offer(frame)
        if first:
            self._update_buttons()

    def _on_answer(self, answer: LiveAnswer) -> None:
        if self.paused or not self.active:
            return
        self.panel.view.set_prediction(answer.prediction)
        rate = self.classifier.rate()
        per_frame = f"{answer.seconds * 1000:.0f} ms per answer"
        self.rate.setText(f"{rate:.1f} answers per second · {per_frame}" if rate else per_frame)

    def _on_failed(self, message: str) -> None:
        self.error.show_message("<b>The model could not answer:</b>", "error", detail=message)

    @Slot(bool)
    def _on_pause(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")

    def _snapshot_start(self) -> str:
        folder = self.settings.get_str("predict/snapshot_folder")
        if not folder or not Path(folder).is_dir():
            pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
            folder = pictures if pictures and Path(pictures).is_dir() else str(Path.home())
        return str(Path(folder) / f"snapshot {datetime.now():%Y-%m-%d %H.%M.%S}.jpg")

    @Slot()
    def snapshot(self) -> None:
        """Save the picture shown (without the answer drawn on it) where the user says."""
        if self.last_frame.isNull():
            return
        frame = self.last_frame
        path, _ = QFileDialog.getSaveFileName(
            self, "Save a snapshot", self._snapshot_start(), SNAPSHOT_FILTER
        )
        if not path:
            return
        target = Path(path)
        if target.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            # The dialog asked about overwriting the name typed, not this one: never overwrite it.
            target = free_name(target.with_name(target.name + ".jpg"))
        if not frame.save(str(target), None, 92):
            self.error.show_message(
                "<b>Cannot save the snapshot:</b>", "error", detail=f"{target} could not be written"
            )
            return
        self.settings.set("predict/snapshot_folder", str(target.parent))
        self.rate.setText(f"Saved {target.name}")
        logger.info("snapshot saved to %s", target)

    def shutdown(self) -> None:
        self.deactivate()
        self.panel.shutdown()
