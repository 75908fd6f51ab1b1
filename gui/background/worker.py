"""Background work for the window: worker QObjects moved to QThreads, and the training worker.

Pattern (after superqt's ``_qthreading``): a :class:`Worker` is a QObject with a fixed signal set
(``returned``, ``errored``, ``aborted``, then always ``done``) whose :meth:`Worker.run` slot executes on
its own QThread. Abort is a flag that the engine operation polls between steps through its
``should_stop`` (between batches for training), never a thread kill; the operation then raises
:class:`engine.core.errors.Cancelled` (or, for training, returns its stopped run), and the worker emits
``aborted`` instead of ``returned``. A
:class:`ThreadRunner` owns every running thread so the window can stop them all and wait on quit.

Signals are only ever connected to bound methods of QObjects that live on the GUI thread, so Qt queues
the calls onto the GUI thread (a plain lambda would run on the worker thread).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

import gui.core.qt_compat  # noqa: F401 - must run before heavy Qt use
from engine.core.errors import Cancelled, TransferStudioError
from engine.training import events as ev

if TYPE_CHECKING:
    from engine.core.config import TrainConfig
    from engine.data.datasets import DatasetReport
    from engine.inference.predict import Predictor
    from engine.training.trainer import RunResult

logger = logging.getLogger(__name__)

#: Minimum seconds between two batch-progress signals (the last batch of a phase always goes out).
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


def freeze_gc() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach.

    After torch is loaded the heap holds hundreds of thousands of long-lived objects; a full
    collection then takes 150-250 ms and, run from a worker thread, blocks the GUI thread on the GIL
    for that long. Frozen objects are still freed by reference counting; later full collections
    only scan what was created afterwards. Cheap (no traversal), so it is called after start-up
    loading and before each training run.
    """
    gc.freeze()


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

    ``imports_torch`` (true unless a worker says otherwise): import torch and torchvision first, under
    the lock of :func:`import_torch`.
    """

    imports_torch = True
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


class TrainingEventsWorker(Worker):
    """Base of the workers that run the trainer (one run, or a bake-off's runs): training events
    become Qt signals, and torch's threads are set up so the GUI thread keeps a core.

    ``progress`` carries the latest BatchProgress plus every (x, loss) pair since the last emission,
    where x = epoch - 1 + batch / batches, so the per-batch loss curve loses no point to throttling.
    """

    runStarted = Signal(object)  # engine.training.events.RunStarted
    progress = Signal(object, object)  # BatchProgress, list[tuple[float, float]]
    epochEnded = Signal(object)  # EpochEnd
    message = Signal(str, str)  # level, text

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[tuple[float, float]] = []
        self._last_emit = 0.0

    @contextmanager
    def training_threads(self) -> Iterator[None]:
        """torch's thread count while training on this worker thread, restored afterwards.

        On Linux this thread (and the threads torch and the engine start from it) runs at a lower
        priority, so the GUI thread wins the CPU and every core can train. Elsewhere, leave one
        core to the GUI thread.
        """
        import torch  # heavy, imported on the worker thread only

        cores, threads = os.cpu_count() or 1, torch.get_num_threads()
        if not sys.platform.startswith("linux") and cores > 1 and threads > cores - 1:
            torch.set_num_threads(cores - 1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def emit_training_event(self, event: object) -> bool:
        """Emit the signal for a run's progress event; False for events the subclass handles."""
        if isinstance(event, ev.BatchProgress):
            self._on_batch(event)
        elif isinstance(event, ev.EpochEnd):
            self.epochEnded.emit(event)
        elif isinstance(event, ev.RunStarted):
            self._pending, self._last_emit = [], 0.0  # a new run's curve starts empty
            self.runStarted.emit(event)
        elif isinstance(event, ev.Message):
            self.message.emit(event.level, event.text)
        else:
            return False
        return True

    def _on_batch(self, event: ev.BatchProgress) -> None:
        if event.phase == "train" and event.batches:
            self._pending.append((event.epoch - 1 + event.batch / event.batches, float(event.loss)))
        now = time.monotonic()
        last_of_phase = event.batch >= event.batches
        if last_of_phase or now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._last_emit = now
            points, self._pending = self._pending, []
            self.progress.emit(event, points)


class TrainWorker(TrainingEventsWorker):
    """Wraps ``engine.training.trainer.train`` (or ``resume`` with ``resume_dir``): engine events become
    Qt signals (see :class:`TrainingEventsWorker`); Stop takes effect within a batch."""

    finished = Signal(object)  # RunFinished (also when stopped: it names the best epoch's bundle)
    history = Signal(object)  # list of metrics.jsonl rows, before a resumed run goes on

    def __init__(
        self,
        config: TrainConfig | None,
        data_root: str | Path | None,
        runs_root: str | Path | None = None,
        report: DatasetReport | None = None,
        resume_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        if resume_dir is None and (config is None or data_root is None):
            raise ValueError("a new run needs a config and a dataset folder")
        self.resume_dir = Path(resume_dir) if resume_dir else None
        self.config = config
        self.data_root = Path(data_root) if data_root is not None else None
        self.runs_root = Path(runs_root) if runs_root else None
        self.report = report
        self._failure: str | None = None

    def work(self) -> RunResult:
        from engine.core.rundir import RunDir, new_run_dir
        from engine.training import trainer

        stop = lambda: self._abort  # noqa: E731
        try:
            with self.training_threads():
                if self.resume_dir is not None:  # continue a stopped or killed run
                    try:
                        rows = RunDir(self.resume_dir).read_metrics()
                    except (OSError, ValueError):  # a damaged history only loses the earlier points
                        rows = []
                    self.history.emit(rows)
                    return trainer.resume(self.resume_dir, on_event=self._on_event, should_stop=stop)
                assert self.config is not None and self.data_root is not None  # checked in __init__
                return trainer.train(
                    self.config,
                    self.data_root,
                    run_dir=new_run_dir(self.config.model, self.config.strategy, self.runs_root),
                    on_event=self._on_event,
                    should_stop=stop,
                    report=self.report,
                )
        except Exception as exc:
            if self._failure is not None:  # the trainer said why (RunFailed) and logged the traceback
                raise TransferStudioError(self._failure) from exc
            raise

    def _on_event(self, event: ev.Event) -> None:
        if self.emit_training_event(event):
            return
        if isinstance(event, ev.RunFinished):
            self.finished.emit(event)
        elif isinstance(event, ev.RunFailed):
            self._failure = event.message


class DistributedTrainWorker(TrainingEventsWorker):
    """A new run with several processes (one per GPU): ``transfer-studio train --nproc-per-node N`` in a
    child process (torchrun). Rank 0 appends its events to a file that this worker follows, so the
    plots, progress and messages are those of a one-process run; Stop reaches every process (they
    stop at the same step); closing the window ends them all."""

    finished = Signal(object)  # RunFinished
    history = Signal(object)  # unused here (no resume through this worker); kept for the tab's wiring
    imports_torch = False  # the child processes import it; this one only launches and reads

    def __init__(
        self, config: TrainConfig, data_root: str | Path, run_dir: str | Path, processes: int
    ) -> None:
        super().__init__()
        self.config = config
        self.data_root = Path(data_root)
        self.run_dir = Path(run_dir)
        self.processes = processes
        self.closing = False  # the window is closing: end the processes now, not after a step
        self._offset = 0
        self._events_path: Path | None = None
        self._failure: str | None = None
        self._finished_event: ev.RunFinished | None = None

    def close_now(self) -> None:
        self.closing = True
        self.abort()

    def work(self) -> ev.RunFinished | None:
        import subprocess
        import tempfile

        from engine.core.launch import run_torchrun

        with tempfile.TemporaryDirectory(prefix="transfer-studio-run-") as tmp:
            folder = Path(tmp)
            settings = folder / "config.json"
            settings.write_text(json.dumps(self.config.to_dict()), encoding="utf-8")
            self._events_path = folder / "events.jsonl"
            self._events_path.touch()
            argv = ["train", str(self.data_root), "--config-json", str(settings), "--out", str(self.run_dir)]
            errors_path = folder / "stderr.log"
            with errors_path.open("w", encoding="utf-8") as errors:
                code = run_torchrun(
                    argv,
                    self.processes,
                    env={"TRANSFER_STUDIO_EVENTS_FILE": str(self._events_path)},
                    should_stop=self._poll,
                    should_abort=lambda: self.closing,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                )
            self._read_events()
            if code not in (0, 130) and self._finished_event is None:
                tail = errors_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-12:]
                detail = self._failure or next(
                    (line for line in reversed(tail) if "error" in line.lower()), f"exit code {code}"
                )
                logger.error("multi-process training failed (exit code %s):\n%s", code, "\n".join(tail))
                raise TransferStudioError(f"training with {self.processes} processes failed: {detail}")
        return self._finished_event

    def _poll(self) -> bool:
        """Called by the launcher every 0.2 s: forward new events; True once Stop was pressed."""
        self._read_events()
        return self.abort_requested

    def _read_events(self) -> None:
        if self._events_path is None:
            return
        with self._events_path.open("r", encoding="utf-8") as source:
            source.seek(self._offset)
            while True:
                line = source.readline()
                if not line.endswith("\n"):  # none left, or one still being written
                    break
                self._offset = source.tell()
                try:
                    event = ev.from_json(json.loads(line))
                except ValueError:
                    logger.warning("ignoring an unreadable event line: %r", line[:200])
                    continue
                self._on_event(event)

    def _on_event(self, event: ev.Event) -> None:
        if self.emit_training_event(event):
            return
        if isinstance(event, ev.RunFinished):
            self._finished_event = event
            self.finished.emit(event)
        elif isinstance(event, ev.RunFailed):
            self._failure = event.message


class PredictWorker(Worker):
    """Classifies files with a loaded ``engine.inference.predict.Predictor``, streaming results in chunks.

    ``sources`` may mix image files and folders (searched recursively). ``chunk(list[Prediction])``
    is emitted after every batch; abort is checked between batches.
    """

    chunk = Signal(object)
    found = Signal(int)  # number of images to classify

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
        self.found.emit(len(paths))
        for start in range(0, len(paths), self.batch_size):
            self.check_abort()
            part = paths[start : start + self.batch_size]
            self.chunk.emit(self.predictor.predict_paths(part, top_k=self.top_k, batch_size=len(part)))
        return len(paths)
