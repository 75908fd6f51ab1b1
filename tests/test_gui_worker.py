"""The QThread workers: signal order, throttled progress, abort within one batch, errors, shutdown."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QObject, Slot

from engine.core.config import TrainConfig
from engine.core.errors import DatasetError
from engine.training import events as ev
from gui.background.jobs import FunctionWorker, ThreadRunner, friendly_error
from gui.background.training import TrainWorker


class Recorder(QObject):
    """Lives on the GUI thread: what arrives here arrived queued, as the window would see it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, object]] = []
        self.points: list[tuple[float, float]] = []
        self.threads: set[int] = set()

    def _add(self, name: str, value: object = None) -> None:
        self.threads.add(threading.get_ident())
        self.seen.append((name, value))

    @Slot(object)
    def run_started(self, event: object) -> None:
        self._add("started", event)

    @Slot(object, object)
    def progress(self, event: object, points: object) -> None:
        self._add("progress", event)
        self.points.extend(points)

    @Slot(object)
    def epoch(self, event: object) -> None:
        self._add("epoch", event)

    @Slot(object)
    def finished(self, event: object) -> None:
        self._add("finished", event)

    @Slot(str)
    def errored(self, message: str) -> None:
        self._add("errored", message)

    @Slot(object)
    def returned(self, value: object) -> None:
        self._add("returned", value)

    @Slot()
    def aborted(self) -> None:
        self._add("aborted")

    @Slot()
    def done(self) -> None:
        self._add("done")

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]


def fake_train(batches: int = 200, epochs: int = 2, delay: float = 0.0, fail: Exception | None = None):
    """A stand-in for engine.training.trainer.train that emits real engine events."""
    seen_stops: list[int] = []

    def train(config, data_root, *, run_dir=None, on_event=None, should_stop=None, report=None):
        on_event(ev.RunStarted(str(run_dir), "CPU, 1 threads", ("a", "b"), 10, 4, epochs, 1, batches))
        done = 0
        for epoch in range(1, epochs + 1):
            for batch in range(1, batches + 1):
                if should_stop():
                    seen_stops.append(done)
                    on_event(ev.RunFinished(0, 0.0, epoch - 1, 0.1, None, True, "cpu", str(run_dir)))
                    return None
                if fail is not None and done == 3:
                    on_event(ev.RunFailed(str(fail)))
                    raise fail
                time.sleep(delay)
                done += 1
                on_event(ev.BatchProgress(epoch, "train", batch, batches, 1.0 / done, 0.1, 0.1))
            on_event(ev.EpochEnd(epoch, epochs, 0.5, 0.6, 0.4, 0.7, 1e-3, 0.1, True))
        on_event(ev.RunFinished(2, 0.7, epochs, 0.2, "model.pt", False, "cpu", str(run_dir)))
        return None

    train.stops = seen_stops  # type: ignore[attr-defined]
    return train


def start_train_worker(qtbot, monkeypatch, tmp_path, train):
    import engine.training.trainer

    monkeypatch.setattr(engine.training.trainer, "train", train)
    runner = ThreadRunner()
    recorder = Recorder()
    worker = TrainWorker(TrainConfig(), tmp_path, tmp_path / "runs")
    worker.runStarted.connect(recorder.run_started)
    worker.progress.connect(recorder.progress)
    worker.epochEnded.connect(recorder.epoch)
    worker.finished.connect(recorder.finished)
    worker.errored.connect(recorder.errored)
    worker.returned.connect(recorder.returned)
    worker.aborted.connect(recorder.aborted)
    worker.done.connect(recorder.done)
    return runner, recorder, worker


def test_events_arrive_in_order_on_the_gui_thread_with_throttled_progress(qtbot, monkeypatch, tmp_path):
    runner, recorder, worker = start_train_worker(qtbot, monkeypatch, tmp_path, fake_train(batches=500))
    runner.start(worker)
    # The recorder lives on the GUI thread; worker.done itself is emitted on the worker thread, where
    # a qtbot.waitSignal blocker must never be triggered (see tests/test_gui_signal_threads.py).
    qtbot.waitUntil(lambda: "done" in recorder.names(), timeout=30_000)
    names = recorder.names()
    assert names[0] == "started" and names[-3:] == ["finished", "returned", "done"]
    assert names.count("epoch") == 2
    assert recorder.threads == {threading.get_ident()}
    # 1000 batches, but far fewer progress signals; every per-batch loss still arrives.
    assert 2 <= names.count("progress") < 100
    assert len(recorder.points) == 1000
    assert recorder.points[-1][0] == pytest.approx(2.0)
    last_progress = [v for n, v in recorder.seen if n == "progress"][-1]
    assert last_progress.batch == last_progress.batches  # the end of a phase is never dropped
    assert runner.wait_all(5)


def test_abort_is_seen_at_the_next_batch(qtbot, monkeypatch, tmp_path):
    train = fake_train(batches=10_000, delay=0.001)
    runner, recorder, worker = start_train_worker(qtbot, monkeypatch, tmp_path, train)
    runner.start(worker)
    qtbot.waitUntil(lambda: "progress" in recorder.names(), timeout=30_000)
    worker.abort()
    aborted_at = len(recorder.points)
    qtbot.waitUntil(lambda: "done" in recorder.names(), timeout=30_000)
    finished = [v for n, v in recorder.seen if n == "finished"]
    assert finished and finished[0].cancelled
    assert recorder.names()[-3:] == ["finished", "aborted", "done"]  # a stopped run is not "returned"
    assert "errored" not in recorder.names() and "returned" not in recorder.names()
    # The flag was read before the very next batch: at most one batch ran after abort() returned
    # (plus the ones already queued on the way to the GUI thread).
    assert train.stops and train.stops[0] <= aborted_at + 20
    runner.wait_all(5)


def test_engine_failure_is_reported_once_as_its_message(qtbot, monkeypatch, tmp_path):
    train = fake_train(fail=DatasetError("no val image could be read; check the dataset"))
    runner, recorder, worker = start_train_worker(qtbot, monkeypatch, tmp_path, train)
    runner.start(worker)
    qtbot.waitUntil(lambda: "done" in recorder.names(), timeout=30_000)
    errors = [v for n, v in recorder.seen if n == "errored"]
    assert errors == ["no val image could be read; check the dataset"]
    assert recorder.names()[-2:] == ["errored", "done"] and "returned" not in recorder.names()
    runner.wait_all(5)


def test_unexpected_exception_becomes_one_readable_line(qtbot, monkeypatch, tmp_path):
    def crash(*_args, **_kwargs):
        raise ValueError("shapes do not match\n  at layer 3")

    runner, recorder, worker = start_train_worker(qtbot, monkeypatch, tmp_path, crash)
    runner.start(worker)
    qtbot.waitUntil(lambda: "done" in recorder.names(), timeout=30_000)
    errors = [v for n, v in recorder.seen if n == "errored"]
    assert errors == ["Unexpected error (ValueError): shapes do not match"]
    assert recorder.names()[-2:] == ["errored", "done"] and "returned" not in recorder.names()
    runner.wait_all(5)


def test_friendly_error_messages():
    assert friendly_error(DatasetError("Only one class found\nmore")) == "Only one class found"
    assert friendly_error(MemoryError()).startswith("Out of memory")
    assert friendly_error(RuntimeError("CUDA out of memory. Tried to allocate")).startswith("Out of memory")
    missing = FileNotFoundError(2, "No such file or directory", "/x/y.jpg")
    assert friendly_error(missing) == "No such file or directory (/x/y.jpg)"


def test_function_worker_progress_and_cancel(qtbot):
    runner = ThreadRunner()
    started = threading.Event()

    def work(worker: FunctionWorker) -> int:
        started.set()
        for i in range(1_000_000):
            worker.report_progress(i, 1_000_000)
            time.sleep(0.0005)
        return 1

    worker = FunctionWorker(work)
    returned: list[object] = []
    worker.returned.connect(returned.append)  # never called: cancelled
    runner.start(worker)
    assert started.wait(10)
    assert runner.is_busy()
    assert runner.shutdown(10)
    assert not runner.is_busy()
    assert returned == []
    assert runner.start(FunctionWorker(lambda w: 1)) is None  # nothing starts after shutdown
