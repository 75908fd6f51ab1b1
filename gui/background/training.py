"""The workers that run training: one run in this process, one run in several (torchrun), a bake-off.

:class:`TrainingEventsWorker` turns a run's events (:mod:`engine.training.events`) into Qt signals and
sets up torch's threads so the GUI thread keeps a core; :class:`TrainWorker`, :class:`DistributedTrainWorker`
and :class:`BakeoffWorker` run the trainer, a torchrun child (following its events file) and the bake-off.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal

from engine.core.errors import DatasetChanged, TransferStudioError
from engine.training import events as ev
from gui.background.jobs import PROGRESS_INTERVAL_S, Worker

if TYPE_CHECKING:
    from engine.core.config import TrainConfig
    from engine.data.datasets import DatasetReport
    from engine.experiments.bakeoff import BakeoffResult, Candidate
    from engine.training.events_file import EventsReader
    from engine.training.trainer import RunResult

logger = logging.getLogger(__name__)


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
    datasetChanged = Signal(str)  # a resume found other photos than the run started with (the message)

    def __init__(
        self,
        config: TrainConfig | None,
        data_root: str | Path | None,
        runs_root: str | Path | None = None,
        report: DatasetReport | None = None,
        resume_dir: str | Path | None = None,
        allow_changed_data: bool = False,
    ) -> None:
        super().__init__()
        if resume_dir is None and (config is None or data_root is None):
            raise ValueError("a new run needs a config and a dataset folder")
        self.resume_dir = Path(resume_dir) if resume_dir else None
        self.config = config
        self.data_root = Path(data_root) if data_root is not None else None
        self.runs_root = Path(runs_root) if runs_root else None
        self.report = report
        self.allow_changed_data = allow_changed_data
        self._failure: str | None = None

    def work(self) -> RunResult | None:
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
                    try:
                        return trainer.resume(
                            self.resume_dir,
                            on_event=self._on_event,
                            should_stop=stop,
                            allow_changed_data=self.allow_changed_data,
                        )
                    except DatasetChanged as exc:  # the tab asks whether to go on; nothing was written
                        self.datasetChanged.emit(str(exc))
                        self.abort()
                        return None
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
        self._events: EventsReader | None = None
        self._failure: str | None = None
        self._finished_event: ev.RunFinished | None = None

    def close_now(self) -> None:
        self.closing = True
        self.abort()

    def work(self) -> ev.RunFinished | None:
        import subprocess
        import tempfile

        from engine.core.launch import run_torchrun
        from engine.training.events_file import EVENTS_FILE_ENV, EventsReader

        with tempfile.TemporaryDirectory(prefix="transfer-studio-run-") as tmp:
            folder = Path(tmp)
            settings = folder / "config.json"
            settings.write_text(json.dumps(self.config.to_dict()), encoding="utf-8")
            events_path = folder / "events.jsonl"
            events_path.touch()
            self._events = EventsReader(events_path)
            argv = ["train", str(self.data_root), "--config-json", str(settings), "--out", str(self.run_dir)]
            errors_path = folder / "stderr.log"
            with errors_path.open("w", encoding="utf-8") as errors:
                code = run_torchrun(
                    argv,
                    self.processes,
                    env={EVENTS_FILE_ENV: str(events_path)},
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
        if self._events is not None:
            for event in self._events.read_new():
                self._on_event(event)

    def _on_event(self, event: ev.Event) -> None:
        if self.emit_training_event(event):
            return
        if isinstance(event, ev.RunFinished):
            self._finished_event = event
            self.finished.emit(event)
        elif isinstance(event, ev.RunFailed):
            self._failure = event.message


class BakeoffWorker(TrainingEventsWorker):
    """Runs a bake-off on its thread; Stop (``abort``) ends the candidate being trained cleanly.

    ``candidates`` None means the default set for the dataset, ``device`` and budget
    (``default_candidates``), chosen on the worker thread. The current candidate's training events
    arrive as the signals of :class:`gui.background.training.TrainingEventsWorker`. With
    ``allow_downloads`` the weights candidates need are downloaded first (``download`` signals:
    DownloadStarted, DownloadProgress throttled, DownloadEnded); without, those candidates are skipped.
    """

    bakeoffStarted = Signal(object)  # BakeoffStarted
    candidateStarted = Signal(object)  # CandidateStarted
    candidateEnded = Signal(object)  # CandidateEnded
    bakeoffFinished = Signal(object)  # BakeoffFinished (also after a Stop)
    overallProgress = Signal(object)  # BakeoffProgress: the whole bake-off's elapsed and seconds left
    download = Signal(object)  # DownloadStarted | DownloadProgress | DownloadEnded

    def __init__(
        self,
        data_root: str | Path,
        runs_root: str | Path,
        *,
        epochs: int | None,
        budget_minutes: float | None = None,
        device: str = "auto",
        candidates: list[Candidate] | None = None,
        allow_downloads: bool = False,
    ) -> None:
        super().__init__()
        self.allow_downloads = allow_downloads
        self._last_download = 0.0
        self.data_root = Path(data_root)
        self.runs_root = Path(runs_root)
        self.epochs = epochs
        self.budget_minutes = budget_minutes
        self.device = device
        self.candidates = candidates
        self._last_overall = 0.0

    def work(self) -> BakeoffResult:
        from engine.experiments import bakeoff

        with self.training_threads():
            return bakeoff.run_bakeoff(
                self.data_root,
                self.candidates or None,
                epochs=self.epochs,
                budget_minutes=self.budget_minutes,
                device=self.device,
                out=bakeoff.new_bakeoff_dir(self.runs_root),
                on_event=self._on_event,
                should_stop=lambda: self.abort_requested,
                allow_downloads=self.allow_downloads,
                download_hint="allow the download when the bake-off asks",
            )

    def _on_event(self, event: object) -> None:
        from engine.experiments import bakeoff  # already imported by work()

        if self.emit_training_event(event):
            return
        if isinstance(event, ev.RunFailed):
            self.message.emit("warning", event.message)
        elif isinstance(event, bakeoff.BakeoffStarted):
            self.bakeoffStarted.emit(event)
        elif isinstance(event, bakeoff.CandidateStarted):
            self.candidateStarted.emit(event)
        elif isinstance(event, bakeoff.BakeoffProgress):
            now = time.monotonic()
            if now - self._last_overall >= PROGRESS_INTERVAL_S:
                self._last_overall = now
                self.overallProgress.emit(event)
        elif isinstance(event, bakeoff.CandidateEnded):
            self.candidateEnded.emit(event)
        elif isinstance(event, bakeoff.BakeoffFinished):
            self.bakeoffFinished.emit(event)
        elif isinstance(event, bakeoff.DownloadProgress):
            now = time.monotonic()
            if now - self._last_download >= PROGRESS_INTERVAL_S:
                self._last_download = now
                self.download.emit(event)
        elif isinstance(event, (bakeoff.DownloadStarted, bakeoff.DownloadEnded)):
            self.download.emit(event)
