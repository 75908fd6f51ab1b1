"""“Find the best model”, the Bake-off tab: a bake-off of several model x strategy candidates, ranked.

:class:`BakeoffWorker` runs ``engine.experiments.bakeoff.run_bakeoff`` on a QThread and turns its events
(and the training events of the candidate being trained) into Qt signals. :class:`BakeoffPanel` holds
the controls (``bakeoffButton``, ``bakeoffEpochsSpin``, a time budget, ``bakeoffStopButton``), the
progress (which candidate, its epoch and batch, ``bakeoffProgress`` over the whole bake-off) and the
``leaderboard``: one row per finished candidate, best validation accuracy first, filled in as each one
finishes. Candidates that were skipped, failed or stopped are listed under it in plain words. When the
bake-off ends the winner (the first row) is starred and handed on (``modelReady``) to become the
current model in Predict and Evaluate. The current candidate's curves go to the tab's own plots, never
the Train tab's (a bake-off and a single run each keep their curves).

The engine (and torch) is imported only on worker threads, so the window starts without it.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine.training import events as ev
from gui.background.jobs import Job, ThreadRunner
from gui.background.training import BakeoffWorker
from gui.core.settings import Settings
from gui.views.leaderboard import Leaderboard
from gui.views.progress_clock import ProgressClock
from gui.views.widgets import MessageBanner, format_duration, format_seconds, hint_label

if TYPE_CHECKING:
    from engine.data.datasets import DatasetReport
    from engine.experiments.bakeoff import (
        BakeoffFinished,
        BakeoffProgress,
        BakeoffResult,
        BakeoffStarted,
        Candidate,
        CandidateEnded,
        CandidateStarted,
        Entry,
    )
    from gui.tabs.train_form import TrainForm
    from gui.views.plots import TrainingPlots

logger = logging.getLogger(__name__)

PROGRESS_STEPS = 1000
MIN_HEIGHT = 1  # adds nothing to the tab's minimum height: below its natural height it scrolls
PREDICT_LINK = "transfer-studio:bakeoff-predict"
DEFAULT_SET_TEXT = (
    "Candidates: the built-in model's strategies, plus the strongest models that fit the time budget."
)


def default_candidate_list(
    device: str, report: DatasetReport | None = None, budget_minutes: float | None = None
) -> tuple[list[Candidate], list[tuple[str, int]]]:
    """The default set for ``device``, ``report``'s dataset and the budget, and the downloads it
    needs as (model, bytes) (runs on a worker thread: it imports the engine and torch)."""
    from engine.experiments import bakeoff
    from engine.experiments.estimates import dataset_size
    from engine.models.registry import get_model_info

    data = dataset_size(report) if report is not None else None
    candidates = bakeoff.default_candidates(device, data=data, budget_minutes=budget_minutes)
    models = dict.fromkeys(c.model for c in candidates if bakeoff.needs_download(c))
    return candidates, [(m, get_model_info(m).download_bytes or 0) for m in models]


def download_question(downloads: list[tuple[str, int]]) -> str:
    """The question asked once before a bake-off downloads: each model and its size, the total and a
    rough time."""
    from engine.core.sizes import format_size

    rate = 5_000_000  # engine.experiments.estimates.DOWNLOAD_BYTES_PER_S, without importing the engine
    total = sum(size for _model, size in downloads)
    seconds = total / rate
    rough = f"{max(1, round(seconds))} s" if seconds < 90 else f"{round(seconds / 60)} min"
    lines = "\n".join(f"  • {model}: {format_size(size)}" for model, size in downloads)
    what = "one model" if len(downloads) == 1 else f"{len(downloads)} models"
    return (
        f"The bake-off would download the pretrained weights of {what}:\n\n{lines}\n\n"
        f"In all {format_size(total)}, about {rough} at 5 MB/s. Download {'it' if len(downloads) == 1 else 'them'}?\n\n"
        "“No” tries only the models already on this computer; the others are listed as skipped."
    )


def describe_candidates(candidates: list[Candidate]) -> str:
    """E.g. ``efficientnet_lite0 with feature-extract, fine-tune and scratch; resnet18 with fine-tune``."""
    by_model: dict[str, list[str]] = {}
    for candidate in candidates:
        by_model.setdefault(candidate.model, []).append(candidate.strategy)
    parts = []
    for model, strategies in by_model.items():
        listed = (
            strategies[0] if len(strategies) == 1 else f"{', '.join(strategies[:-1])} and {strategies[-1]}"
        )
        parts.append(f"{model} with {listed}")
    return "; ".join(parts)


def describe_unranked(entry: Entry) -> str:
    """Why a candidate has no place on the leaderboard, in plain words."""
    if entry.status == "stopped":
        return "stopped by you before it finished (its best epoch so far is kept in its run folder)"
    if entry.status == "failed":
        return f"failed: {entry.reason or 'unknown error'}"
    if entry.reason == "stopped":
        return "not tried: the bake-off was stopped"
    return f"skipped: {entry.reason or 'not tried'}"


def _label(model: str, strategy: str) -> str:
    return f"{model} · {strategy}"


class BakeoffPanel(QWidget):
    """The bake-off controls, progress and leaderboard, in a group box (the Bake-off tab shows it above
    the plots of the candidate being trained).

    Signals: ``runningChanged(bool)``; ``runStarted(run_dir)`` for each candidate's run folder once it
    exists; ``modelReady(bundle)`` with the winner's bundle when the bake-off ends (and the chosen row's
    for Open in Predict); ``predictRequested`` to show the Predict tab; ``logged(text)`` for the Train
    tab's log; ``candidateEnded(index)`` after the leaderboard took in a candidate's result.
    """

    runningChanged = Signal(bool)
    runStarted = Signal(str)
    modelReady = Signal(str)
    predictRequested = Signal()
    logged = Signal(str)
    candidateEnded = Signal(int)

    def __init__(
        self,
        settings: Settings,
        runner: ThreadRunner,
        form: TrainForm | None = None,
        plots: TrainingPlots | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("bakeoffPanel")
        self.setAccessibleName("Find the best model")
        self.box = QGroupBox("Find the best model")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.box)
        self.setMinimumHeight(MIN_HEIGHT)
        self.settings = settings
        self.runner = runner
        self.form = form
        self.plots = plots
        self.report: DatasetReport | None = None
        self.worker: BakeoffWorker | None = None
        self.result: BakeoffResult | None = None
        self.entries: list[Entry] = []
        self.candidates: list[Candidate] = []
        self.current = -1  # index of the candidate being trained
        self._training = False  # a single training run is going in the Train tab
        self.preview = Job(runner, "bakeoff-candidates", self, on_returned=self._on_candidates)
        self._preview_text = ""
        self.planned: list[Candidate] = []  # the previewed default set
        self.downloads: list[tuple[str, int]] = []  # what it needs downloaded: (model, bytes)
        self.allow_downloads = False  # the answer of the last question
        self._run_epochs = 0
        self._shown = False
        self._build()
        self._update_buttons()

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.start_button = QPushButton("Find the best model")
        self.start_button.setObjectName("bakeoffButton")
        self.start_button.setAccessibleName("Find the best model")
        self.start_button.setToolTip(
            "Train several models and strategies one after another on the same split and rank them"
        )
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("bakeoffStopButton")
        self.stop_button.setAccessibleName("Stop the bake-off")
        self.stop_button.setToolTip("Stop now: what finished stays on the leaderboard")
        self.stop_button.clicked.connect(self.stop)
        self.epochs = QSpinBox()
        self.epochs.setObjectName("bakeoffEpochsSpin")
        self.epochs.setAccessibleName("Epochs per candidate")
        self.epochs.setRange(1, 100)
        self.epochs.setValue(self.settings.get_int("bakeoff/epochs", 3, 1, 100))
        self.budget = QSpinBox()
        self.budget.setObjectName("bakeoffBudgetSpin")
        self.budget.setAccessibleName("Time budget in minutes")
        self.budget.setRange(0, 24 * 60)
        self.budget.setSpecialValueText("no limit")
        self.budget.setSuffix(" min")
        self.budget.setToolTip("Candidates that would not fit in the time left are skipped")
        self.budget.setValue(self.settings.get_int("bakeoff/budget_minutes", 0, 0, 24 * 60))
        self.budget.valueChanged.connect(self.refresh_candidates)  # the set depends on the budget
        self.open_button = QPushButton("Open in Predict")
        self.open_button.setObjectName("bakeoffOpenButton")
        self.open_button.setAccessibleName("Open the selected model in Predict")
        self.open_button.clicked.connect(self.open_selected)
        self.open_button.setToolTip("Make the selected leaderboard row the model in Predict and Evaluate")
        controls = QHBoxLayout()
        controls.addWidget(self.start_button)
        controls.addWidget(self.stop_button)
        controls.addSpacing(12)
        controls.addWidget(QLabel("Epochs each"))
        controls.addWidget(self.epochs)
        controls.addSpacing(12)
        controls.addWidget(QLabel("Time budget"))
        controls.addWidget(self.budget)
        controls.addStretch(1)
        controls.addWidget(self.open_button)

        self.hint = hint_label("")
        self.hint.setObjectName("bakeoffHint")
        self.status = QLabel("")
        self.status.setObjectName("bakeoffStatus")
        self.status.setAccessibleName("Bake-off status")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setObjectName("bakeoffProgress")
        self.progress.setAccessibleName("Bake-off progress")
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setValue(0)
        self.progress.setFormat("%p% of the bake-off")
        self.clock = ProgressClock(self.progress, self)  # the whole bake-off: bar, elapsed, estimate
        self.clock.ticked.connect(self._show_status)
        self._where = ""

        self.table = Leaderboard()
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.openRequested.connect(self.open_selected)
        self.unranked = hint_label("")
        self.unranked.setObjectName("bakeoffNotRanked")
        self.unranked.setTextFormat(Qt.TextFormat.RichText)
        self.unranked.hide()
        self.error = MessageBanner("bakeoffError")
        self.message = MessageBanner("bakeoffResult")
        self.message.label.linkActivated.connect(self._open_link)

        # Progress and leaderboard appear with the first bake-off; until then the panel stays small.
        self.results = QWidget()
        results = QVBoxLayout(self.results)
        results.setContentsMargins(0, 0, 0, 0)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.progress, 1)
        results.addLayout(status_row)
        results.addWidget(self.error)
        results.addWidget(self.message)
        results.addWidget(self.table, 1)
        results.addWidget(self.unranked)
        self.results.hide()
        layout = QVBoxLayout(self.box)
        layout.addLayout(controls)
        layout.addWidget(self.hint)
        layout.addWidget(self.results, 1)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            QTimer.singleShot(0, self.make_room)

    @Slot()
    def make_room(self) -> None:
        """In a splitter, grow to the natural height (at most 3/5 of it), taken from the tallest neighbour."""
        splitter = self.parentWidget()
        if not isinstance(splitter, QSplitter) or splitter.orientation() != Qt.Orientation.Vertical:
            return
        sizes, index = splitter.sizes(), splitter.indexOf(self)
        if index < 0 or len(sizes) < 2 or sum(sizes) <= 0:
            return
        want = min(self.box.sizeHint().height(), sum(sizes) * 3 // 5)
        tallest = max((i for i in range(len(sizes)) if i != index), key=lambda i: sizes[i])
        neighbour = splitter.widget(tallest)
        if neighbour is None:
            return
        spare = sizes[tallest] - neighbour.minimumSizeHint().height()
        take = min(want - sizes[index], spare)
        if take > 0:
            sizes[tallest] -= take
            sizes[index] += take
            splitter.setSizes(sizes)

    # -- state ----------------------------------------------------------------------------------------
    def set_dataset(self, report: DatasetReport | None) -> None:
        self.report = report
        self._update_buttons()
        if report is not None and not self._preview_text:
            self.refresh_candidates()

    def set_training(self, running: bool) -> None:
        """Whether a single training run is going (a bake-off cannot start then)."""
        if running != self._training:
            self._training = running
            self._update_buttons()

    def is_running(self) -> bool:
        return self.worker is not None

    def _device(self) -> str:
        if self.form is None:
            return "auto"
        try:
            return self.form.config().device
        except Exception:  # noqa: BLE001 - an unusable form value: the default device
            return "auto"

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.start_button.setEnabled(not running and not self._training and self.report is not None)
        self.stop_button.setEnabled(running and not (self.worker and self.worker.abort_requested))
        self.epochs.setEnabled(not running)
        self.budget.setEnabled(not running)
        self.open_button.setEnabled(self._selected_bundle() is not None)
        if running:
            return
        if self._training:
            self.hint.setText("Training is running: the bake-off can start when it ends or is stopped.")
        elif self.report is None:
            self.hint.setText("Open a dataset on the Data tab to find the best model for it.")
        else:
            self.hint.setText(
                "Trains each candidate for the same number of epochs on one frozen split and ranks them "
                f"by validation accuracy. {self._preview_text or DEFAULT_SET_TEXT}"
            )

    @Slot()
    def refresh_candidates(self) -> None:
        """Work out the default set in the background and show it under the buttons."""
        if self.is_running():
            return
        device, report, budget = self._device(), self.report, self.budget.value() or None
        self.preview.start(lambda _worker: default_candidate_list(device, report, budget))

    def _on_candidates(self, plan: tuple[list[Candidate], list[tuple[str, int]]]) -> None:
        candidates, downloads = plan
        self.planned, self.downloads = list(candidates), list(downloads)
        text = f"It will try {len(candidates)}: {describe_candidates(candidates)}."
        if downloads:
            text += f" {len(downloads)} of the models need a download (it asks first)."
        self._preview_text = text
        self._update_buttons()

    def ask_downloads(self) -> bool:
        """Ask once whether to download what the default set needs; True to download."""
        if not self.downloads:
            return False
        answer = QMessageBox.question(
            self,
            "Download pretrained weights?",
            download_question(self.downloads),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        return answer == QMessageBox.StandardButton.Yes

    # -- start / stop ---------------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        if self.is_running() or self.report is None:
            return
        if self._training:
            self.error.show_message(
                "<b>Cannot start:</b>", "error", detail="a training run is going; stop it or wait for it."
            )
            return
        epochs = self.epochs.value()
        budget = self.budget.value() or None
        self.allow_downloads = self.ask_downloads()
        if self.downloads:
            self.logged.emit(
                "Bake-off: downloading "
                + ", ".join(m for m, _size in self.downloads)
                + (" first." if self.allow_downloads else " declined: those models are skipped.")
            )
        self.settings.set("bakeoff/epochs", epochs)
        self.settings.set("bakeoff/budget_minutes", budget or 0)
        self.error.hide()
        self.message.hide()
        self.result, self.entries, self.candidates = None, [], []
        self.current = -1
        self._fill_leaderboard([], final=False)
        self._show_unranked()
        self._where = "Preparing: choosing the candidates and scanning the dataset…"
        self.clock.start()
        if self.results.isHidden():
            self.results.show()
            QTimer.singleShot(0, self.make_room)
        runs_root = self.form.runs_root() if self.form is not None else self.settings.runs_root()
        limit = f", at most {budget} min" if budget else ""
        self.logged.emit(f"Finding the best model: {epochs} epoch(s) per candidate{limit}.")
        worker = BakeoffWorker(
            self.report.root,
            runs_root,
            epochs=epochs,
            budget_minutes=budget,
            device=self._device(),
            candidates=self.planned or None,
            allow_downloads=self.allow_downloads,
        )
        worker.bakeoffStarted.connect(self._on_bakeoff_started)
        worker.candidateStarted.connect(self._on_candidate_started)
        worker.candidateEnded.connect(self._on_candidate_ended)
        worker.bakeoffFinished.connect(self._on_bakeoff_finished)
        worker.runStarted.connect(self._on_run_started)
        worker.progress.connect(self._on_progress)
        worker.overallProgress.connect(self._on_overall)
        worker.epochEnded.connect(self._on_epoch)
        worker.message.connect(self._on_message)
        worker.download.connect(self._on_download)
        worker.errored.connect(self._on_error)
        worker.done.connect(self._on_done)
        self.worker = worker
        if self.runner.start(worker, "bakeoff") is None:  # the window is closing
            self.worker = None
            return
        self._update_buttons()
        self.hint.setText("")
        self.runningChanged.emit(True)

    @Slot()
    def stop(self) -> None:
        if self.worker is None:
            return
        self.worker.abort()
        self._where = "Stopping after the current batch: what finished is kept…"
        self._show_status()
        self.logged.emit("Bake-off: stop requested.")
        self._update_buttons()

    # -- worker signals ---------------------------------------------------------------------------------
    @Slot(object)
    def _on_bakeoff_started(self, event: BakeoffStarted) -> None:
        self.candidates = list(event.candidates)
        self.logged.emit(
            f"Bake-off of {len(self.candidates)} candidates: " + ", ".join(c.label for c in self.candidates)
        )
        self.logged.emit(f"Bake-off folder: {event.out}")
        self._show_queue()

    @Slot(object)
    def _on_candidate_started(self, event: CandidateStarted) -> None:
        self.current = event.index
        self._where = f"{self._which()}: loading the model and the images…"
        self._show_status()
        self.logged.emit(f"Candidate {event.index + 1} of {event.total}: {event.candidate.label}")
        self._show_queue()

    @Slot(object)
    def _on_run_started(self, event: ev.RunStarted) -> None:
        self._run_epochs = event.epochs
        if self.plots is not None:
            self.plots.clear(event.epochs)
        self.runStarted.emit(event.run_dir)

    @Slot(object, object)
    def _on_progress(self, event: ev.BatchProgress, points: list[tuple[float, float]]) -> None:
        if self.plots is not None:
            self.plots.add_batches(points)
        if self.worker is not None and self.worker.abort_requested:
            return
        if event.phase == "features":
            where = f"computing the backbone's features · batch {event.batch}/{event.batches}"
        else:
            phase = "training" if event.phase == "train" else "validation"
            where = f"epoch {event.epoch}/{self._run_epochs} · {phase} batch {event.batch}/{event.batches}"
        self._where = f"{self._which()}: {where}"
        self._show_status()

    @Slot(object)
    def _on_download(self, event: object) -> None:
        """A download's progress in the status line (Stop cancels it)."""
        from engine.core.sizes import format_size
        from engine.experiments import bakeoff  # already imported by the worker

        if isinstance(event, bakeoff.DownloadStarted):
            self._where = f"Downloading the weights of {event.model} ({format_size(event.num_bytes or 0)})…"
            self.logged.emit(self._where)
        elif isinstance(event, bakeoff.DownloadProgress):
            of = f" of {format_size(event.total)}" if event.total else ""
            self._where = (
                f"Downloading the weights of {event.model}: {format_size(event.done)}{of} "
                f"at {format_size(event.bytes_per_s)}/s"
            )
        elif isinstance(event, bakeoff.DownloadEnded):
            self._where = f"{event.model}: {event.error or 'downloaded'}"
            self.logged.emit(self._where)
        self._show_status()

    @Slot(object)
    def _on_overall(self, event: BakeoffProgress) -> None:
        total = event.elapsed_s + event.eta_s
        self.clock.update(event.elapsed_s / total if total > 0 else 0.0, event.eta_s)

    @Slot()
    def _show_status(self) -> None:
        """What is being done, then the whole bake-off's clock ("elapsed 1:02 · about 3:40 left")."""
        if self.clock.is_running():
            self.status.setText(f"{self._where}\n{self.clock.text()} in all")

    @Slot(object)
    def _on_epoch(self, event: ev.EpochEnd) -> None:
        if self.plots is not None:
            self.plots.add_epoch(
                event.epoch, event.train_loss, event.val_loss, event.train_acc, event.val_acc
            )
            if event.is_best:
                self.plots.mark_best(event.epoch)
        self.logged.emit(
            f"  epoch {event.epoch}/{event.epochs}: val accuracy {event.val_acc:.1%}, "
            f"val loss {event.val_loss:.4f} · {event.seconds:.1f} s"
        )

    @Slot(str, str)
    def _on_message(self, level: str, text: str) -> None:
        self.logged.emit(f"{'Warning: ' if level == 'warning' else ''}{text}")

    @Slot(object)
    def _on_candidate_ended(self, event: CandidateEnded) -> None:
        entry = event.entry
        self.entries.append(entry)
        self._fill_leaderboard(list(event.leaderboard), final=False)
        self._show_unranked()
        label = _label(entry.model, entry.strategy)
        if entry.status == "finished":
            self.logged.emit(
                f"{label}: best val accuracy {entry.best_val_acc:.1%} (epoch {entry.best_epoch}) in "
                f"{format_seconds(entry.seconds)}"
            )
        else:
            self.logged.emit(f"{label}: {describe_unranked(entry)}")
        self._show_queue()
        QTimer.singleShot(0, self.make_room)  # one more row
        self.candidateEnded.emit(event.index)

    @Slot(object)
    def _on_bakeoff_finished(self, event: BakeoffFinished) -> None:
        result = event.result
        self.result = result
        self.entries = list(result.entries)
        self._fill_leaderboard(result.leaderboard, final=True)
        self._show_unranked()
        self.current = -1
        self._show_queue()
        waited = format_duration(self.clock.elapsed())  # the wall time since Start
        self.clock.finish(completed=not result.cancelled)
        best = result.best
        ended = f"{'Stopped' if result.cancelled else 'Finished'} after {waited}"
        if best is None:
            self.status.setText(f"{ended}: no candidate finished, so there is no winner.")
            self.message.show_message("No candidate finished: nothing was ranked.", "info")
            return
        ranked = len(result.leaderboard)
        self.status.setText(f"{ended}: {ranked} of {len(result.entries)} candidates ranked.")
        winner = _label(best.model, best.strategy)
        self.logged.emit(f"Winner: {winner}, best val accuracy {best.best_val_acc:.1%}.")
        if best.bundle:
            self.message.show_message(
                f"<b>★ Winner: {html.escape(winner)}</b> · best validation accuracy "
                f"<b>{best.best_val_acc:.1%}</b>. It is now the model in Predict and Evaluate. "
                f"<a href='{PREDICT_LINK}'>Try it on your photos →</a>",
                "success",
            )
            self.modelReady.emit(best.bundle)
        QTimer.singleShot(0, self.make_room)

    @Slot(str)
    def _on_error(self, message: str) -> None:
        self.clock.finish(completed=False)
        self.status.setText("The bake-off failed.")
        self.error.show_message("<b>The bake-off failed:</b>", "error", detail=message)
        self.logged.emit(f"Bake-off error: {message}")

    @Slot()
    def _on_done(self) -> None:
        self.clock.finish(completed=False)  # stops the clock if no other ending did
        self.worker = None
        self.current = -1
        self._update_buttons()
        self.runningChanged.emit(False)
        self.refresh_candidates()  # weights may have been downloaded meanwhile

    # -- views ------------------------------------------------------------------------------------------
    def _which(self) -> str:
        if not 0 <= self.current < len(self.candidates):
            return "Candidate"
        return (
            f"Candidate {self.current + 1} of {len(self.candidates)} · {self.candidates[self.current].label}"
        )

    def _show_queue(self) -> None:
        """Each candidate with its state: done, being trained, or waiting."""
        if not self.candidates:
            return
        parts = []
        for index, candidate in enumerate(self.candidates):
            if index < len(self.entries):
                mark = "✓" if self.entries[index].status == "finished" else "✗"
            elif index == self.current:
                mark = "▶"
            else:
                mark = "…"
            parts.append(f"{mark} {candidate.label}")
        self.hint.setText("   ".join(parts))

    def _fill_leaderboard(self, board: list[Entry], final: bool) -> None:
        self.table.fill(board, final)
        self._update_buttons()

    def _show_unranked(self) -> None:
        others = [e for e in self.entries if e.status != "finished"]
        if not others:
            self.unranked.hide()
            return
        lines = [
            f"{html.escape(_label(e.model, e.strategy))}: {html.escape(describe_unranked(e))}" for e in others
        ]
        self.unranked.setText("<b>Not ranked</b><br>" + "<br>".join(lines))
        self.unranked.show()

    # -- open in Predict ----------------------------------------------------------------------------------
    def _selected_bundle(self) -> str | None:
        return self.table.selected_bundle()

    def bundle_at(self, row: int) -> str | None:
        """The bundle of leaderboard row ``row`` (None if it has none)."""
        return self.table.bundle_at(row)

    @Slot()
    def open_selected(self) -> None:
        """Open in Predict: the selected row's model becomes the current one and Predict is shown."""
        bundle = self._selected_bundle()
        if bundle is not None:
            self.modelReady.emit(bundle)
            self.predictRequested.emit()

    @Slot(str)
    def _open_link(self, url: str) -> None:
        if url == PREDICT_LINK:
            self.predictRequested.emit()
