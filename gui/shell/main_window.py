"""The main window: the Data, Train, Predict, Evaluate and Runs tabs, menus, status bar, settings, and
clean shutdown.

Nothing here imports torch. After the window is first shown, a worker thread probes the compute
device (importing torch) and then loads the model catalog; the status bar and the model picker fill
in when they arrive. Closing the window stops a running training (after asking) and waits for every
worker thread. File → Import weights file… and Help → Environment open
:mod:`gui.dialogs.weights_dialog` and :mod:`gui.dialogs.environment_dialog`; after a download or an import the
model catalog is reloaded so the picker shows which models work without a network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import QLabel, QMainWindow, QMenu, QMessageBox, QTabWidget, QWidget

from gui.background.gc_policy import freeze_long_lived
from gui.background.jobs import FunctionWorker, Job, ThreadRunner
from gui.core.layout_memory import restore_layout, save_layout
from gui.core.settings import Settings
from gui.shell.environment import Environment, about_html, probe_environment
from gui.shell.icon import app_icon
from gui.tabs.data_tab import DataTab
from gui.tabs.evaluate_tab import EvaluateTab
from gui.tabs.predict_tab import PredictTab
from gui.tabs.runs_tab import RunsTab
from gui.tabs.train_tab import TrainTab
from gui.views.focus_ring import FocusRing

if TYPE_CHECKING:
    from engine.data.datasets import DatasetReport
    from engine.inference.predict import Predictor
    from engine.models.registry import ModelInfo
    from gui.dialogs.environment_dialog import EnvironmentDialog
    from gui.dialogs.export_dialog import ExportDialog
    from gui.dialogs.report_export import ReportExporter
    from gui.dialogs.weights_dialog import WeightsDialog

logger = logging.getLogger(__name__)


def load_catalog(_worker: FunctionWorker) -> list[tuple[ModelInfo, str]]:
    """Every model with its weights status (runs on a worker thread).

    Also imports the engine modules a run and a prediction need, so that importing (and, without
    .pyc files, compiling) them never holds the GIL later, while the user watches a training run.
    """
    import engine.inference.predict  # noqa: F401
    import engine.training.trainer  # noqa: F401
    from engine.models.registry import list_models
    from engine.models.weights import weights_status

    entries = []
    for info in list_models():
        try:
            status = weights_status(info.name)
        except Exception:  # noqa: BLE001 - an odd cache folder must not hide the model
            status = "download"
        entries.append((info, status))
    return entries


class MainWindow(QMainWindow):
    """Transfer Studio's window. ``firstShown`` once, when it is first on screen."""

    firstShown = Signal()
    environmentReady = Signal(object)
    catalogReady = Signal(int)

    def __init__(self, settings: Settings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setAccessibleName("Transfer Studio")
        self.setWindowTitle("Transfer Studio")
        self.setWindowIcon(app_icon())
        self.settings = settings or Settings()
        self.settings.apply_feature_cache_root()  # the engine's cache folder, as chosen in Environment
        self.runner = ThreadRunner(self)
        self.probe = Job(self.runner, "probe-environment", self, on_returned=self._on_environment,
                         on_errored=self._on_environment_failed)  # fmt: skip
        self.catalog_job = Job(self.runner, "load-catalog", self, on_returned=self._on_catalog,
                               on_errored=self._on_catalog_failed)  # fmt: skip
        self.environment: Environment | None = None
        self.catalog: list[tuple[ModelInfo, str]] = []
        self._shown = False
        self._shut_down = False
        self._weights_dialog: WeightsDialog | None = None
        self._environment_dialog: EnvironmentDialog | None = None

        self.data_tab = DataTab(self.settings, self.runner)
        self.train_tab = TrainTab(self.settings, self.runner)
        self.predict_tab = PredictTab(self.settings, self.runner)
        self.evaluate_tab = EvaluateTab(self.settings, self.runner)
        self.runs_tab = RunsTab(self.settings, self.runner)
        self._export_dialog: ExportDialog | None = None
        self._report_exporter: ReportExporter | None = None
        self.tabs = QTabWidget()
        self.tabs.setObjectName("tabs")
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.data_tab, "&1  Data")
        self.tabs.addTab(self.train_tab, "&2  Train")
        self.tabs.addTab(self.predict_tab, "&3  Predict")
        self.tabs.addTab(self.evaluate_tab, "&4  Evaluate")
        self.tabs.addTab(self.runs_tab, "&5  Runs")
        self.tabs.addTab(self.train_tab.bakeoff_page, "&6  Bake-off")  # "Find the best model"
        self.setCentralWidget(self.tabs)

        self.data_tab.datasetChanged.connect(self._on_dataset_changed)
        self.train_tab.modelTrained.connect(self._on_model_trained)
        self.train_tab.runningChanged.connect(self._on_running_changed)
        self.train_tab.predictRequested.connect(self._show_predict)
        self.data_tab.datasetChanged.connect(self.evaluate_tab.set_dataset)
        self.data_tab.datasetChanged.connect(self.predict_tab.set_dataset)
        self.predict_tab.modelLoaded.connect(self._on_model_loaded)
        self.train_tab.weightsChanged.connect(self.refresh_catalog)
        self.train_tab.runStarted.connect(self.runs_tab.on_run_started)
        self.train_tab.runningChanged.connect(self.runs_tab.set_training)
        self.runs_tab.openInPredict.connect(self._open_run_in_predict)
        self.runs_tab.openInEvaluate.connect(self._open_run_in_evaluate)
        self.runs_tab.resumeRequested.connect(self._resume_run)
        self.runs_tab.reportRequested.connect(self.export_report)
        self._build_menus()
        self.focus_ring = FocusRing(self)  # where the keyboard is, drawn around it
        self.device_label = QLabel("Loading PyTorch…")
        self.device_label.setObjectName("deviceLabel")
        self.device_label.setAccessibleName("Compute device")
        self.statusBar().addPermanentWidget(self.device_label)
        if self.settings.recovered_from:
            self.statusBar().showMessage(
                f"The settings file was damaged and has been reset (old copy: {self.settings.recovered_from}).",
                15000,
            )
        self._restore_geometry()

    # -- menus -----------------------------------------------------------------------------------------
    def _action(
        self,
        text: str,
        name: str,
        slot: Callable[[], object],
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
    ) -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_dataset_action = self._action(
            "Open &dataset…", "openDatasetAction", self.open_dataset, QKeySequence.StandardKey.Open
        )
        self.open_model_action = self._action(
            "Open &model…", "openModelAction", self.open_model, "Ctrl+Shift+O"
        )
        self.import_weights_action = self._action(
            "&Import weights file…", "importWeightsAction", self.import_weights
        )
        self.quit_action = self._action("&Quit", "quitAction", self.close, QKeySequence.StandardKey.Quit)
        file_menu.addAction(self.open_dataset_action)
        self.data_tab.recent_menu.setTitle("Recent datasets")
        file_menu.addMenu(self.data_tab.recent_menu)
        file_menu.addAction(self.open_model_action)
        self.export_action = self._action("&Export model…", "exportAction", self.export_model, "Ctrl+E")
        self.export_action.setEnabled(False)
        self.export_action.setToolTip("Load a model first: train one, or File → Open model…")
        file_menu.addAction(self.export_action)
        self.export_report_action = self._action(
            "Export &report…", "exportReportAction", self._export_report_from_menu
        )
        self.export_report_action.setToolTip(
            "Write the report of a run or a bake-off: one HTML file with its curves, metrics and errors"
        )
        file_menu.addAction(self.export_report_action)
        file_menu.addAction(self.import_weights_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        self._build_go_menu()
        help_menu = self.menuBar().addMenu("&Help")
        self.getting_started_action = self._action(
            "&Getting started",
            "gettingStartedAction",
            self.show_getting_started,
            QKeySequence.StandardKey.HelpContents,
        )
        self.shortcuts_action = self._action(
            "&Keyboard shortcuts", "shortcutsAction", self.show_shortcuts, "Ctrl+/"
        )
        self.about_action = self._action("&About Transfer Studio", "aboutAction", self.show_about)
        self.environment_action = self._action("&Environment…", "environmentAction", self.show_environment)
        help_menu.addAction(self.getting_started_action)
        help_menu.addAction(self.shortcuts_action)
        help_menu.addSeparator()
        help_menu.addAction(self.environment_action)
        help_menu.addAction(self.about_action)

    def _build_go_menu(self) -> None:
        """Go: one action per tab (Ctrl+1…5; Cmd on macOS, where Qt maps Ctrl) and next/previous tab."""
        go_menu = self.menuBar().addMenu("&Go")
        self.tab_actions: list[QAction] = []
        for index in range(self.tabs.count()):
            name = self.tabs.tabText(index).split()[-1]
            action = self._action(
                f"&{index + 1} {name}", f"go{name}Action", partial(self.tabs.setCurrentIndex, index),
                f"Ctrl+{index + 1}",
            )  # fmt: skip
            self.tab_actions.append(action)
            go_menu.addAction(action)
        go_menu.addSeparator()
        self.next_tab_action = self._action("&Next tab", "nextTabAction", lambda: self._step_tab(1))
        self.next_tab_action.setShortcuts([QKeySequence("Ctrl+Tab"), QKeySequence("Ctrl+PgDown")])
        self.previous_tab_action = self._action(
            "&Previous tab", "previousTabAction", lambda: self._step_tab(-1)
        )
        self.previous_tab_action.setShortcuts([QKeySequence("Ctrl+Shift+Tab"), QKeySequence("Ctrl+PgUp")])
        go_menu.addAction(self.next_tab_action)
        go_menu.addAction(self.previous_tab_action)

    def _step_tab(self, step: int) -> None:
        self.tabs.setCurrentIndex((self.tabs.currentIndex() + step) % self.tabs.count())

    def all_actions(self) -> list[QAction]:
        """Every action of the menus, in menu order (Help → Keyboard shortcuts lists them)."""
        found: list[QAction] = []
        for menu in self.menuBar().findChildren(QMenu, options=Qt.FindChildOption.FindDirectChildrenOnly):
            found += [a for a in menu.actions() if not a.isSeparator() and a.menu() is None]
        return found

    @Slot()
    def show_getting_started(self) -> None:
        from gui.dialogs.help_pages import HelpPage, getting_started_html

        HelpPage("Getting started", getting_started_html(), "gettingStartedPage", self).open()

    @Slot()
    def show_shortcuts(self) -> None:
        from gui.dialogs.help_pages import HelpPage, shortcuts_html

        HelpPage("Keyboard shortcuts", shortcuts_html(self.all_actions()), "shortcutsPage", self).open()

    @Slot()
    def open_dataset(self) -> None:
        self.tabs.setCurrentWidget(self.data_tab)
        self.data_tab.choose_folder()

    @Slot()
    def open_model(self) -> None:
        self.tabs.setCurrentWidget(self.predict_tab)
        self.predict_tab.choose_model()

    @Slot()
    def show_about(self) -> None:
        QMessageBox.about(self, "About Transfer Studio", about_html(self.environment))

    @Slot()
    def import_weights(self) -> None:
        """File → Import weights file…: a weights dialog in import mode (the picker refreshes after)."""
        from gui.dialogs.weights_dialog import WeightsDialog

        dialog = WeightsDialog(None, self.runner, self)
        dialog.weightsReady.connect(self.refresh_catalog)
        self._weights_dialog = dialog
        dialog.open()
        dialog.choose_file()

    @Slot()
    def show_environment(self) -> None:
        """Help → Environment: the doctor's report, computed off the GUI thread."""
        from gui.dialogs.environment_dialog import EnvironmentDialog

        if self._environment_dialog is None:
            self._environment_dialog = EnvironmentDialog(self.runner, self.settings, self)
        elif not self._environment_dialog.isVisible():
            self._environment_dialog.refresh()
        self._environment_dialog.show()
        self._environment_dialog.raise_()

    @Slot()
    def refresh_catalog(self) -> None:
        """Reload every model's weights status (after a download or an import)."""
        if self._shut_down or self.environment is None:
            return
        self.catalog_job.start(load_catalog)

    @Slot()
    def export_model(self) -> None:
        """File → Export…: the current model to ONNX or TorchScript, with a parity check."""
        from gui.dialogs.export_dialog import ExportDialog, val_images

        if self.predict_tab.predictor is None:
            return
        if self._export_dialog is not None and self._export_dialog.is_busy():
            self._export_dialog.raise_()
            return
        from engine.data.outputs import run_dataset

        protect = [Path(self.data_tab.report.root)] if self.data_tab.report is not None else []
        protect += run_dataset(self.predict_tab.model_path) if self.predict_tab.model_path else []
        self._export_dialog = ExportDialog(
            self.predict_tab.predictor.bundle,
            val_images(self.data_tab.report),
            self.runner,
            self.settings,
            self,
            protect=protect,
            dataset=self.data_tab.report,
        )
        self._export_dialog.open()

    def export_report(self, run_dir: str | Path | None = None) -> None:
        """Write the HTML report of ``run_dir`` (a run or a bake-off), or of a folder the user picks.

        Without ``run_dir`` a folder dialog asks, starting at the run in view (see
        :meth:`_run_in_view`), else at the runs folder. Then a save dialog asks for the file; the
        report is written on a worker thread with a progress dialog and Cancel.
        """
        from gui.dialogs.report_export import ReportExporter

        if self._shut_down:
            return
        if self._report_exporter is None:
            self._report_exporter = ReportExporter(self.settings, self.runner, self)
            self._report_exporter.written.connect(self._on_report_written)
        self._report_exporter.export(run_dir, start=self._run_in_view())

    def _run_in_view(self) -> Path | None:
        """The run folder the user is looking at: the Runs tab's selected run, the run of the model
        open in Predict or Evaluate, or the run the Train tab shows, the current tab first."""
        from gui.dialogs.report_export import run_folder_of

        selected = self.runs_tab.current_run()
        by_tab: dict[QWidget, Path | None] = {
            self.runs_tab: selected.path if selected is not None else None,
            self.predict_tab: run_folder_of(
                self.predict_tab.model_path if self.predict_tab.has_model() else None
            ),
            self.train_tab: Path(self.train_tab.run_dir) if self.train_tab.run_dir else None,
        }
        by_tab[self.evaluate_tab] = by_tab[self.predict_tab]  # Evaluate works on Predict's model
        current = self.tabs.currentWidget()
        if by_tab.get(current) is not None:
            return by_tab[current]
        return next((folder for folder in by_tab.values() if folder is not None), None)

    @Slot()
    def _export_report_from_menu(self) -> None:
        """File → Export report: on the Runs tab with one run selected, that run (no folder to pick)."""
        selected = self.runs_tab.current_run()
        if self.tabs.currentWidget() is self.runs_tab and selected is not None:
            self.export_report(selected.path)
        else:
            self.export_report()

    @Slot(str)
    def _on_report_written(self, path: str) -> None:
        self.statusBar().showMessage(f"Report written to {path}", 15000)

    @Slot(object)
    def _on_model_loaded(self, predictor: Predictor | None) -> None:
        self.evaluate_tab.set_model(predictor)
        self.export_action.setEnabled(predictor is not None)
        self.export_action.setToolTip("Export the model to ONNX or TorchScript")

    # -- start-up work in the background -------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            self.firstShown.emit()
            QTimer.singleShot(0, self._start_background_work)

    @Slot()
    def _start_background_work(self) -> None:
        if self._shut_down:
            return
        self.probe.start(lambda _w: probe_environment())
        last = self.settings.get_str("data/last")
        if last and Path(last).is_dir() and not self.data_tab.is_scanning() and self.data_tab.report is None:
            self.data_tab.open_dataset(last)

    @Slot(object)
    def _on_environment(self, env: Environment) -> None:
        self.environment = env
        self.train_tab.form.set_gpus(env.gpus)
        self.device_label.setText(env.device)
        self.device_label.setToolTip(env.cuda_note or env.device)
        self.environmentReady.emit(env)
        if not self._shut_down:
            self.catalog_job.start(load_catalog)

    @Slot(str)
    def _on_environment_failed(self, message: str) -> None:
        self.device_label.setText("PyTorch unavailable")
        self.statusBar().showMessage(f"PyTorch could not be loaded: {message}")

    @Slot(object)
    def _on_catalog(self, entries: list[tuple[ModelInfo, str]]) -> None:
        freeze_long_lived()  # torch and the catalog are loaded: keep full collections short from now on
        self.catalog = entries
        self.train_tab.form.set_catalog(entries)
        self.catalogReady.emit(len(entries))

    @Slot(str)
    def _on_catalog_failed(self, message: str) -> None:
        self.train_tab.form.model_details.setText(f"The model list could not be loaded: {message}")

    # -- tab interplay --------------------------------------------------------------------------------------
    @Slot(object)
    def _on_dataset_changed(self, report: DatasetReport | None) -> None:
        self.train_tab.set_dataset(report)
        if report is not None:
            self.statusBar().showMessage(
                f"Dataset ready: {len(report.classes)} classes. Next: the Train tab.", 8000
            )

    @Slot(str)
    def _on_model_trained(self, bundle_path: str) -> None:
        self.predict_tab.load_model(bundle_path)

    @Slot()
    def _show_predict(self) -> None:
        self.tabs.setCurrentWidget(self.predict_tab)

    @Slot(str)
    def _open_run_in_predict(self, bundle_path: str) -> None:
        self.predict_tab.load_model(bundle_path)
        self.tabs.setCurrentWidget(self.predict_tab)

    @Slot(str, str)
    def _open_run_in_evaluate(self, bundle_path: str, dataset: str) -> None:
        """The run's model in Evaluate; its dataset too when none is open (another one stays open)."""
        self.predict_tab.load_model(bundle_path)
        if self.data_tab.report is None and not self.data_tab.is_scanning() and Path(dataset).is_dir():
            self.data_tab.open_dataset(dataset)
        self.tabs.setCurrentWidget(self.evaluate_tab)

    @Slot(str)
    def _resume_run(self, run_dir: str) -> None:
        self.tabs.setCurrentWidget(self.train_tab)
        self.train_tab.resume(run_dir)

    @Slot(bool)
    def _on_running_changed(self, running: bool) -> None:
        self.statusBar().showMessage("Training…" if running else "Training ended.", 0 if running else 8000)

    # -- geometry and shutdown --------------------------------------------------------------------------------
    def _restore_geometry(self) -> None:
        geometry = self.settings.get_bytes("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 820)
        tab = self.settings.get_int("window/tab", 0, 0, self.tabs.count() - 1)
        self.tabs.setCurrentIndex(tab)
        if "runsTable" in restore_layout(self, self.settings):
            self.runs_tab.keep_column_widths()

    def save_state(self) -> None:
        self.settings.set("window/geometry", self.saveGeometry())
        self.settings.set("window/tab", self.tabs.currentIndex())
        save_layout(self, self.settings)
        self.train_tab.form.save()
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        busy = self.train_tab.is_running() or self.train_tab.bakeoff.is_running()
        if busy and not self._shut_down:
            answer = QMessageBox.question(
                self,
                "Training is running",
                "Stop the training and quit? The best model so far is kept.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.save_state()
        self.shutdown()
        event.accept()

    def shutdown(self, timeout_s: float = 120.0) -> None:
        """Stop every worker and wait for its thread (idempotent; also runs on aboutToQuit)."""
        if self._shut_down:
            return
        self._shut_down = True
        self.predict_tab.camera_page.deactivate()  # the cameras' lights go off first
        self.data_tab.sort.close_capture()
        self.train_tab.stop()
        if not self.runner.shutdown(timeout_s):
            logger.warning("some background work did not stop within %.0f s", timeout_s)
        self.data_tab.shutdown()
        self.predict_tab.shutdown()
        self.evaluate_tab.shutdown()
        if self._report_exporter is not None:
            self._report_exporter.shutdown()
        self.runs_tab.shutdown()
