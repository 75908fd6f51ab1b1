"""Shared test set-up: offscreen Qt, isolated settings and runs folders, leak checks for GUI tests.

Only tests that use ``qtbot`` touch Qt: engine tests never import PySide6 through this file.
For those GUI tests:
- the settings file and the runs folder live in the test's tmp_path;
- modal dialogs (QMessageBox, QFileDialog static functions) are replaced so nothing can block:
  message boxes answer "Yes" and are recorded in ``dialogs``; file dialogs return "cancelled"
  unless the test patches them itself;
- a test fails if it leaves a QThread running or a visible top-level widget behind;
- a test fails if a pytest-qt blocker (``qtbot.waitSignal``/``waitSignals``/``waitCallback``) was
  triggered on a worker thread, or Qt complained about an object used from another thread: wait on
  ``on_gui_thread(signal)`` for a worker's signals (see tests/test_gui_signal_threads.py).

For every test:
- the log file goes to a temporary folder, and the old default runs folder is an empty one;
- network connections to anything but the loopback interface (127.0.0.1, localhost, ::1) raise
  :class:`NetworkAccessBlocked` before any packet is sent, and the test fails even if the code under
  test swallowed that error (the suite must pass offline: it may talk only to local test servers);
- tests marked ``needs_cuda`` are skipped, with a reason, when ``torch.cuda.is_available()`` is false
  (torch is imported only when such a test was collected).
"""

from __future__ import annotations

import gc
import ipaddress
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")
# The log file of every app and CLI started by the tests (subprocesses too) stays out of the user's.
os.environ.setdefault("TRANSFER_STUDIO_LOGS", tempfile.mkdtemp(prefix="transfer-studio-test-logs-"))
# And the app's data folder (exclusion lists), with its default runs folder.
os.environ.setdefault("TRANSFER_STUDIO_DATA", tempfile.mkdtemp(prefix="transfer-studio-test-data-"))
# And the feature cache: one per session, never the user's. Tests that train the same model on the
# same photos with the same settings (the acceptance runs on hymenoptera) share its features; a test
# that counts what is computed cold sets a cache of its own.
SESSION_CACHE = os.environ.setdefault(
    "TRANSFER_STUDIO_CACHE", tempfile.mkdtemp(prefix="transfer-studio-test-cache-")
)

# And torch's hub folder, where weights are downloaded and imported: never the user's, so that no test
# can leave a file there (random weights in the user's cache would pass for pretrained ones).
# (An inner pytester session, run in this process, keeps the outer session's folder.)
_TORCH_PREFIX = "transfer-studio-test-torch-"
if _TORCH_PREFIX not in Path(os.environ.get("TORCH_HOME", "")).name:
    os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix=_TORCH_PREFIX)
SESSION_TORCH_HOME = os.environ["TORCH_HOME"]

THREAD_GRACE_MS = 10_000

pytest_plugins = ["pytester"]  # tests/test_conftest_guards.py runs inner sessions with this conftest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After every fixture is undone: a test that left ``TRANSFER_STUDIO_CACHE`` changed errors (the
    tests after it would compute their features again, or write them into the user's own cache)."""
    yield
    now = os.environ.get("TRANSFER_STUDIO_CACHE")
    if now != SESSION_CACHE:
        os.environ["TRANSFER_STUDIO_CACHE"] = SESSION_CACHE
        raise RuntimeError(f"{item.nodeid} left TRANSFER_STUDIO_CACHE={now!r}: use monkeypatch.setenv")
    _check_torch_hub_left_alone(item)


def _check_torch_hub_left_alone(item: pytest.Item) -> None:
    """A test that left ``torch.hub.set_dir`` pinned (the tests after it would write weights there
    whatever their TORCH_HOME) or TORCH_HOME changed errors, and both are put back."""
    torch = sys.modules.get("torch")
    pinned = getattr(getattr(torch, "hub", None), "_hub_dir", None)
    home = os.environ.get("TORCH_HOME")
    if pinned is not None:
        torch.hub._hub_dir = None  # type: ignore[union-attr]
    if home != SESSION_TORCH_HOME:
        os.environ["TORCH_HOME"] = SESSION_TORCH_HOME
    if pinned is not None or home != SESSION_TORCH_HOME:
        raise RuntimeError(
            f"{item.nodeid} left torch's hub folder changed (set_dir {pinned!r}, TORCH_HOME {home!r}): "
            "use monkeypatch"
        )


@pytest.fixture(autouse=True)
def _no_runs_from_the_real_old_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pre-platformdirs runs folder (``~/TransferStudio/runs``) is a per-session empty place."""
    legacy = tmp_path_factory.getbasetemp() / "legacy-home" / "TransferStudio" / "runs"
    monkeypatch.setattr("engine.core.locations.legacy_runs_root", lambda: legacy)


# -- needs_cuda -----------------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``needs_cuda`` tests without a usable CUDA device."""
    _skip_cuda_tests_without_cuda(items)


def _skip_cuda_tests_without_cuda(items: list[pytest.Item]) -> None:
    """Torch is imported only if a ``needs_cuda`` test is collected."""
    marked = [item for item in items if item.get_closest_marker("needs_cuda") is not None]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    reason = "needs an NVIDIA GPU: torch.cuda.is_available() is False"
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=reason))


# -- no network -----------------------------------------------------------------------------------


class NetworkAccessBlocked(RuntimeError):
    """A test tried to reach a host other than the loopback interface."""


_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def _is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a host name: resolving it would already be network access


class NetworkGuard:
    """Patches socket connects for one test; remembers what was blocked so the test fails anyway."""

    def __init__(self) -> None:
        self.blocked: list[str] = []

    def check(self, family: int, address: object) -> None:
        if family not in _INET_FAMILIES:
            return  # AF_UNIX (multiprocessing, DataLoader workers) and the like never leave the machine
        host = address[0] if isinstance(address, tuple) and address else address
        if _is_local(host):
            return
        where = ":".join(str(part) for part in address[:2]) if isinstance(address, tuple) else repr(address)
        self.blocked.append(where)
        raise NetworkAccessBlocked(
            f"tests must not use the network: blocked a connection to {where} "
            "(only 127.0.0.1, localhost and ::1 are allowed)"
        )

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
        real_create_connection = socket.create_connection
        guard = self

        def connect(self: socket.socket, address: Any) -> None:
            guard.check(self.family, address)
            return real_connect(self, address)

        def connect_ex(self: socket.socket, address: Any) -> int:
            guard.check(self.family, address)
            return real_connect_ex(self, address)

        def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
            guard.check(socket.AF_INET, address)  # before the host name is resolved
            return real_create_connection(address, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
    """Every test: connections beyond the loopback interface raise, and fail the test at teardown."""
    guard = NetworkGuard()
    guard.install(monkeypatch)
    yield guard
    if guard.blocked:
        pytest.fail(f"the test tried to use the network: {', '.join(guard.blocked)}", pytrace=False)


class DialogRecorder:
    """What message boxes the code under test tried to show."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str, str]] = []

    def record(self, kind: str, title: str, text: str) -> None:
        self.shown.append((kind, str(title), str(text)))


@pytest.fixture
def dialogs(request: pytest.FixtureRequest) -> DialogRecorder:
    """The DialogRecorder of a GUI test (``qtbot`` tests get one automatically)."""
    return request.node.stash.setdefault(_DIALOGS_KEY, DialogRecorder())


_DIALOGS_KEY = pytest.StashKey[DialogRecorder]()


def _patch_dialogs(monkeypatch: pytest.MonkeyPatch, recorder: DialogRecorder) -> None:
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    def box(kind: str, answer: Any = None):
        def show(_parent: Any, title: str = "", text: str = "", *_args: Any, **_kwargs: Any) -> Any:
            recorder.record(kind, title, text)
            return answer

        return staticmethod(show)

    yes = QMessageBox.StandardButton.Yes
    ok = QMessageBox.StandardButton.Ok
    monkeypatch.setattr(QMessageBox, "question", box("question", yes))
    monkeypatch.setattr(QMessageBox, "information", box("information", ok))
    monkeypatch.setattr(QMessageBox, "warning", box("warning", ok))
    monkeypatch.setattr(QMessageBox, "critical", box("critical", ok))
    monkeypatch.setattr(QMessageBox, "about", box("about"))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: ""))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(lambda *a, **k: ([], "")))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("", "")))


_gui_garbage: list[str] = []  # the GUI test that ran last, until its garbage was collected


@pytest.fixture(autouse=True)
def _gui_test_guard(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    # Qt objects left by a GUI test must be destroyed on this (the GUI) thread, never by Python's
    # automatic collector running inside some worker thread: their garbage is collected here, before
    # the next test, and during a GUI test the automatic collector is off (as in the app itself,
    # gui.background.gc_policy). A precaution: the segfault after the GUI tests came from pytest-qt
    # blockers triggered on worker threads (see _blockers_triggered_off_the_gui_thread).
    if _gui_garbage:
        gc.collect()
        gc.enable()
        _gui_garbage.clear()
    if "qtbot" not in request.fixturenames:
        yield
        return
    _gui_garbage.append(request.node.nodeid)
    gc.disable()
    from PySide6.QtCore import Qt, QThread, QThreadPool
    from PySide6.QtWidgets import QApplication

    import gui.core.qt_compat  # noqa: F401 - PySide6 6.12 on Python 3.11 needs its work-around first

    monkeypatch.setenv("TRANSFER_STUDIO_SETTINGS", str(tmp_path / "settings" / "settings.ini"))
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(request.getfixturevalue("feature_cache")))
    _patch_dialogs(monkeypatch, request.getfixturevalue("dialogs"))

    started: list[QThread] = []
    original_start = QThread.start

    def recording_start(self: QThread, *args: Any) -> None:
        started.append(self)
        original_start(self, *args)

    monkeypatch.setattr(QThread, "start", recording_start)
    blockers = _record_blockers(monkeypatch)
    qt_messages = getattr(request.node, "qt_log_capture", None)  # pytest-qt's, gone after the call
    app = QApplication.instance()
    visible_before = {id(w) for w in QApplication.topLevelWidgets() if w.isVisible()} if app else set()

    yield

    import shiboken6
    from pytestqt.qtbot import QtBot

    qtbot = QtBot(request)
    problems = []
    for thread in started:
        if not shiboken6.isValid(thread):
            continue
        if thread.isRunning():
            try:
                qtbot.waitUntil(lambda t=thread: not t.isRunning(), timeout=THREAD_GRACE_MS)
            except Exception:  # noqa: BLE001 - reported below
                problems.append(f"QThread {thread.objectName() or thread!r} still running")
    if not QThreadPool.globalInstance().waitForDone(THREAD_GRACE_MS):
        problems.append("the global QThreadPool still has running jobs")
    transient = (Qt.WindowType.Popup, Qt.WindowType.ToolTip)
    leaked = [
        w
        for w in QApplication.topLevelWidgets()
        if w.isVisible() and id(w) not in visible_before and w.windowType() not in transient
    ]
    for widget in leaked:
        problems.append(f"visible top-level widget left behind: {type(widget).__name__} "
                        f"{widget.objectName()!r}")  # fmt: skip
        widget.close()
    problems += _blockers_triggered_off_the_gui_thread(blockers)
    blockers.clear()  # destroyed here, on the GUI thread, even when the test fails
    if qt_messages is not None:
        problems += [
            f"Qt: {record.message}"
            for record in qt_messages.records
            if "another thread" in record.message or "different thread" in record.message
        ]
    if problems:
        pytest.fail("; ".join(problems))


def _record_blockers(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The pytest-qt blockers triggered on a thread other than the GUI thread during the test.

    A blocker (``qtbot.waitSignal``/``waitSignals``/``waitCallback``) hands PySide6 a plain Python
    callable, which is called in the emitting thread: for a worker's signal, the worker thread. There
    the blocker's ``QTimer.stop()`` is refused by Qt ("Timers cannot be stopped from another thread")
    and its timeout timer stays registered with the GUI thread's event loop; if that thread also
    releases the blocker last, the timer is destroyed there and the GUI thread's next
    ``processEvents()`` after the timeout delivers a timer event to freed memory (a segfault).
    """
    import threading

    from pytestqt import wait_signal

    triggered: list[Any] = []  # also keeps them alive until the test's teardown, on the GUI thread

    def recording(cleanup: Any) -> Any:
        def record(self: Any) -> None:
            if threading.current_thread() is not threading.main_thread():
                triggered.append(self)
            cleanup(self)

        return record

    for cls in (wait_signal._AbstractSignalBlocker, wait_signal.CallbackBlocker):
        monkeypatch.setattr(cls, "_cleanup", recording(cls._cleanup))
    return triggered


def _blockers_triggered_off_the_gui_thread(blockers: list[Any]) -> list[str]:
    """A failure for the blockers of :func:`_record_blockers`, whose timers are unregistered here."""
    if not blockers:
        return []
    import shiboken6
    from PySide6.QtCore import QAbstractEventDispatcher

    dispatcher = QAbstractEventDispatcher.instance()
    for blocker in blockers:
        if dispatcher is not None and shiboken6.isValid(blocker._timer):
            dispatcher.unregisterTimers(blocker._timer)  # what QTimer.stop() could not do there
    return [
        f"{len(blockers)} qtbot.waitSignal/waitSignals/waitCallback blocker(s) got their signal on "
        "another thread; wait on on_gui_thread(signal) instead"
    ]


@pytest.fixture
def on_gui_thread(qtbot: Any) -> Iterator[Any]:
    """``on_gui_thread(signal)``: a signal the GUI thread emits (queued) each time ``signal`` is emitted.

    Give that one, never a worker's own signal, to ``qtbot.waitSignal(s)``: pytest-qt's blockers are
    called in the emitting thread (see :func:`_blockers_triggered_off_the_gui_thread`). The relayed
    signal has no arguments (the order of several relayed signals is kept).
    """
    from PySide6.QtCore import QObject, Signal, Slot

    class Relay(QObject):
        relayed = Signal()

        @Slot()
        def relay(self) -> None:
            self.relayed.emit()

    relays: list[Any] = []

    def relay(signal: Any) -> Any:
        relay = Relay()  # lives on this, the GUI, thread: a worker thread's emission reaches it queued
        signal.connect(relay.relay)
        relays.append(relay)
        return relay.relayed

    yield relay
    relays.clear()


@pytest.fixture(scope="session")
def feature_cache() -> Path:
    """The engine's feature cache of this test session (see SESSION_CACHE), shared by its tests."""
    return Path(SESSION_CACHE)


# -- GUI fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def make_window(qtbot: Any) -> Iterator[Any]:
    """Factory for shown MainWindows; each is closed (stopping its workers) at teardown."""
    import shiboken6

    from gui.core.settings import Settings
    from gui.shell.main_window import MainWindow

    created: list[Any] = []

    def make(settings_path: Path | None = None, show: bool = True) -> MainWindow:
        window = MainWindow(Settings(settings_path) if settings_path else None)
        qtbot.addWidget(window)
        created.append(window)
        if show:
            window.show()
            qtbot.waitExposed(window)
        return window

    yield make
    for window in created:
        if shiboken6.isValid(window) and window.isVisible():
            window.close()


@pytest.fixture
def window(make_window: Any) -> Any:
    return make_window()


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and val/ folders of two colour classes, 8 images each per split (48x48 px)."""
    from helpers_images import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("data") / "pets", {"cats": 8, "dogs": 8})


@pytest.fixture(scope="session")
def trained_bundle(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model bundle trained (2 epochs, efficientnet_lite0 feature extraction) on synthetic_dataset."""
    from helpers_images import SMALL_INPUT

    from engine.core.config import TrainConfig
    from engine.training.trainer import train

    config = TrainConfig.for_strategy(
        "feature-extract", epochs=2, batch_size=8, lr=1e-2, device="cpu", workers=0, input_size=SMALL_INPUT
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path_factory.mktemp("bundle-cache")))
        result = train(config, synthetic_dataset, run_dir=tmp_path_factory.mktemp("run") / "run")
    assert result.bundle_path is not None
    return result.bundle_path


@pytest.fixture
def trash_home(tmp_path, monkeypatch):
    """A freedesktop trash under tmp_path; returns its ``files`` folder.

    send2trash reads ``XDG_DATA_HOME`` once, when it is first imported, so its module globals are
    pointed here too (the environment variable alone would be ignored after the first test).
    """
    data_home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    if sys.platform.startswith("linux"):
        from send2trash import plat_other

        monkeypatch.setattr(plat_other, "XDG_DATA_HOME", os.fsencode(data_home))
        monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(data_home / "Trash"))
        monkeypatch.setattr(plat_other, "HOMETRASH", str(data_home / "Trash"))
    return data_home / "Trash" / "files"
