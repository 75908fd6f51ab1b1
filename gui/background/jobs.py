"""Running work off the GUI thread: workers on QThreads, the runner that owns them, and :class:`Job`,
which is how a tab runs one kind of work.

Pattern (after superqt's ``_qthreading``): a :class:`Worker` is a QObject with a fixed signal set
(``returned``, ``errored`` or ``aborted``, then always ``done``) whose :meth:`Worker.run` slot executes on
its own QThread. Abort is a flag that the engine operation polls between steps through its
``should_stop`` (between batches for training), never a thread kill; the operation then raises
:class:`engine.core.errors.Cancelled` (or, for training, returns its stopped run), and the worker emits
``aborted`` instead of ``returned``. The :class:`ThreadRunner` owns every running thread, so the window
can stop them all and wait on quit, and applies the garbage-collection policy (:mod:`gui.background.gc_policy`)
before each one starts.

A :class:`Job` is one kind of work of one owner (a tab's scan, its evaluation, a dialog's export): the
owner says once what to show for each outcome, then starts work; a new start cancels the previous
work and its late results are dropped; ``busyChanged`` tells when it runs. No tab checks
``self.sender()`` or keeps a worker to compare against.

Signals are only ever connected to slots of QObjects that live on the GUI thread, so Qt queues the
calls onto the GUI thread (a plain lambda would run on the worker thread).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

import gui.core.qt_compat  # noqa: F401 - must run before heavy Qt use
from engine.core.errors import Cancelled, TransferStudioError
from gui.background.gc_policy import freeze_long_lived

logger = logging.getLogger(__name__)

#: Minimum seconds between two progress signals (the last step always goes out).
PROGRESS_INTERVAL_S = 0.1
#: Niceness added to worker threads (Linux): the GUI thread wins the CPU when both want it.
WORKER_NICENESS = 5
_lowered = threading.local()


def lower_thread_priority() -> None:
    """Make the calling (worker) thread yield the CPU to the GUI thread; threads it starts inherit it.

    On Linux the niceness is per thread; elsewhere QThread's LowPriority (set by ThreadRunner) does
    the job. Idempotent per thread, never raises.
    """
    if getattr(_lowered, "done", False):
        return
    _lowered.done = True
    if sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + WORKER_NICENESS))
        except OSError:
            logger.debug("cannot lower the priority of thread %s", threading.get_native_id())


def friendly_error(exc: BaseException) -> str:
    """A one-line message for the user: the engine's own message, or the exception in plain words."""
    if isinstance(exc, TransferStudioError):
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, MemoryError):
        return "Out of memory: try a smaller batch size or a smaller model."
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if "out of memory" in first.lower():
        return "Out of memory: try a smaller batch size or a smaller model."
    return f"Unexpected error ({type(exc).__name__}): {first}" if first else type(exc).__name__


_TORCH_IMPORT = threading.Lock()


def import_torch() -> None:
    """Import torch and torchvision, one thread at a time.

    Two worker threads importing them at once (the start-up environment probe and a worker the user
    started straight away) can each see the other's half-initialised module, because torchvision's
    ``models`` and ``transforms`` import each other: one of them then fails with a circular-import
    error. Every worker that may touch torch calls this first; once imported it costs nothing.
    """
    with _TORCH_IMPORT:
        import torch  # noqa: F401
        import torchvision  # noqa: F401


class Worker(QObject):
    """Runs :meth:`work` on a QThread; emits ``returned(result)``, ``errored(message)`` or ``aborted``, then ``done``.

    On the way it may emit ``yielded(value)``: partial results (a chunk of predictions).

    ``imports_torch`` (true unless a worker says otherwise): import torch and torchvision first, under
    the lock of :func:`import_torch`.
    """

    imports_torch = True
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(str)
    aborted = Signal()
    done = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._abort = False

    def abort(self) -> None:
        """Ask the work to stop at its next check (thread-safe: a plain flag)."""
        self._abort = True

    @property
    def abort_requested(self) -> bool:
        """Whether :meth:`abort` was called: pass ``lambda: worker.abort_requested`` as ``should_stop``."""
        return self._abort

    def check_abort(self) -> None:
        """Raise :class:`~engine.core.errors.Cancelled` if :meth:`abort` was called."""
        if self._abort:
            raise Cancelled(f"{type(self).__name__} stopped")

    def work(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    @Slot()
    def run(self) -> None:
        """Thread entry point: never lets an exception escape into Qt."""
        lower_thread_priority()
        try:
            if self.imports_torch:
                import_torch()
            result = self.work()
        except Cancelled:
            logger.debug("%s cancelled", type(self).__name__)
            self.aborted.emit()
        except Exception as exc:  # noqa: BLE001 - everything is reported to the user
            expected = isinstance(exc, TransferStudioError)  # bad input: its message says it all
            logger.warning("%s failed: %s", type(self).__name__, exc, exc_info=not expected)
            self.errored.emit(friendly_error(exc))
        else:
            if self._abort:  # the operation ended early but cleanly (a stopped training run)
                self.aborted.emit()
            else:
                self.returned.emit(result)
        finally:
            self.done.emit()


class FunctionWorker(Worker):
    """A worker that calls ``fn(worker)``; ``fn`` may call ``worker.check_abort()`` between steps.

    ``fn`` reports progress with :meth:`report_progress`, which is throttled (the final step always
    goes out) and raises :class:`~engine.core.errors.Cancelled` once the worker was aborted (for
    operations whose only hook is a progress callback, such as the dataset scan).
    """

    progress = Signal(int, int)  # done, total

    def __init__(self, fn: Callable[[FunctionWorker], Any], *, imports_torch: bool = True) -> None:
        super().__init__()
        self._fn = fn
        self.imports_torch = imports_torch
        self._last_progress = 0.0

    def report_progress(self, done: int, total: int) -> None:
        self.check_abort()
        now = time.monotonic()
        if done >= total or now - self._last_progress >= PROGRESS_INTERVAL_S:
            self._last_progress = now
            self.progress.emit(done, total)

    def work(self) -> Any:
        return self._fn(self)


class ThreadRunner(QObject):
    """Starts workers on their own QThreads and keeps them alive until the thread has finished."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._running: dict[QThread, Worker] = {}
        self._closed = False

    def start(self, worker: Worker, name: str = "") -> QThread | None:
        """Move ``worker`` to a new QThread and start it (None, not started, after shutdown)."""
        if self._closed:
            logger.debug("not starting %s: shutting down", name or type(worker).__name__)
            return None
        freeze_long_lived()
        thread = QThread()
        thread.setObjectName(name or type(worker).__name__)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        # Direct: QThread.quit is thread-safe, and the GUI thread may be blocked in wait_all().
        worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_finished)
        self._running[thread] = worker
        thread.start(QThread.Priority.LowPriority)
        return thread

    @Slot()
    def _on_finished(self) -> None:
        for thread in [t for t in self._running if t.isFinished()]:
            thread.wait()
            del self._running[thread]

    def is_busy(self) -> bool:
        return any(not t.isFinished() for t in self._running)

    def workers(self) -> list[Worker]:
        return list(self._running.values())

    def abort_all(self) -> None:
        for worker in self._running.values():
            worker.abort()

    def wait_all(self, timeout_s: float = 60.0) -> bool:
        """Block until every thread has finished (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        for thread in list(self._running):
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not thread.wait(left_ms):
                logger.warning("thread %s did not stop in time", thread.objectName())
                return False
        self._on_finished()
        return True

    def shutdown(self, timeout_s: float = 60.0) -> bool:
        """Abort every worker and wait for all threads; no new work starts afterwards."""
        self._closed = True
        self.abort_all()
        return self.wait_all(timeout_s)


Callback = Callable[..., object]


class _Relay(QObject):
    """Receives one worker's signals on the GUI thread and passes them on while its work is current."""

    def __init__(self, job: Job, worker: Worker) -> None:
        super().__init__(job)
        self.job = job
        self.worker: Worker | None = worker
        worker.yielded.connect(self.on_yielded)
        worker.returned.connect(self.on_returned)
        worker.errored.connect(self.on_errored)
        worker.aborted.connect(self.on_aborted)
        worker.done.connect(self.on_done)
        if isinstance(worker, FunctionWorker):
            worker.progress.connect(self.on_progress)

    def _current(self) -> bool:
        return self.worker is not None and self.job.worker is self.worker

    @Slot(object)
    def on_yielded(self, value: object) -> None:
        if self._current() and self.job.on_yielded is not None:
            self.job.on_yielded(value)

    @Slot(object)
    def on_returned(self, result: object) -> None:
        if self._current() and self.job.on_returned is not None:
            self.job.on_returned(result)

    @Slot(str)
    def on_errored(self, message: str) -> None:
        if self._current() and self.job.on_errored is not None:
            self.job.on_errored(message)

    @Slot()
    def on_aborted(self) -> None:
        if self._current() and self.job.on_aborted is not None:
            self.job.on_aborted()

    @Slot(int, int)
    def on_progress(self, done: int, total: int) -> None:
        if self._current() and self.job.on_progress is not None:
            self.job.on_progress(done, total)

    @Slot()
    def on_done(self) -> None:
        if self._current():
            self.job.finish()
        self.worker = None  # the relay is done; let the worker go
        self.deleteLater()


class Job(QObject):
    """One kind of background work of one owner: at most one runs; a new one replaces the one before.

    The owner gives, once, what to do with each outcome (called on the GUI thread, only for the current
    work): ``on_yielded(value)`` (partial results), ``on_returned(result)``, ``on_errored(message)``,
    ``on_aborted()`` (after :meth:`stop`), ``on_progress(done, total)`` (a :class:`FunctionWorker`'s) and
    ``on_done()`` (always, last).
    :meth:`start` runs a function (or a :class:`Worker`); :meth:`stop` asks the current work to stop and
    still hears how it ended; :meth:`cancel` stops it and forgets it. ``busyChanged(bool)``.
    """

    busyChanged = Signal(bool)

    def __init__(
        self,
        runner: ThreadRunner,
        name: str,
        parent: QObject,
        *,
        on_yielded: Callback | None = None,
        on_returned: Callback | None = None,
        on_errored: Callback | None = None,
        on_aborted: Callback | None = None,
        on_progress: Callback | None = None,
        on_done: Callback | None = None,
    ) -> None:
        super().__init__(parent)
        self.runner = runner
        self.name = name
        self.on_yielded = on_yielded
        self.on_returned, self.on_errored, self.on_aborted = on_returned, on_errored, on_aborted
        self.on_progress, self.on_done = on_progress, on_done
        self.worker: Worker | None = None

    def start(self, work: Callable[[FunctionWorker], Any] | Worker, *, imports_torch: bool = True) -> bool:
        """Run ``work`` (``fn(worker)`` or a Worker), replacing what runs now; False when the window is
        closing and nothing started."""
        self.cancel()
        worker = work if isinstance(work, Worker) else FunctionWorker(work, imports_torch=imports_torch)
        _Relay(self, worker)
        self.worker = worker
        if self.runner.start(worker, self.name) is None:
            self.worker = None
            return False
        self.busyChanged.emit(True)
        return True

    def stop(self) -> None:
        """Ask the current work to stop at its next check; ``on_aborted`` (or its result) still comes."""
        if self.worker is not None:
            self.worker.abort()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was asked and the work has not ended yet."""
        return self.worker is not None and self.worker.abort_requested

    def cancel(self) -> None:
        """Stop the current work and drop whatever it still sends."""
        if self.worker is not None:
            self.worker.abort()
            self.worker = None
            self.busyChanged.emit(False)

    def is_busy(self) -> bool:
        return self.worker is not None

    def finish(self) -> None:
        """The current work ended (its ``done``): forget it, then ``on_done``."""
        self.worker = None
        self.busyChanged.emit(False)
        if self.on_done is not None:
            self.on_done()
