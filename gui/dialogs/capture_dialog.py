"""Capture into class: take photos with a camera straight into a class folder of the dataset.

The Teachable Machine way to build a dataset: pick (or type) a class, point the camera, press
**Capture** or Space; hold it to take a photo every :data:`REPEAT_MS` milliseconds. Each photo is a
JPEG written by :func:`engine.sorting.capture.save_capture` where an accepted photo of that class goes,
under a new name (nothing is overwritten). The picture and its messages (no camera, no permission)
are :class:`gui.views.camera_view.CameraPanel`'s; the camera runs while the dialog is open.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, Signal, Slot
from PySide6.QtGui import QCloseEvent, QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.core.errors import TransferStudioError
from gui.background.jobs import friendly_error
from gui.views.camera_view import CameraPanel
from gui.views.widgets import MessageBanner

if TYPE_CHECKING:
    from PySide6.QtMultimedia import QVideoFrameInput

logger = logging.getLogger(__name__)

#: Milliseconds between two photos while Capture is held down.
REPEAT_MS = 250
JPEG_QUALITY = 92


def encode_jpeg(image: QImage, quality: int = JPEG_QUALITY) -> bytes:
    """``image`` encoded as JPEG (empty when Qt cannot encode it)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    # The stubs say bytes; PySide6 takes only str here at run time.
    image.convertToFormat(QImage.Format.Format_RGB888).save(buffer, "JPEG", quality)  # type: ignore[call-overload]
    buffer.close()
    return bytes(data.data())


class CaptureDialog(QDialog):
    """Camera picture, class picker and Capture (see the module docstring). ``captured(path)`` per photo."""

    captured = Signal(Path)

    def __init__(self, root: Path, classes: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("captureDialog")
        self.setWindowTitle("Capture into class")
        self.root = Path(root)
        self.saved: list[Path] = []
        self.last_frame = QImage()
        self._frame_number = 0
        self._saved_frame = -1  # the frame saved last (holding Capture never saves one frame twice)
        self.panel = CameraPanel()
        self.panel.frameArrived.connect(self._on_frame)
        self.panel.controls.addStretch(1)  # the picker and Look again keep their size, on the left
        self.class_picker = QComboBox()
        self.class_picker.setObjectName("captureClassPicker")
        self.class_picker.setAccessibleName("Class the photos go into")
        self.class_picker.setEditable(True)
        self.class_picker.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.class_picker.addItems(classes)
        self.class_picker.setMinimumContentsLength(16)
        line = self.class_picker.lineEdit()
        if line is not None:
            line.setPlaceholderText("a class name")
        self.capture_button = QPushButton("Capture")
        self.capture_button.setObjectName("captureButton")
        self.capture_button.setToolTip(
            "Take a photo into the class (Space); hold it to take one every quarter second"
        )
        self.capture_button.setAutoRepeat(True)
        self.capture_button.setAutoRepeatDelay(REPEAT_MS * 2)
        self.capture_button.setAutoRepeatInterval(REPEAT_MS)
        self.capture_button.clicked.connect(self.capture)
        self.capture_button.setEnabled(False)
        shortcut = QShortcut(QKeySequence(Qt.Key.Key_Space), self)
        shortcut.activated.connect(self.capture)
        self.status = QLabel(f"Photos go into the class's folder in {html.escape(str(self.root))}.")
        self.status.setObjectName("captureStatus")
        self.status.setWordWrap(True)
        self.error = MessageBanner("captureError")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(QLabel("Class:"))
        row.addWidget(self.class_picker)
        row.addWidget(self.capture_button)
        row.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.error)
        layout.addWidget(self.panel, 1)
        layout.addLayout(row)
        layout.addWidget(buttons)
        self.resize(760, 620)

    def start(self, frame_input: QVideoFrameInput | None = None) -> None:
        """Start the camera (or take the frames of ``frame_input``)."""
        if frame_input is not None:
            self.panel.feed_from(frame_input)
        else:
            self.panel.start()

    @Slot(QImage)
    def _on_frame(self, frame: QImage) -> None:
        self._frame_number += 1
        self.last_frame = frame
        self.panel.view.set_frame(frame)
        if not self.capture_button.isEnabled():
            self.capture_button.setEnabled(True)

    @Slot()
    def capture(self) -> None:
        """Save the picture shown into the chosen class (one line says why not)."""
        if self.last_frame.isNull() or self._saved_frame == self._frame_number:
            return
        name = self.class_picker.currentText().strip()
        if not name:
            self.error.show_message("<b>Pick a class first</b> (or type the name of a new one).", "warning")
            return
        data = encode_jpeg(self.last_frame)
        try:
            if not data:
                raise TransferStudioError("the picture could not be encoded as JPEG")
            from engine.sorting.capture import save_capture

            path = save_capture(self.root, name, data)
        except (TransferStudioError, OSError) as exc:
            self.error.show_message("<b>Cannot save the photo:</b>", "error", detail=friendly_error(exc))
            return
        self.error.hide()
        self._saved_frame = self._frame_number
        self.saved.append(path)
        if self.class_picker.findText(name) < 0:
            self.class_picker.addItem(name)
        taken = sum(1 for p in self.saved if p.parent == path.parent)
        self.status.setText(
            f"Saved <b>{html.escape(path.name)}</b> in {html.escape(name)} "
            f"({taken} photo{'s' if taken != 1 else ''} taken into it here)."
        )
        self.captured.emit(path)

    def done(self, result: int) -> None:
        self.panel.stop()
        super().done(result)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.panel.stop()
        super().closeEvent(event)
