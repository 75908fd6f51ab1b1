"""The live camera (issue 27): frames from a test source through the real capture session and video
sink, answers drawn live without stalling the window, Pause and Snapshot, "Capture into class", and
the plain messages when there is no camera or no Qt Multimedia.

The test source is Qt's ``QVideoFrameInput``: frames made in code enter the same
``QMediaCaptureSession`` and ``QVideoSink`` as a camera's, at 30 frames per second from a timer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QElapsedTimer, Qt, QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog, QPushButton

pytest.importorskip("PySide6.QtMultimedia", reason="Qt Multimedia cannot load (on Linux: libpulse0)")
from PySide6.QtMultimedia import QVideoFrame, QVideoFrameInput  # noqa: E402

from gui.background import camera  # noqa: E402
from gui.background.live import LiveClassifier, pil_image  # noqa: E402

FPS = 30


@pytest.fixture(autouse=True)
def no_real_camera(monkeypatch):
    """No test opens a real camera (on a machine that has one): the test source feeds the frames."""
    monkeypatch.setattr(camera.CameraFeed, "cameras", staticmethod(lambda: []))


class FrameSource:
    """Sends ``frames`` (cycled) into a QVideoFrameInput at ``fps``, like a camera would."""

    def __init__(self, frames: list[QImage], fps: int = FPS) -> None:
        self.input = QVideoFrameInput()
        self.frames = frames
        self.sent = 0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._send)
        self.timer.start(1000 // fps)

    def _send(self) -> None:
        self.input.sendVideoFrame(QVideoFrame(self.frames[self.sent % len(self.frames)]))
        self.sent += 1

    def stop(self) -> None:
        self.timer.stop()


class StallMeter:
    """The longest time the GUI thread's event loop went without serving a 5 ms timer."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.clock.start()
        self.last = 0
        self.longest_ms = 0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.timer.start(5)

    def _tick(self) -> None:
        now = self.clock.elapsed()
        self.longest_ms = max(self.longest_ms, now - self.last)
        self.last = now

    def stop(self) -> None:
        self.timer.stop()


def _frame(path: Path, size: tuple[int, int] = (640, 480)) -> QImage:
    """A camera-sized frame showing the photo at ``path``."""
    with Image.open(path) as opened:
        photo = opened.convert("RGB").resize(size)
    return QImage(photo.tobytes(), size[0], size[1], 3 * size[0], QImage.Format.Format_RGB888).copy()


def _open_model(window, qtbot, bundle: Path) -> None:
    window.predict_tab.load_model(bundle)
    qtbot.waitUntil(lambda: window.predict_tab.predictor is not None, timeout=60_000)


def test_frames_from_a_test_source_show_the_top_classes_without_stalling_the_window(
    window, qtbot, trained_bundle, synthetic_dataset
):
    tab = window.predict_tab
    window.tabs.setCurrentWidget(tab)
    _open_model(window, qtbot, trained_bundle)
    page = tab.camera_page
    cats = _frame(sorted((synthetic_dataset / "val" / "cats").iterdir())[0])
    source = FrameSource([cats])
    tab.camera_button.setChecked(True)  # no camera here: its message, until the test source feeds it
    page.activate(source.input)
    qtbot.waitUntil(lambda: page.classifier.classified >= 1, timeout=60_000)  # the model is warm

    meter = StallMeter()
    classified_before, sent_before = page.classifier.classified, source.sent
    qtbot.wait(2000)
    meter.stop()
    source.stop()
    frames_sent = source.sent - sent_before
    answers = page.classifier.classified - classified_before

    assert frames_sent >= 45  # about 30 per second arrived
    assert answers >= 5
    assert meter.longest_ms <= 100, f"the event loop stalled for {meter.longest_ms} ms"
    assert page.classifier.dropped > 0  # frames that came while one was being classified
    assert page.panel.message_text() == ""  # the picture shows, not a message
    assert not page.panel.view.frame.isNull()
    lines = page.panel.view.answer_lines()
    assert lines[0][0].startswith("cats") and len(lines) == 2  # both classes, the best first
    assert "answers per second" in page.findChild(type(page.rate), "cameraRate").text()
    assert window.findChild(QPushButton, "cameraPauseButton").isEnabled()

    # "None of these" above 0: every frame is unlike the training photos, and the picture says so.
    source.timer.start(1000 // FPS)
    tab.unknown_threshold.setValue(0.0)
    qtbot.waitUntil(lambda: page.panel.view.answer_lines()[0][0] == "None of these", timeout=30_000)
    assert page.panel.view.answer_lines()[1][0].startswith("best guess cats")
    source.stop()


def test_pause_holds_the_picture_and_snapshot_saves_it(
    window, qtbot, monkeypatch, trained_bundle, synthetic_dataset, tmp_path
):
    tab = window.predict_tab
    window.tabs.setCurrentWidget(tab)
    _open_model(window, qtbot, trained_bundle)
    page = tab.camera_page
    cats = _frame(sorted((synthetic_dataset / "val" / "cats").iterdir())[0])
    dogs = _frame(sorted((synthetic_dataset / "val" / "dogs").iterdir())[0])
    source = FrameSource([cats])
    tab.camera_button.setChecked(True)
    page.activate(source.input)
    qtbot.waitUntil(lambda: page.classifier.classified >= 2, timeout=60_000)
    qtbot.mouseClick(window.findChild(QPushButton, "cameraPauseButton"), Qt.MouseButton.LeftButton)
    assert page.pause_button.text() == "Resume"
    source.frames = [dogs]
    offered = page.classifier.offered
    qtbot.wait(300)
    assert page.panel.view.answer_lines()[0][0].startswith("cats")  # held
    assert page.classifier.offered == offered  # paused: no frame goes to the model
    tab.unknown_threshold.setValue(0.0)  # the held answer is labelled again, like the table's rows
    assert page.panel.view.answer_lines()[0][0] == "None of these"
    tab.unknown_threshold.setValue(2.0)
    assert page.panel.view.answer_lines()[0][0].startswith("cats")
    held = page.panel.view.frame

    target = tmp_path / "shots" / "my snapshot"  # no suffix typed: .jpg is added
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    qtbot.mouseClick(window.findChild(QPushButton, "cameraSnapshotButton"), Qt.MouseButton.LeftButton)
    saved = target.with_name("my snapshot.jpg")
    with Image.open(saved) as photo:
        assert photo.size == (held.width(), held.height())
    qtbot.mouseClick(window.findChild(QPushButton, "cameraSnapshotButton"), Qt.MouseButton.LeftButton)
    assert saved.with_name("my snapshot (2).jpg").exists()  # the first one is never overwritten

    page.pause_button.setChecked(False)
    qtbot.waitUntil(lambda: page.panel.view.answer_lines()[0][0].startswith("dogs"), timeout=30_000)
    source.stop()


def test_leaving_the_tab_turns_the_camera_off(window, qtbot, synthetic_dataset):
    tab = window.predict_tab
    window.tabs.setCurrentWidget(tab)
    source = FrameSource([_frame(sorted((synthetic_dataset / "val" / "cats").iterdir())[0])])
    tab.camera_button.setChecked(True)
    tab.camera_page.activate(source.input)
    qtbot.waitUntil(lambda: tab.camera_page.panel.message_text() == "", timeout=10_000)
    assert tab.camera_page.panel.view.answer_lines() == [("No model yet: open one to see its answers", None)]
    window.tabs.setCurrentWidget(window.data_tab)
    assert not tab.camera_page.active and not tab.camera_page.panel.is_running()
    tab.camera_button.setChecked(False)
    assert tab.pages.currentWidget() is not tab.camera_page
    source.stop()


def test_without_a_camera_the_tab_says_so(window, qtbot, monkeypatch):
    monkeypatch.setattr(camera.CameraFeed, "cameras", staticmethod(lambda: []))
    tab = window.predict_tab
    window.tabs.setCurrentWidget(tab)
    qtbot.mouseClick(window.findChild(QPushButton, "predictCameraButton"), Qt.MouseButton.LeftButton)
    assert tab.pages.currentWidget() is tab.camera_page
    assert "No camera found" in tab.camera_page.panel.message_text()
    assert not tab.camera_page.pause_button.isEnabled()
    assert not tab.camera_page.snapshot_button.isEnabled()
    qtbot.mouseClick(window.findChild(QPushButton, "cameraAgainButton"), Qt.MouseButton.LeftButton)
    assert "No camera found" in tab.camera_page.panel.message_text()


def test_a_refused_permission_is_said_plainly(qtbot, monkeypatch):
    from PySide6.QtCore import QCameraPermission, QCoreApplication

    from gui.views.camera_view import CameraPanel

    monkeypatch.setattr(camera.CameraFeed, "cameras", staticmethod(lambda: [camera.QCameraDevice()]))
    monkeypatch.setattr(
        QCoreApplication, "checkPermission", lambda _app, _p: Qt.PermissionStatus.Denied, raising=False
    )
    assert QCameraPermission is not None
    panel = CameraPanel()
    qtbot.addWidget(panel)
    panel.start()
    assert "not allowed to use the camera" in panel.message_text()
    assert not panel.is_running()


def test_without_qt_multimedia_the_tab_says_what_to_install(window, qtbot, monkeypatch):
    from gui.views import camera_view

    monkeypatch.setattr(
        camera_view,
        "camera_support",
        lambda: (
            None,
            camera_view.NO_MULTIMEDIA.format(error="libpulse.so.0: cannot open shared object file"),
        ),
    )
    tab = window.predict_tab
    window.tabs.setCurrentWidget(tab)
    tab.camera_button.setChecked(True)
    message = tab.camera_page.panel.message_text()
    assert "Qt Multimedia" in message and "libpulse0" in message


def test_a_frame_offered_while_another_is_classified_is_dropped(qtbot, trained_bundle, synthetic_dataset):
    from engine.inference.predict import Predictor
    from gui.background.jobs import ThreadRunner

    runner = ThreadRunner()
    classifier = LiveClassifier(runner)
    frame = _frame(sorted((synthetic_dataset / "val" / "dogs").iterdir())[0])
    assert not classifier.offer(frame)  # no model: nothing to classify with
    classifier.set_predictor(Predictor.from_bundle(trained_bundle, device="cpu"))
    answers = []
    classifier.answered.connect(answers.append)
    assert classifier.offer(frame)
    assert not classifier.offer(frame)  # one in flight: dropped
    qtbot.waitUntil(lambda: len(answers) == 1, timeout=60_000)
    assert answers[0].prediction.label == "dogs"
    assert classifier.offer(frame)  # free again
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=60_000)
    assert (classifier.offered, classifier.dropped, classifier.classified) == (4, 2, 2)
    classifier.stop()
    assert runner.shutdown(10)


def test_a_frame_reaches_the_model_as_the_same_picture(synthetic_dataset):
    path = sorted((synthetic_dataset / "val" / "cats").iterdir())[0]
    frame = _frame(path, (97, 61))  # an odd width: QImage pads its lines
    with Image.open(path) as opened:
        expected = opened.convert("RGB").resize((97, 61))
    assert pil_image(frame).tobytes() == expected.tobytes()
    argb = frame.convertToFormat(QImage.Format.Format_ARGB32)
    assert pil_image(argb).tobytes() == expected.tobytes()


# -- Capture into class (the Data tab's sort view) -----------------------------------------------


def _sort_panel(window, qtbot, dataset: Path):
    window.data_tab.open_dataset(dataset)
    qtbot.waitUntil(lambda: window.data_tab.report is not None, timeout=60_000)
    return window.data_tab.sort


def test_capture_into_class_writes_a_photo_into_the_class_folder(
    window, qtbot, monkeypatch, synthetic_dataset, tmp_path
):
    import shutil

    monkeypatch.setattr(camera.CameraFeed, "cameras", staticmethod(lambda: []))
    dataset = tmp_path / "pets"
    shutil.copytree(synthetic_dataset, dataset)
    panel = _sort_panel(window, qtbot, dataset)
    window.data_tab.views.setCurrentWidget(panel)
    qtbot.mouseClick(window.findChild(QPushButton, "sortCaptureButton"), Qt.MouseButton.LeftButton)
    dialog = panel.capture_dialog
    assert dialog is not None and dialog.isVisible() and dialog.root == dataset
    assert "No camera found" in dialog.panel.message_text()
    assert not dialog.capture_button.isEnabled()
    frame = _frame(sorted((synthetic_dataset / "val" / "cats").iterdir())[0])
    source = FrameSource([frame])
    dialog.start(source.input)
    qtbot.waitUntil(dialog.capture_button.isEnabled, timeout=10_000)
    before = set((dataset / "train" / "cats").iterdir())
    dialog.class_picker.setCurrentText("cats")
    qtbot.mouseClick(dialog.capture_button, Qt.MouseButton.LeftButton)
    new = set((dataset / "train" / "cats").iterdir()) - before
    assert len(new) == 1
    photo = new.pop()
    assert photo.name.startswith("capture ") and photo.suffix == ".jpg"
    with Image.open(photo) as saved:
        assert saved.size == (640, 480) and saved.format == "JPEG"

    dialog.class_picker.setCurrentText("hamsters")  # a new class: a new folder
    qtbot.waitUntil(lambda: source.sent >= 3, timeout=10_000)
    qtbot.wait(100)  # a frame newer than the one saved
    qtbot.mouseClick(dialog.capture_button, Qt.MouseButton.LeftButton)
    assert len(list((dataset / "train" / "hamsters").iterdir())) == 1
    qtbot.mouseClick(dialog.capture_button, Qt.MouseButton.LeftButton)  # the same frame: not twice
    assert len(dialog.saved) == 2

    line = dialog.class_picker.lineEdit()
    line.clear()
    line.setFocus()
    qtbot.keyClicks(line, "golden retriever")  # Space types a space while the name has focus
    assert dialog.class_picker.currentText() == "golden retriever" and len(dialog.saved) == 2

    dialog.class_picker.setCurrentText("../escape")
    qtbot.wait(100)
    qtbot.mouseClick(dialog.capture_button, Qt.MouseButton.LeftButton)
    assert "cannot be a class name" in dialog.error.label.text()
    assert len(dialog.saved) == 2 and not (dataset / "escape").exists()
    source.stop()
    rescans = []
    panel.datasetEdited.connect(lambda: rescans.append(1))
    dialog.reject()
    assert rescans == [1] and panel.capture_dialog is None
    assert not dialog.panel.is_running()


def test_an_empty_folder_becomes_a_dataset_with_the_camera(
    window, qtbot, monkeypatch, synthetic_dataset, tmp_path
):
    monkeypatch.setattr(camera.CameraFeed, "cameras", staticmethod(lambda: []))
    folder = tmp_path / "new dataset"
    folder.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    qtbot.mouseClick(window.findChild(QPushButton, "openDatasetButton"), Qt.MouseButton.LeftButton)
    button = window.findChild(QPushButton, "dataCaptureButton")
    qtbot.waitUntil(button.isVisible, timeout=30_000)  # "This folder cannot be used", and the way out
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    dialog = window.data_tab.sort.capture_dialog
    assert dialog is not None and dialog.root == folder and dialog.class_picker.count() == 0
    photos = {c: sorted((synthetic_dataset / "train" / c).iterdir()) for c in ("cats", "dogs")}
    source = FrameSource([_frame(photos["cats"][0])])
    dialog.start(source.input)
    for name in ("cats", "dogs"):
        dialog.class_picker.setCurrentText(name)
        for n in range(4):
            source.frames = [_frame(photos[name][n])]
            shown = dialog._frame_number
            qtbot.waitUntil(lambda shown=shown: dialog._frame_number > shown + 1, timeout=10_000)
            qtbot.mouseClick(dialog.capture_button, Qt.MouseButton.LeftButton)
    source.stop()
    assert len(dialog.saved) == 8
    assert sorted(p.name for p in folder.iterdir()) == ["cats", "dogs"]  # no split folders: <class>/
    dialog.reject()
    qtbot.waitUntil(lambda: window.data_tab.report is not None, timeout=30_000)
    assert window.data_tab.report.classes == ["cats", "dogs"]
    assert not button.isVisible()


def test_a_late_permission_answer_starts_the_camera_only_if_still_wanted(qtbot, monkeypatch):
    from PySide6.QtCore import QCoreApplication

    asked = []
    monkeypatch.setattr(camera.CameraFeed, "cameras", staticmethod(lambda: [camera.QCameraDevice()]))
    status = [Qt.PermissionStatus.Undetermined]
    monkeypatch.setattr(QCoreApplication, "checkPermission", lambda _app, _p: status[0], raising=False)
    monkeypatch.setattr(
        QCoreApplication,
        "requestPermission",
        lambda _app, _p, _ctx, answer: asked.append(answer),
        raising=False,
    )
    feed = camera.CameraFeed()
    feed.start_camera()
    assert len(asked) == 1 and not feed.is_running()  # the system asks the user
    feed.stop()  # the user left the tab meanwhile
    status[0] = Qt.PermissionStatus.Granted
    asked[0](None)
    assert feed.camera is None  # not started behind the user's back
    problems = []
    feed.problem.connect(problems.append)
    status[0] = Qt.PermissionStatus.Denied
    feed.start_camera()
    assert problems == [camera.NO_PERMISSION] and feed.camera is None


def test_another_dataset_or_closing_the_window_closes_capture(
    make_window, qtbot, synthetic_dataset, tmp_path
):
    import shutil

    window = make_window()
    dataset = tmp_path / "pets"
    shutil.copytree(synthetic_dataset, dataset)
    panel = _sort_panel(window, qtbot, dataset)
    dialog = panel.open_capture()
    assert dialog is not None and dialog.isVisible()
    other = tmp_path / "other"
    shutil.copytree(synthetic_dataset, other)
    window.data_tab.open_dataset(other)
    qtbot.waitUntil(lambda: window.data_tab.report is not None and window.data_tab.report.root == other)
    assert panel.capture_dialog is None and not dialog.isVisible()  # photos never go into the old one
    dialog = panel.open_capture()
    assert dialog is not None and dialog.root == other
    source = FrameSource([_frame(sorted((synthetic_dataset / "val" / "cats").iterdir())[0])])
    dialog.start(source.input)
    qtbot.waitUntil(dialog.panel.is_running)
    window.close()
    source.stop()
    assert not dialog.panel.is_running() and panel.capture_dialog is None
