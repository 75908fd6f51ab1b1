"""The live camera: frames from Qt Multimedia, one capture session at a time.

:class:`CameraFeed` owns one capture session (``QMediaCaptureSession``) whose frames reach a
``QVideoSink``; each arrives as ``frameArrived(QImage)`` on the GUI thread. Its source is a camera
(``QCamera``, one of :meth:`CameraFeed.cameras`) or a ``QVideoFrameInput``, Qt's source of frames made
in code: the tests and the README's screenshot feed photos through the same session and sink that way.
A missing camera, a refused permission or a camera error comes as ``problem(message)``: one plain line.

The frames are classified by :class:`gui.background.live.LiveClassifier`, which needs no Qt Multimedia.

This module imports Qt Multimedia, whose FFmpeg libraries take a moment and some memory to load: the
window imports it only when a camera view opens (:func:`gui.views.camera_view.camera_support`).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal, Slot
from PySide6.QtGui import QImage
from PySide6.QtMultimedia import (
    QCamera,
    QCameraDevice,
    QMediaCaptureSession,
    QMediaDevices,
    QVideoFrame,
    QVideoFrameInput,
    QVideoSink,
)

logger = logging.getLogger(__name__)

NO_CAMERA = (
    "No camera found. Connect a camera (or allow this app to use the built-in one), then press "
    "<b>Look again</b>."
)
NO_PERMISSION = (
    "This app is not allowed to use the camera. Allow it in your system's privacy settings "
    "(Camera), then press <b>Look again</b>."
)


class CameraFeed(QObject):
    """One capture session: a camera, or a frame input, into a video sink (see the module docstring).

    ``frameArrived(QImage)`` per frame, ``problem(str)`` when there is no picture to show, and
    ``camerasChanged()`` when a camera is plugged in or out.
    """

    frameArrived = Signal(QImage)
    problem = Signal(str)
    camerasChanged = Signal()
    started = Signal(bool)  # after a late permission answer: whether the camera runs now

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = QMediaCaptureSession(self)
        self.sink = QVideoSink(self)
        self.session.setVideoSink(self.sink)
        self.sink.videoFrameChanged.connect(self._on_frame)
        self._devices = QMediaDevices(self)
        self._devices.videoInputsChanged.connect(self.camerasChanged)
        self.camera: QCamera | None = None
        self.frame_input: QVideoFrameInput | None = None
        self._wanted = False  # a camera was asked for and not stopped since (a late permission answer)
        self.frames = 0  # frames that arrived since the feed started

    @staticmethod
    def cameras() -> list[QCameraDevice]:
        """The cameras on this computer, the system's default first."""
        found = list(QMediaDevices.videoInputs())
        default = QMediaDevices.defaultVideoInput()
        found.sort(key=lambda device: device.id() != default.id())
        return found

    def is_running(self) -> bool:
        return self.camera is not None or self.frame_input is not None

    def start_camera(self, device: QCameraDevice | None = None) -> None:
        """Show ``device`` (the default camera when None); ``problem`` says why it cannot."""
        self.stop()
        self._wanted = True
        devices = self.cameras()
        if not devices:
            self.problem.emit(NO_CAMERA)
            return
        chosen = device if device is not None and not device.isNull() else devices[0]
        if not self._allowed(chosen):
            return
        camera = QCamera(chosen, self)
        camera.errorOccurred.connect(self._on_camera_error)
        self.camera = camera
        self.session.setCamera(camera)
        self.frames = 0
        camera.start()
        logger.info("camera %s started", chosen.description())

    def feed_from(self, frame_input: QVideoFrameInput) -> None:
        """Take frames from ``frame_input`` (frames made in code) instead of a camera."""
        self.stop()
        self.frame_input = frame_input
        self.frames = 0
        self.session.setVideoFrameInput(frame_input)

    def stop(self) -> None:
        """Stop the camera (its light goes off) or detach the frame input."""
        self._wanted = False
        if self.camera is not None:
            camera, self.camera = self.camera, None
            camera.errorOccurred.disconnect(self._on_camera_error)
            camera.stop()
            self.session.setCamera(None)  # type: ignore[arg-type]
            camera.deleteLater()
        if self.frame_input is not None:
            self.frame_input = None
            self.session.setVideoFrameInput(None)  # type: ignore[arg-type]

    def _allowed(self, device: QCameraDevice) -> bool:
        """Whether the system lets this app use a camera; asks once where it has not been asked yet."""
        try:
            from PySide6.QtCore import QCameraPermission
        except ImportError:  # Qt before 6.5: no permission API, nothing to ask
            return True
        app = QCoreApplication.instance()
        if app is None:
            return True
        status = app.checkPermission(QCameraPermission())
        if status == Qt.PermissionStatus.Granted:
            return True
        if status == Qt.PermissionStatus.Undetermined:
            app.requestPermission(QCameraPermission(), self, lambda _p: self._on_permission_answer(device))
            return False
        self.problem.emit(NO_PERMISSION)
        return False

    def _on_permission_answer(self, device: QCameraDevice) -> None:
        """The user answered the system's question: start the camera if it is still wanted (not after
        the user turned the camera off or left its tab meanwhile)."""
        if self._wanted and not self.is_running():
            self.start_camera(device)  # checks the answer again: refused gives the message
            self.started.emit(self.is_running())

    @Slot(QCamera.Error, str)
    def _on_camera_error(self, _error: QCamera.Error, message: str) -> None:
        logger.warning("camera error: %s", message)
        self.stop()
        self.problem.emit(f"The camera stopped: {message or 'it reported an error'}.")

    @Slot(QVideoFrame)
    def _on_frame(self, frame: QVideoFrame) -> None:
        if not self.is_running() or not frame.isValid():
            return
        image = frame.toImage()
        if image.isNull():
            return
        self.frames += 1
        self.frameArrived.emit(image)

    def shutdown(self) -> None:
        self.stop()
