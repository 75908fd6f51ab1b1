"""The Train tab: settings on the left; Start/Stop, progress, live plots, results and a log on the right.

A run is a :class:`gui.background.training.TrainWorker` on its own QThread. Its signals arrive queued on the GUI
thread and update the plots (one curve per series), the progress bar (``trainProgress``: fraction of
all train+val batches, at its maximum when a run completes), the epoch/batch/ETA line and the log.
Start is disabled while a run is going; Stop sets the worker's abort flag (honoured within a batch).
Before a run whose model's pretrained weights are not cached, a :class:`gui.dialogs.weights_dialog.WeightsDialog`
downloads (or imports) them; the run starts only once they are there. Resume run… continues a stopped
or killed run from its last finished epoch (``engine.training.trainer.resume``), its earlier epochs drawn first.
Between the plots and the log, :class:`gui.tabs.bakeoff_panel.BakeoffPanel` (“Find the best model”) trains
several candidates one after another; a run and a bake-off never go at the same time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QFontDatabase
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine.training import events as ev
from gui.background.jobs import Job, ThreadRunner, friendly_error
from gui.background.training import DistributedTrainWorker, TrainWorker
from gui.core.settings import Settings
from gui.tabs.bakeoff_panel import BakeoffPanel
from gui.tabs.train_form import TrainForm
from gui.views.plots import TrainingPlots
from gui.views.progress_clock import ProgressClock
from gui.views.widgets import MessageBanner, format_duration

if TYPE_CHECKING:
    from engine.core.config import TrainConfig
    from engine.data.datasets import DatasetReport
    from gui.dialogs.weights_dialog import WeightsDialog

logger = logging.getLogger(__name__)

#: The settings side's widest (two columns of settings; the plots take the rest).
SIDE_MAX_WIDTH = 480
PROGRESS_STEPS = 1000
PREDICT_LINK = "transfer-studio:predict"


def recommendations_for(report: DatasetReport, device: str) -> list[Any]:
    """engine.experiments.recommend's picks for ``report`` (on a worker thread: it imports torch and
    times this machine once)."""
    from engine.experiments.recommend import recommend_for_dataset

    return recommend_for_dataset(report, device)


class TrainTab(QWidget):
    """Training controls and live view. ``modelTrained(bundle_path)`` when a run saved a model."""

    modelTrained = Signal(str)
    runningChanged = Signal(bool)
    predictRequested = Signal()
    weightsChanged = Signal()  # pretrained weights were downloaded or imported
    runStarted = Signal(str)  # the run folder, once the trainer has created it (new or resumed run)

    def __init__(self, settings: Settings, runner: ThreadRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainTab")
        self.settings = settings
        self.runner = runner
        self.report: DatasetReport | None = None
        self.worker: TrainWorker | DistributedTrainWorker | None = None
        self.run_dir = ""
        self.bundle_path = ""
        self._epochs = 0
        self.weights_dialog: WeightsDialog | None = None
        self._pending_config: TrainConfig | None = None
        self._resume_after_change = ""  # a run to resume again, the user having accepted its changed dataset
        self._build()
        self.recommend = Job(
            runner, "recommend-models", self, on_returned=self.form.recommended.set_recommendations
        )
        self._update_buttons()
        self._show_planned_epochs()
        self.form.control("epochs").changed.connect(self._show_planned_epochs)

    @Slot()
    def _show_planned_epochs(self) -> None:
        if not self.is_running():
            self.plots.set_planned_epochs(self.form.control("epochs").value())

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.form = TrainForm(self.settings)
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("startButton")
        self.start_button.setAccessibleName("Start training")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setAccessibleName("Stop training")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume run…")
        self.resume_button.setObjectName("resumeButton")
        self.resume_button.setAccessibleName("Resume a stopped run")
        self.resume_button.setToolTip("Continue a stopped or interrupted run from its last finished epoch")
        self.resume_button.clicked.connect(self.choose_resume)
        self.start_hint = QLabel()
        self.start_hint.setObjectName("startHint")
        self.start_hint.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 2)
        buttons.addWidget(self.stop_button, 1)
        form_page = QWidget()
        form_layout = QVBoxLayout(form_page)
        form_layout.setContentsMargins(0, 0, 0, 0)
        form_layout.addWidget(self.form)
        form_layout.addStretch(1)
        self.error = MessageBanner("trainError")
        self.result = MessageBanner("trainResult")
        self.result.label.linkActivated.connect(self._open_link)
        # Only the settings scroll (the one scroll bar of the tab); Start, Stop and the messages stay
        # in view below them at any window height. Messages live here, not above the plots: showing
        # one must not resize (and redraw) them.
        scroll = QScrollArea()
        scroll.setObjectName("trainSettingsScroll")
        scroll.setWidget(form_page)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        side = QWidget()
        side.setObjectName("trainSide")
        # As wide as the widest row of the form (the Advanced group's check boxes) beside the scroll
        # bar: the form scrolls up and down, never cut on the right.
        needed = self.form.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4
        side.setMinimumWidth(max(340, needed))
        side.setMaximumWidth(max(SIDE_MAX_WIDTH, needed))
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(scroll, 1)
        side_layout.addLayout(buttons)
        side_layout.addWidget(self.resume_button)
        side_layout.addWidget(self.start_hint)
        side_layout.addWidget(self.error)
        side_layout.addWidget(self.result)

        self.progress = QProgressBar()
        self.progress.setObjectName("trainProgress")
        self.progress.setAccessibleName("Training progress")
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setValue(0)
        self.clock = ProgressClock(self.progress, self)  # monotonic bar, ticking elapsed, estimate
        self.clock.ticked.connect(self._on_tick)
        self._where = ""  # what the run is doing, before the clock's text in the status line
        self.status = QLabel("Ready.")
        self.status.setObjectName("trainStatus")
        self.status.setAccessibleName("Training status")
        self.plots = TrainingPlots()
        self.log = QPlainTextEdit()
        self.log.setObjectName("trainLog")
        self.log.setAccessibleName("Training log")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setPlaceholderText("The training log appears here.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setObjectName("trainSplitter")
        splitter.addWidget(self.plots)
        splitter.addWidget(self.log)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        # The bake-off has a tab of its own (the window adds bakeoff_page): its leaderboard above the
        # plots of the candidate being trained, so it never takes the live plots' room here.
        self.bakeoff_plots = TrainingPlots(name_prefix="bakeoff")
        self.bakeoff = BakeoffPanel(self.settings, self.runner, self.form, self.bakeoff_plots)
        self.bakeoff_page = QSplitter(Qt.Orientation.Vertical)
        self.bakeoff_page.setObjectName("bakeoffTab")
        self.bakeoff_page.addWidget(self.bakeoff)
        self.bakeoff_page.addWidget(self.bakeoff_plots)
        self.bakeoff_page.setStretchFactor(0, 3)
        self.bakeoff_page.setStretchFactor(1, 2)
        self.bakeoff_page.setChildrenCollapsible(False)
        self.bakeoff.runningChanged.connect(self._on_bakeoff_running)
        self.bakeoff.runStarted.connect(self.runStarted)
        self.bakeoff.modelReady.connect(self.modelTrained)
        self.bakeoff.predictRequested.connect(self.predictRequested)
        self.bakeoff.logged.connect(self._log)
        self.weightsChanged.connect(self.bakeoff.refresh_candidates)
        main = QVBoxLayout()
        main.addWidget(self.progress)
        main.addWidget(self.status)
        main.addWidget(splitter, 1)
        layout = QHBoxLayout(self)
        layout.addWidget(side)
        layout.addLayout(main, 1)

    # -- state ------------------------------------------------------------------------------------------
    def set_dataset(self, report: DatasetReport | None) -> None:
        self.report = report
        self.form.set_imbalance(report.imbalance() if report is not None else None)
        self._update_buttons()
        self.bakeoff.set_dataset(report)
        self.refresh_recommendations()

    def refresh_recommendations(self) -> None:
        """Work out "Recommended for your photos" for the open dataset in the background."""
        report = self.report
        if report is None:
            self.form.recommended.clear()
            return
        try:
            device = self.form.config().device
        except Exception:  # noqa: BLE001 - an unusable form value: the default device
            device = "auto"
        self.recommend.start(lambda _worker: recommendations_for(report, device))

    def is_running(self) -> bool:
        return self.worker is not None

    def _update_buttons(self) -> None:
        running = self.is_running()
        bakeoff = self.bakeoff.is_running()  # one thing trains at a time
        self.start_button.setEnabled(not running and not bakeoff and self.report is not None)
        self.resume_button.setEnabled(not running and not bakeoff)
        self.stop_button.setEnabled(running and not (self.worker and self.worker.abort_requested))
        self.form.setEnabled(not running)
        self.bakeoff.set_training(running)
        if running:
            self.start_hint.setText("")
        elif bakeoff:
            self.start_hint.setText("Finding the best model: training can start when the bake-off ends.")
        elif self.report is None:
            self.start_hint.setText("Open a dataset on the Data tab to start training.")
        else:
            self.start_hint.setText(
                f"Dataset: {Path(self.report.root).name} · {len(self.report.classes)} classes"
            )

    def _log(self, text: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    # -- start / stop -----------------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        if self.is_running() or self.report is None:
            return
        if self.bakeoff.is_running():
            self.error.show_message("<b>Cannot start:</b>", "error", detail="a bake-off is running.")
            return
        try:
            config = self.form.config()
        except Exception as exc:  # noqa: BLE001 - ConfigError, shown inline
            self.error.show_message("<b>Cannot start:</b>", "error", detail=friendly_error(exc))
            return
        self.form.save()
        self.error.hide()
        self.result.hide()
        if config.strategy != "scratch" and self.form.model_picker.weights_status(config.model) == "download":
            self._get_weights_then_start(config)
            return
        self._start_run(config)

    def _get_weights_then_start(self, config: TrainConfig) -> None:
        """Download (or import) the pretrained weights first; the run starts once they are cached."""
        from gui.dialogs.weights_dialog import WeightsDialog

        if self.weights_dialog is not None and self.weights_dialog.isVisible():
            return
        dialog = WeightsDialog(config.model, self.runner, self)
        dialog.weightsReady.connect(self._on_weights_ready)
        dialog.accepted.connect(self._on_weights_accepted)
        dialog.rejected.connect(self._on_weights_cancelled)
        self.weights_dialog = dialog
        self._pending_config = config
        self._log(f"Getting the pretrained weights of {config.model}…")
        dialog.open()
        dialog.start_download()

    @Slot()
    def _on_weights_accepted(self) -> None:
        config, self._pending_config = self._pending_config, None
        if config is not None:
            self._start_run(config)

    @Slot(str)
    def _on_weights_ready(self, path: str) -> None:
        self._log(f"Pretrained weights ready: {path}")
        self.weightsChanged.emit()

    @Slot()
    def _on_weights_cancelled(self) -> None:
        self._pending_config = None
        self._log("Training not started: the pretrained weights are missing.")
        self.status.setText("Ready.")

    @Slot()
    def choose_resume(self) -> None:
        """Resume run…: pick a run folder and continue it from its last finished epoch."""
        if self.is_running():
            return
        folder = QFileDialog.getExistingDirectory(self, "Resume a training run", str(self.form.runs_root()))
        if folder:
            self.resume(folder)

    def resume(self, run_dir: str | Path, allow_changed_data: bool = False) -> None:
        """Continue the run in ``run_dir`` (engine.training.trainer.resume), plots pre-filled from its history.

        When its dataset holds other photos than when it started, the user is asked whether to go on
        with them as they are now (``allow_changed_data``); nothing in the run changes until then.
        """
        if self.is_running():
            return
        if self.bakeoff.is_running():
            self.error.show_message("<b>Cannot resume:</b>", "error", detail="a bake-off is running.")
            return
        from engine.core.rundir import RunDir  # torch-free

        folder = Path(run_dir)
        if not RunDir(folder).is_resumable():
            self.error.show_message(
                "<b>Cannot resume:</b>",
                "error",
                detail=f"{folder} is not a run folder with a checkpoint "
                "(a run saves one after its first finished epoch).",
            )
            return
        self.error.hide()
        self.result.hide()
        self.run_dir = str(folder)
        self.bundle_path = ""
        self.plots.clear(self.form.control("epochs").value())
        self._where = "Resuming: loading the checkpoint, the model and the images…"
        self.clock.start()
        self._log(f"Resuming the run in {folder}")
        worker = TrainWorker(None, "", self.form.runs_root(), None, resume_dir=folder,
                             allow_changed_data=allow_changed_data)  # fmt: skip
        worker.history.connect(self._on_history)
        worker.datasetChanged.connect(self._on_dataset_changed)
        self._launch(worker)

    @Slot(str)
    def _on_dataset_changed(self, message: str) -> None:
        """A resume found other photos than the run started with: go on with them, if the user says so."""
        folder = self.run_dir
        answer = QMessageBox.question(
            self,
            "The dataset changed",
            f"{message[0].upper()}{message[1:].split('; add --allow')[0]}.\n\nGo on training this run with the "
            "photos as they are now? (The change is recorded in the run.)",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self._resume_after_change = folder
        else:
            self.status.setText("Not resumed: the dataset changed since the run started.")
            self._log("Resume cancelled: the dataset changed since the run started.")

    @Slot(object)
    def _on_history(self, rows: list[dict[str, Any]]) -> None:
        from engine.core.rundir import best_epoch  # already imported by the worker that sent the rows

        for row in rows:
            try:
                self.plots.add_epoch(
                    int(row["epoch"]),
                    float(row["train_loss"]),
                    float(row["val_loss"]),
                    float(row["train_acc"]),
                    float(row["val_acc"]),
                )
            except (KeyError, TypeError, ValueError):
                continue
        best, _best_acc = best_epoch(rows)
        if best:
            self.plots.mark_best(best)
        if rows:
            self._log(f"{len(rows)} finished epoch(s) restored from the run's history.")

    def _start_run(self, config: TrainConfig) -> None:
        if self.is_running() or self.report is None or self.bakeoff.is_running():
            return
        self.run_dir = ""
        self.bundle_path = ""
        self._epochs = config.epochs
        self.plots.clear(config.epochs)
        self._where = "Preparing: loading the model and the images…"
        self.clock.start()
        self._log(
            f"Starting: {config.model}, {config.strategy}, {config.epochs} epochs, batch "
            f"{config.batch_size}, learning rate {config.lr:g}, {config.optimizer}, "
            f"{config.schedule} schedule{', augmentation' if config.augment else ''}"
        )
        processes = self.form.process_count()
        if processes > 1:
            from engine.core.rundir import new_run_dir

            self._log(f"Training with {processes} processes, one per GPU (torchrun).")
            run_dir = new_run_dir(config.model, config.strategy, self.form.runs_root())
            self._launch(DistributedTrainWorker(config, self.report.root, run_dir, processes))
        else:
            self._launch(TrainWorker(config, self.report.root, self.form.runs_root(), self.report))

    def _launch(self, worker: TrainWorker | DistributedTrainWorker) -> None:
        worker.runStarted.connect(self._on_run_started)
        worker.progress.connect(self._on_progress)
        worker.epochEnded.connect(self._on_epoch)
        worker.message.connect(self._on_message)
        worker.finished.connect(self._on_finished)
        worker.errored.connect(self._on_error)
        worker.done.connect(self._on_done)
        self.worker = worker
        self.runner.start(worker, "training")
        self._update_buttons()
        self.runningChanged.emit(True)

    @Slot()
    def stop(self) -> None:
        if self.worker is None:
            return
        self.worker.abort()
        self.status.setText("Stopping after the current batch…")
        self._log("Stop requested.")
        self._update_buttons()

    # -- worker signals -----------------------------------------------------------------------------------
    @Slot(object)
    def _on_run_started(self, event: ev.RunStarted) -> None:
        self.run_dir = event.run_dir
        self._epochs = event.epochs
        self.plots.set_planned_epochs(event.epochs)
        if event.start_epoch > 1:
            self.plots.set_epoch_axes(event.epochs)  # the resumed curves are drawn already
            self._log(f"Continuing from epoch {event.start_epoch} of {event.epochs}.")
        self._log(
            f"Training on {event.device}: {event.num_train} training and {event.num_val} "
            f"validation images, {len(event.classes)} classes, {event.batches_per_epoch} batches "
            f"per epoch."
        )
        self._log(f"Run folder: {event.run_dir}")
        self.runStarted.emit(event.run_dir)

    @Slot(object, object)
    def _on_progress(self, event: ev.BatchProgress, points: list[tuple[float, float]]) -> None:
        self.plots.add_batches(points)
        if event.phase == "features":
            self._where = f"Computing the backbone's features once · batch {event.batch}/{event.batches}"
        else:
            phase = "training" if event.phase == "train" else "validation"
            self._where = f"Epoch {event.epoch}/{self._epochs} · {phase} batch {event.batch}/{event.batches}"
        total = event.elapsed_s + event.eta_s
        self.clock.update(event.elapsed_s / total if total > 0 else 0.0, event.eta_s)
        if self.worker is None or not self.worker.abort_requested:
            self.status.setText(f"{self._where} · {self.clock.text()}")

    @Slot(str)
    def _on_tick(self, timing: str) -> None:
        """Each second: what the run does, the time it took and the time left."""
        if self.worker is None or self.worker.abort_requested:
            return  # "Stopping…" and the final words stay
        self.status.setText(f"{self._where} · {timing}")

    @Slot(object)
    def _on_epoch(self, event: ev.EpochEnd) -> None:
        self.plots.add_epoch(event.epoch, event.train_loss, event.val_loss, event.train_acc, event.val_acc)
        if event.is_best:
            self.plots.mark_best(event.epoch)
        self._log(
            f"Epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.4f}, "
            f"accuracy {event.train_acc:.1%} · val loss {event.val_loss:.4f}, accuracy "
            f"{event.val_acc:.1%} · {event.seconds:.1f} s" + ("  ★ best so far" if event.is_best else "")
        )

    @Slot(str, str)
    def _on_message(self, level: str, text: str) -> None:
        self._log(f"{'Warning: ' if level == 'warning' else ''}{text}")

    @Slot(object)
    def _on_finished(self, event: ev.RunFinished) -> None:
        self.bundle_path = event.bundle_path or ""
        took = format_duration(self.clock.elapsed())  # the wall time the user waited
        self.clock.finish(completed=not event.cancelled)
        if event.cancelled:
            self.status.setText(f"Stopped after {event.epochs_completed} of {self._epochs} epochs ({took}).")
            self._log(f"Stopped by you after {event.epochs_completed} epoch(s).")
        else:
            if event.stopped_early:
                self.status.setText(
                    f"Finished early: {event.epochs_completed} of {self._epochs} epochs in {took} "
                    "(validation stopped improving)."
                )
            else:
                self.status.setText(f"Finished {event.epochs_completed} epochs in {took}.")
            self._log(f"Finished in {took}.")
        if self.bundle_path:
            folder = Path(self.bundle_path).parent
            self.result.show_message(
                f"<b>Best epoch {event.best_epoch}</b> · best validation accuracy "
                f"<b>{event.best_val_acc:.1%}</b> · model saved to "
                f"<a href='{QUrl.fromLocalFile(str(folder)).toString()}'>{self.bundle_path}</a>"
                f"<br><a href='{PREDICT_LINK}'>Try it on your photos →</a>",
                "success",
            )
            self._log(f"Best epoch {event.best_epoch}, validation accuracy {event.best_val_acc:.1%}.")
            self._log(f"Model saved to {self.bundle_path}")
            self.modelTrained.emit(self.bundle_path)
        elif event.cancelled:
            self.result.show_message("Stopped before the first epoch finished: no model was saved.", "info")

    @Slot(str)
    def _on_error(self, message: str) -> None:
        self.clock.finish(completed=False)
        self.status.setText("Training failed.")
        self.error.show_message("<b>Training failed:</b>", "error", detail=message)
        self._log(f"Error: {message}")

    @Slot()
    def _on_done(self) -> None:
        self.clock.finish(completed=False)  # stopped, failed or finished: the clock stops (bar as it is)
        self.worker = None
        self._update_buttons()
        self.runningChanged.emit(False)
        again, self._resume_after_change = self._resume_after_change, ""
        if again:
            self.resume(again, allow_changed_data=True)

    @Slot(bool)
    def _on_bakeoff_running(self, running: bool) -> None:
        """A bake-off (gui.tabs.bakeoff_panel) started or ended: it counts as training for the window."""
        self._update_buttons()
        if running:
            self.error.hide()
            self.result.hide()
        self.status.setText(
            "Finding the best model: its progress and leaderboard are on the Bake-off tab."
            if running
            else "The bake-off ended: its leaderboard is on the Bake-off tab."
        )
        self.runningChanged.emit(running)

    @Slot(str)
    def _open_link(self, url: str) -> None:
        if url == PREDICT_LINK:
            self.predictRequested.emit()
        else:
            QDesktopServices.openUrl(QUrl(url))
