"""The Runs tab: every run under the runs folder, its curves and settings, and what can be done with it.

``runsTable`` (a QTableView over a sortable, dataset-filtered proxy model) has one row per run from
``engine.core.runs.list_runs``, listed on a worker thread whenever the tab is shown, Refresh is
pressed, or a run started from the window begins or ends (``set_training``, ``on_run_started``).
Below it, :class:`gui.tabs.compare_view.CompareView` draws the selected run's curves and settings, or
overlays 2 to 8 selected runs. The actions (Open in Predict / Evaluate, Resume, Show folder,
Rename / note, Export report, Delete) work on one selected run and are enabled only when they apply;
the window connects ``openInPredict``, ``openInEvaluate``, ``resumeRequested`` and
``reportRequested`` to the other tabs and to its report export. Deleting
moves the folder to the platform's trash, or, where there is none, deletes it after a confirmation.
Only ``engine.core`` is used here: the tab never imports torch.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QAction,
    QDesktopServices,
    QKeySequence,
    QShowEvent,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.core.errors import TransferStudioError
from engine.core.locations import runs_roots
from engine.core.rundir import RunDir
from engine.core.runs import (
    RunsListing,
    RunSummary,
    delete_run,
    list_runs_and_problems,
    move_run_to_trash,
    parse_status_time,
    set_note,
)
from gui.background.jobs import Job, ThreadRunner
from gui.core.settings import Settings
from gui.dialogs.note_dialog import NoteDialog
from gui.tabs.compare_view import CompareView
from gui.views.widgets import CACHED_NOTE, CACHED_TIP, MessageBanner, format_seconds

logger = logging.getLogger(__name__)

# Status second: always in view, whatever the window's width.
COLUMNS = ("Name", "Status", "Dataset", "Model", "Strategy", "Epochs", "Best val acc", "Best epoch",
           "Duration", "Started")  # fmt: skip
NAME, STATUS, DATASET, MODEL, STRATEGY, EPOCHS, BEST_ACC, BEST_EPOCH, DURATION, STARTED = range(len(COLUMNS))
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2  # on the Name column: the run folder
DATASET_ROLE = Qt.ItemDataRole.UserRole + 3  # on the Dataset column: the dataset's full path
ALL_DATASETS = "All datasets"
MAX_NAME_WIDTH = 240  # px: longer names are elided at the end (the whole name is the tooltip)


def format_started(started: str | None) -> str:
    """An ISO 8601 time from status.json as local "YYYY-MM-DD HH:MM" ("–" when unknown)."""
    if not started:
        return "–"
    moment = parse_status_time(started)
    if moment is None:
        return started
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _status_text(run: RunSummary) -> str:
    return f"{run.status} · resumable" if run.resumable else run.status


def _row(run: RunSummary) -> list[QStandardItem]:
    """The table cells of one run: display text, and a sort key each."""
    dataset = Path(run.dataset).name or run.dataset
    acc = run.best_val_acc
    cells: list[tuple[str, Any]] = [
        (run.name, run.name.lower()),
        (_status_text(run), run.status),
        (dataset, dataset.lower()),
        (run.model, run.model),
        (run.strategy, run.strategy),
        (f"{run.epochs_done}/{run.epochs_planned}", float(run.epochs_done)),
        ("–" if acc is None else f"{acc:.1%}", -1.0 if acc is None else float(acc)),
        (str(run.best_epoch) if run.best_epoch else "–", float(run.best_epoch)),
        (
            format_seconds(run.seconds) + (f" · {CACHED_NOTE}" if run.features_cached else ""),
            float(run.seconds),
        ),
        (format_started(run.started), run.started or ""),
    ]
    items = []
    for text, key in cells:
        item = QStandardItem(text)  # editable in the model, but the view has no edit triggers
        item.setData(key, SORT_ROLE)
        items.append(item)
    tip = f"{run.name}\n{run.path}" + (f"\n{run.note}" if run.note else "")
    items[NAME].setToolTip(tip)
    items[NAME].setData(str(run.path), PATH_ROLE)
    items[DATASET].setToolTip(run.dataset)
    if run.features_cached:
        items[DURATION].setToolTip(CACHED_TIP)
    items[DATASET].setData(run.dataset, DATASET_ROLE)
    if run.message:
        items[STATUS].setToolTip(run.message)
    return items


class RunsFilter(QSortFilterProxyModel):
    """Sorts by each column's sort key; keeps the runs of one dataset (or all)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dataset: str | None = None
        self.setSortRole(SORT_ROLE)

    def set_dataset(self, dataset: str | None) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt 6.9+, where invalidateRowsFilter is deprecated
            self.beginFilterChange()
            self.dataset = dataset
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.dataset = dataset
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:  # noqa: N802
        if self.dataset is None:
            return True
        index = self.sourceModel().index(source_row, DATASET, source_parent)
        return index.data(DATASET_ROLE) == self.dataset


class RunsTab(QWidget):
    """The runs table, the selected runs' curves, and the actions on a run."""

    openInPredict = Signal(str)  # model.pt
    openInEvaluate = Signal(str, str)  # model.pt, the run's dataset folder
    resumeRequested = Signal(str)  # the run folder
    reportRequested = Signal(str)  # the run folder: export its HTML report
    runsListed = Signal(int)  # the table was filled with this many runs

    def __init__(self, settings: Settings, runner: ThreadRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runsTab")
        self.setAccessibleName("Runs")
        self.settings = settings
        self.runner = runner
        self.runs: dict[str, RunSummary] = {}
        self.root: Path | None = None
        self.roots: list[Path] = []
        self.note_dialog: NoteDialog | None = None
        self.lister = Job(
            runner,
            "list-runs",
            self,
            on_returned=self._on_listed,
            on_errored=self._on_list_failed,
            on_done=self._on_list_done,
        )
        self._training = False
        self._filling = False
        self._sized = False
        self._build()
        self._update_actions()

    # -- layout ---------------------------------------------------------------------------------------
    def _button(self, text: str, name: str, accessible: str, tip: str, slot: Any) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.setAccessibleName(accessible)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    def _build(self) -> None:
        self.summary = QLabel()
        self.summary.setObjectName("runsSummary")
        self.summary.setAccessibleName("Runs folder and number of runs")
        self.summary.setWordWrap(True)
        self.dataset_filter = QComboBox()
        self.dataset_filter.setObjectName("runsDatasetFilter")
        self.dataset_filter.setAccessibleName("Show the runs of one dataset")
        self.dataset_filter.addItem(ALL_DATASETS, None)
        self.dataset_filter.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.dataset_filter.currentIndexChanged.connect(self._on_filter_changed)
        self.refresh_button = self._button(
            "Refresh",
            "runsRefreshButton",
            "Refresh the runs list",
            "List the runs folder again",
            self.refresh,
        )
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(QLabel("Dataset:"))
        top.addWidget(self.dataset_filter)
        top.addWidget(self.refresh_button)

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.proxy = RunsFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setObjectName("runsTable")
        self.table.setAccessibleName("Training runs")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(STARTED, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.table.doubleClicked.connect(self._on_double_clicked)
        delete_action = QAction("Delete run", self.table)
        delete_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        delete_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        delete_action.triggered.connect(self.delete_selected)
        self.table.addAction(delete_action)

        self.predict_button = self._button(
            "Open in Predict", "runsOpenPredictButton", "Open the run's model in the Predict tab",
            "Load this run's model (model.pt) in the Predict tab", self.open_in_predict,
        )  # fmt: skip
        self.evaluate_button = self._button(
            "Open in Evaluate", "runsOpenEvaluateButton", "Evaluate the run's model",
            "Load this run's model and switch to the Evaluate tab", self.open_in_evaluate,
        )  # fmt: skip
        self.resume_button = self._button(
            "Resume", "runsResumeButton", "Resume the run",
            "Continue this stopped or interrupted run from its last finished epoch", self.resume_selected,
        )  # fmt: skip
        self.folder_button = self._button(
            "Show folder", "runsShowFolderButton", "Show the run's folder",
            "Open the run's folder in the file manager", self.show_folder,
        )  # fmt: skip
        self.rename_button = self._button(
            "Rename / note…", "runsRenameButton", "Rename the run or add a note",
            "Give the run a name and a note", self.rename_selected,
        )  # fmt: skip
        self.report_button = self._button(
            "Export report…", "runsReportButton", "Export the run's report",
            "Write one HTML file with the run's settings, curves and metrics", self.export_report,
        )  # fmt: skip
        self.delete_button = self._button(
            "Delete", "runsDeleteButton", "Delete the run",
            "Move the run's folder to the trash", self.delete_selected,
        )  # fmt: skip
        # The actions stand in two columns beside the table: in one row they would make the window
        # wide, in one column tall.
        actions = QGridLayout()
        actions.setContentsMargins(0, 0, 0, 0)
        for index, button in enumerate((self.predict_button, self.evaluate_button, self.resume_button,
                                        self.folder_button, self.rename_button, self.report_button)):  # fmt: skip
            actions.addWidget(button, index // 2, index % 2)
        actions.setRowStretch(3, 1)
        actions.addWidget(self.delete_button, 4, 1)
        self.message = MessageBanner("runsMessage")

        table_row = QHBoxLayout()
        table_row.addWidget(self.table, 1)
        table_row.addLayout(actions)
        upper = QWidget()
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addLayout(top)
        upper_layout.addWidget(self.message)
        upper_layout.addLayout(table_row, 1)
        self.compare = CompareView()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setObjectName("runsSplitter")
        splitter.addWidget(upper)
        splitter.addWidget(self.compare)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([300, 500])
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    # -- listing ----------------------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh()  # whenever the tab comes up: runs may have been added from the command line

    @Slot()
    def refresh(self) -> None:
        """List the runs folder again on a worker thread; the table fills when it answers."""
        root = self.settings.runs_root()
        self.root = root
        roots = runs_roots(root)  # runs made by earlier versions, in the old default folder, too
        self.roots = roots
        self.refresh_button.setEnabled(False)
        if not self.lister.start(
            lambda _worker: list_runs_and_problems(*roots), imports_torch=False
        ):  # closing
            self.refresh_button.setEnabled(True)

    def is_listing(self) -> bool:
        return self.lister.is_busy()

    @Slot(str)
    def on_run_started(self, _run_dir: str) -> None:
        """A run started from the window has its folder: list it."""
        self.refresh()

    @Slot(bool)
    def set_training(self, running: bool) -> None:
        """Whether the Train tab is running (Resume waits); a run that ended is listed again."""
        self._training = running
        self._update_actions()
        if not running:
            self.refresh()

    def _on_list_failed(self, message: str) -> None:
        self.message.show_message("<b>Cannot list the runs:</b>", "error", detail=message)

    def _on_list_done(self) -> None:
        self.refresh_button.setEnabled(True)

    def _on_listed(self, listing: RunsListing) -> None:
        self.fill(listing.runs)
        if listing.broken:
            names = "".join(
                f"<br>{html.escape(str(folder))}: {html.escape(why)}" for folder, why in listing.broken[:5]
            )
            more = f"<br>… and {len(listing.broken) - 5} more" if len(listing.broken) > 5 else ""
            self.message.show_message(
                f"<b>{len(listing.broken)} run folder(s) left out: a file of theirs is damaged.</b>{names}{more}",
                "warning",
            )

    def fill(self, runs: list[RunSummary]) -> None:
        """Show ``runs`` in the table, keeping the selection and the dataset filter where they still exist."""
        selected = [str(run.path) for run in self.selected_runs()]
        self._filling = True
        try:
            self.runs = {str(run.path): run for run in runs}
            self.model.removeRows(0, self.model.rowCount())
            for run in runs:
                self.model.appendRow(_row(run))
            self._fill_dataset_filter(runs)
            self._select_paths(selected)
        finally:
            self._filling = False
        if runs and not self._sized:  # once: later refreshes keep the widths the user chose
            self._sized = True
            self.table.resizeColumnsToContents()
            header = self.table.horizontalHeader()
            header.resizeSection(NAME, min(header.sectionSize(NAME), MAX_NAME_WIDTH))
        self._update_summary()
        self._on_selection_changed()
        self.runsListed.emit(len(runs))

    def _fill_dataset_filter(self, runs: list[RunSummary]) -> None:
        current = self.dataset_filter.currentData()
        datasets = sorted({run.dataset for run in runs}, key=lambda d: (Path(d).name.lower(), d))
        names = [Path(d).name or d for d in datasets]
        self.dataset_filter.blockSignals(True)
        self.dataset_filter.clear()
        self.dataset_filter.addItem(ALL_DATASETS, None)
        for dataset, name in zip(datasets, names):
            self.dataset_filter.addItem(name if names.count(name) == 1 else dataset, dataset)
            self.dataset_filter.setItemData(
                self.dataset_filter.count() - 1, dataset, Qt.ItemDataRole.ToolTipRole
            )
        index = self.dataset_filter.findData(current) if current is not None else 0
        self.dataset_filter.setCurrentIndex(max(0, index))
        self.dataset_filter.blockSignals(False)
        self.proxy.set_dataset(self.dataset_filter.currentData())

    def _select_paths(self, paths: list[str]) -> None:
        wanted = set(paths)
        selection = QItemSelection()
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, NAME)
            if index.data(PATH_ROLE) in wanted:
                selection.select(index, self.proxy.index(row, len(COLUMNS) - 1))
        self.table.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def select_paths(self, paths: list[str | Path]) -> None:
        """Select the runs in these folders (those the filter hides stay unselected)."""
        self._select_paths([str(p) for p in paths])

    def _update_summary(self) -> None:
        total, shown = len(self.runs), self.proxy.rowCount()
        root = " and ".join(str(r) for r in self.roots)
        if total == 0:
            self.summary.setText(f"No runs yet in {root}. Runs you train appear here.")
        elif shown == total:
            self.summary.setText(f"{total} run{'s' if total != 1 else ''} in {root}")
        else:
            self.summary.setText(f"{shown} of {total} runs (one dataset) in {root}")

    @Slot()
    def _on_filter_changed(self) -> None:
        self.proxy.set_dataset(self.dataset_filter.currentData())
        self._update_summary()
        self._on_selection_changed()

    def keep_column_widths(self) -> None:
        """The columns' widths were restored from the last session: do not size them to the runs."""
        self._sized = True

    # -- selection --------------------------------------------------------------------------------------
    def selected_runs(self) -> list[RunSummary]:
        """The selected runs, in the table's order."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows(NAME))
        paths = [self.proxy.index(row, NAME).data(PATH_ROLE) for row in rows]
        return [self.runs[p] for p in paths if p in self.runs]

    def current_run(self) -> RunSummary | None:
        """The one selected run (None when none or several are selected)."""
        runs = self.selected_runs()
        return runs[0] if len(runs) == 1 else None

    @Slot()
    def _on_selection_changed(self) -> None:
        if self._filling:
            return
        runs = self.selected_runs()
        self.compare.show_runs(runs, len(runs))
        self._update_actions()

    def _update_actions(self) -> None:
        run = self.current_run()
        running = run is not None and run.status == "running"
        self.predict_button.setEnabled(run is not None and run.has_bundle)
        self.evaluate_button.setEnabled(run is not None and run.has_bundle)
        self.resume_button.setEnabled(run is not None and run.resumable and not self._training)
        self.folder_button.setEnabled(run is not None)
        self.rename_button.setEnabled(run is not None)
        self.report_button.setEnabled(run is not None and run.epochs_done > 0)
        self.delete_button.setEnabled(run is not None and not running)
        if run is None:
            tip = "Select one run"
        elif running:
            tip = "The run is still training: stop it first"
        else:
            tip = "Move the run's folder to the trash"
        self.delete_button.setToolTip(tip)

    @Slot(QModelIndex)
    def _on_double_clicked(self, _index: QModelIndex) -> None:
        if self.predict_button.isEnabled():
            self.open_in_predict()

    # -- actions ----------------------------------------------------------------------------------------
    @Slot()
    def open_in_predict(self) -> None:
        run = self.current_run()
        if run is None or not run.has_bundle:
            return
        self.message.hide()
        self.openInPredict.emit(str(RunDir(run.path).bundle_path))

    @Slot()
    def open_in_evaluate(self) -> None:
        run = self.current_run()
        if run is None or not run.has_bundle:
            return
        self.message.hide()
        self.openInEvaluate.emit(str(RunDir(run.path).bundle_path), run.dataset)

    @Slot()
    def resume_selected(self) -> None:
        run = self.current_run()
        if run is None or not run.resumable or self._training:
            return
        self.message.hide()
        self.resumeRequested.emit(str(run.path))

    @Slot()
    def export_report(self) -> None:
        run = self.current_run()
        if run is not None and run.epochs_done > 0:
            self.reportRequested.emit(str(run.path))

    @Slot()
    def show_folder(self) -> None:
        run = self.current_run()
        if run is None:
            return
        if not run.path.is_dir() or not QDesktopServices.openUrl(QUrl.fromLocalFile(str(run.path))):
            self.message.show_message("<b>Cannot open the folder:</b>", "error", detail=str(run.path))

    @Slot()
    def rename_selected(self) -> None:
        """Rename / note…: a dialog; the name and note are saved when it is accepted."""
        run = self.current_run()
        if run is None:
            return
        if self.note_dialog is not None:
            self.note_dialog.reject()
        dialog = NoteDialog(run, self)
        dialog.accepted.connect(self._on_note_accepted)
        self.note_dialog = dialog
        dialog.open()

    @Slot()
    def _on_note_accepted(self) -> None:
        dialog = self.note_dialog  # the only one open: opening another rejects this one first
        if dialog is None:
            return
        self.note_dialog = None
        dialog.deleteLater()
        try:
            set_note(dialog.path, name=dialog.name_edit.text(), note=dialog.note_edit.toPlainText())
        except TransferStudioError as exc:
            self.message.show_message("<b>Cannot save the name:</b>", "error", detail=str(exc))
            return
        self.refresh()

    @Slot()
    def delete_selected(self) -> None:
        """Move the selected run to the trash; where there is no trash, delete it after asking."""
        run = self.current_run()
        if run is None:
            return
        if run.status == "running":
            self.message.show_message(
                "<b>Cannot delete a run that is still training.</b> Stop it first.", "error"
            )
            return
        try:
            move_run_to_trash(run.path)
            done = f"Moved <b>{html.escape(run.name)}</b> to the trash."
        except (TransferStudioError, ImportError) as exc:
            logger.info("no trash for %s: %s", run.path, exc)
            answer = QMessageBox.question(
                self,
                "Delete run",
                f"The run “{run.name}” cannot be moved to the trash ({exc}).\n\n"
                f"Delete {run.path} for good? This cannot be undone.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
            try:
                delete_run(run.path)
            except TransferStudioError as error:
                self.message.show_message("<b>Cannot delete the run:</b>", "error", detail=str(error))
                self.refresh()
                return
            done = f"Deleted <b>{html.escape(run.name)}</b>."
        self.message.show_message(done, "info")
        self.refresh()

    def shutdown(self) -> None:
        if self.note_dialog is not None:
            self.note_dialog.reject()
