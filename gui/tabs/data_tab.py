"""The Data tab: choose a dataset folder, scan it off the GUI thread, and show what was found.

Shows one row per class with per-split counts (``classTable``), a lazily loaded thumbnail grid of the
selected class, the files that were skipped with their reasons, and the scan's warnings (imbalance,
tiny classes, automatic validation split). Folders come from the Open button
(``QFileDialog.getExistingDirectory``), drag-and-drop, the recent list, or typing a path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QBrush, QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QMenu,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.core.config import TrainConfig
from gui.background.jobs import FunctionWorker, Job, ThreadRunner
from gui.core.settings import Settings
from gui.tabs.audit_panel import AuditPanel
from gui.tabs.sort_panel import SortPanel
from gui.views.prediction_views import ProbabilityBarDelegate, confidence_item
from gui.views.thumbnails import ThumbnailGrid
from gui.views.widgets import MessageBanner, dropped_paths, empty_state_pages, heading, hint_label

if TYPE_CHECKING:
    from engine.data.datasets import DatasetReport

logger = logging.getLogger(__name__)

EMPTY_HINT = (
    "<p style='font-size:15pt'><b>Drop a folder of photos here</b></p>"
    "<p>or click <b>Open folder…</b> above.</p>"
    "<p>Put each class in its own sub-folder — <i>photos/cats</i>, <i>photos/dogs</i> — or use "
    "<i>train/</i> and <i>val/</i> folders that each hold the class folders.<br>"
    f"Without a <i>val/</i> folder, {TrainConfig.val_fraction:.0%} of each class is set aside for "
    "validation.</p>"
)

#: Said when a scan the sort view asked for fails (the last report stays).
FOLDER_REFUSED = "These photos cannot be sorted:"
SORTED_REFUSED = "After sorting, the folder cannot be used for training yet:"


def _scan(path: str, worker: FunctionWorker, to_sort: str | None = None) -> DatasetReport:
    from engine.data.datasets import scan_dataset  # imports PIL, worker thread only

    config = TrainConfig()  # the split a run makes of a folder without val/ (the trainer's defaults)
    return scan_dataset(
        path,
        val_fraction=config.val_fraction,
        seed=config.seed,
        on_progress=worker.report_progress,
        unlabeled=to_sort,  # a folder of photos to sort the user added (else the dataset's unlabeled/)
        list_unlabeled=True,
    )


class DataTab(QWidget):
    """Dataset chooser and scan report. ``datasetChanged(report or None)`` after every scan."""

    datasetChanged = Signal(object)

    def __init__(self, settings: Settings, runner: ThreadRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dataTab")
        self.settings = settings
        self.runner = runner
        self.report: DatasetReport | None = None
        self.scan = Job(
            runner,
            "dataset-scan",
            self,
            on_progress=self._on_scan_progress,
            on_returned=self._on_scanned,
            on_errored=self._on_scan_failed,
        )
        self._scanning_path = ""
        self._to_sort: tuple[str, str] | None = None  # (dataset, folder of photos to sort) the user added
        self._keep_on_failure = ""  # a scan for the sort view: if it fails, say this, keep the report
        self.setAcceptDrops(True)
        self._build()
        self._refresh_recent()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.path_edit = QLineEdit()
        self.path_edit.setObjectName("datasetPath")
        self.path_edit.setAccessibleName("Dataset folder")
        self.path_edit.setPlaceholderText("A folder with one sub-folder of photos per class")
        self.path_edit.setClearButtonEnabled(True)
        self.path_edit.returnPressed.connect(self._on_path_entered)
        self.open_button = QPushButton("Open folder…")
        self.open_button.setObjectName("openDatasetButton")
        self.open_button.setAccessibleName("Open dataset folder")
        self.open_button.clicked.connect(self.choose_folder)
        self.recent_button = QToolButton()
        self.recent_button.setObjectName("recentDatasetsButton")
        self.recent_button.setAccessibleName("Recent datasets")
        self.recent_button.setText("Recent")
        self.recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent_menu = QMenu(self)
        self.recent_menu.triggered.connect(self._open_recent)  # a recent folder (the clear item has no data)
        self.recent_button.setMenu(self.recent_menu)
        self.rescan_button = QPushButton("Rescan")
        self.rescan_button.setObjectName("rescanButton")
        self.rescan_button.setAccessibleName("Scan the dataset again")
        self.rescan_button.setEnabled(False)
        self.rescan_button.clicked.connect(self.rescan)
        top = QHBoxLayout()
        top.addWidget(QLabel("Dataset:"))
        top.addWidget(self.path_edit, 1)
        top.addWidget(self.open_button)
        top.addWidget(self.recent_button)
        top.addWidget(self.rescan_button)

        self.progress = QProgressBar()
        self.progress.setObjectName("scanProgress")
        self.progress.setAccessibleName("Scan progress")
        self.progress.setFormat("Checking images… %v / %m")
        self.progress.hide()
        self.summary = QLabel()
        self.summary.setObjectName("datasetSummary")
        self.summary.setWordWrap(True)
        self.error = MessageBanner("dataError")
        self.capture_button = QPushButton("Capture photos into this folder…")
        self.capture_button.setObjectName("dataCaptureButton")
        self.capture_button.setToolTip(
            "Build the dataset with a camera: photos go straight into class folders"
        )
        self.capture_button.clicked.connect(self._capture_into_folder)
        self.capture_button.hide()

        self.class_table = QTableWidget(0, 0)
        self.class_table.setObjectName("classTable")
        self.class_table.setAccessibleName("Classes")
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.class_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.class_table.verticalHeader().hide()
        self.class_table.itemSelectionChanged.connect(self._on_class_selected)
        self._share_delegate = ProbabilityBarDelegate(self.class_table)

        self.warnings = QListWidget()
        self.warnings.setObjectName("datasetWarnings")
        self.warnings.setAccessibleName("Dataset warnings")
        self.warnings.setWordWrap(True)
        self.skipped = QTableWidget(0, 2)
        self.skipped.setObjectName("skippedFiles")
        self.skipped.setAccessibleName("Skipped files")
        self.skipped.setHorizontalHeaderLabels(["File", "Reason"])
        self.skipped.verticalHeader().hide()
        self.skipped.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.skipped.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.issues = QTabWidget()
        self.issues.setObjectName("datasetIssues")
        # Whole tab labels ("Warnings (3)"), never elided or behind scroll arrows.
        self.issues.tabBar().setElideMode(Qt.TextElideMode.ElideNone)
        self.issues.setUsesScrollButtons(False)
        self.issues.addTab(self.warnings, "Warnings")
        self.issues.addTab(self.skipped, "Skipped files")

        classes = QWidget()
        classes_layout = QVBoxLayout(classes)
        classes_layout.setContentsMargins(0, 0, 0, 0)
        classes_layout.addWidget(heading("Classes"))
        classes_layout.addWidget(self.class_table)
        left = QSplitter(Qt.Orientation.Vertical)
        left.setObjectName("dataLeftSplitter")
        left.addWidget(classes)
        left.addWidget(self.issues)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 2)
        left.setChildrenCollapsible(False)

        self.grid_title = heading("Images")
        self.grid = ThumbnailGrid()
        images = QWidget()
        images_layout = QVBoxLayout(images)
        images_layout.setContentsMargins(0, 0, 0, 0)
        images_layout.addWidget(self.grid_title)
        images_layout.addWidget(self.grid, 1)
        images_layout.addWidget(hint_label("Double-click an image to open it in your image viewer."))
        self.audit = AuditPanel(self.runner)
        self.audit.datasetEdited.connect(self.rescan)
        right = QTabWidget()
        right.setObjectName("dataViews")
        right.addTab(images, "Images")
        right.addTab(self.audit, "Dataset doctor")
        self.sort = SortPanel(self.runner)
        self.sort.datasetEdited.connect(self._rescan_after_sorting)
        self.sort.unlabeledFolderChosen.connect(self._sort_folder)
        self.sort.countChanged.connect(self._show_sort_count)
        self.audit.suspectsFound.connect(self.sort.map_side.set_suspects)  # marked on the photo map
        right.addTab(self.sort, "&Sort")
        self.views = right

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("dataSplitter")
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 5)
        left.setMinimumWidth(220)  # grows to what the class table and the tab labels need (_fit_left)
        self.left = left
        splitter.setChildrenCollapsible(False)

        self.pages = empty_state_pages(EMPTY_HINT, "dataEmptyHint", splitter)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.progress)
        layout.addWidget(self.error)
        layout.addWidget(self.capture_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.summary)
        layout.addWidget(self.pages, 1)

    # -- choosing a folder -------------------------------------------------------------------------
    @Slot()
    def choose_folder(self) -> None:
        start = self.path_edit.text() or self.settings.get_str("data/last") or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open dataset folder", start)
        if folder:
            self.open_dataset(folder)

    @Slot()
    def _on_path_entered(self) -> None:
        text = self.path_edit.text().strip()
        if text:
            self.open_dataset(text)

    @Slot()
    def rescan(self) -> None:
        if self.report is not None or self.path_edit.text():
            self.open_dataset(self.path_edit.text())

    @Slot()
    def _rescan_after_sorting(self) -> None:
        """The sort view moved photos: scan again, and keep this report if the new scan fails."""
        if self.report is not None:
            self.open_dataset(self.report.root)
            self._keep_on_failure = SORTED_REFUSED
        elif self.path_edit.text():
            self.open_dataset(self.path_edit.text())  # photos captured into a folder that was no dataset yet

    @Slot()
    def _capture_into_folder(self) -> None:
        """Capture into class for a folder that cannot be used yet (empty, or one class only)."""
        self.sort.open_capture(Path(self._scanning_path))

    @Slot(str)
    def _sort_folder(self, folder: str) -> None:
        """Scan the dataset again, listing the photos of ``folder`` as those to sort."""
        if self.report is not None:
            self._to_sort = (str(self.report.root), folder)
            self.open_dataset(self.report.root)
            self._keep_on_failure = FOLDER_REFUSED

    @Slot(int)
    def _show_sort_count(self, count: int) -> None:
        self.views.setTabText(self.views.indexOf(self.sort), f"&Sort ({count})" if count else "&Sort")

    def open_dataset(self, folder: str | Path) -> None:
        """Scan ``folder`` in the background; the result arrives in ``datasetChanged``."""
        path = str(Path(folder).expanduser())
        self.path_edit.setText(path)
        self.error.hide()
        self.capture_button.hide()
        self.progress.setRange(0, 0)
        self.progress.show()
        self.summary.setText(f"Scanning {path}…")
        self._scanning_path = path
        self._keep_on_failure = ""
        if self._to_sort is not None and Path(self._to_sort[0]) != Path(path).resolve():
            self._to_sort = None  # another dataset: its own unlabeled/ folder
        to_sort = self._to_sort[1] if self._to_sort is not None else None
        self.scan.start(lambda w: _scan(path, w, to_sort), imports_torch=False)  # PIL only: fast

    def is_scanning(self) -> bool:
        return self.scan.is_busy()

    def _on_scan_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _on_scanned(self, report: DatasetReport) -> None:
        self.progress.hide()
        self.report = report
        self.settings.add_recent_dataset(self._scanning_path)
        self._refresh_recent()
        self.rescan_button.setEnabled(True)
        self._show_report(report)
        self.audit.set_dataset(report)
        self.sort.set_dataset(report)
        self._show_sort_count(self.sort.to_sort())
        self.datasetChanged.emit(report)

    def _on_scan_failed(self, message: str) -> None:
        self.progress.hide()
        if self._keep_on_failure and self.report is not None:
            # A folder of photos to sort that cannot be used, or photos just sorted that made the folder
            # unusable (a new class of one photo, say): keep the last report, so the sort view can go
            # on or undo, and say why.
            if self._keep_on_failure == FOLDER_REFUSED:
                self._to_sort = None
            self._show_report(self.report)
            self.error.show_message(f"<b>{self._keep_on_failure}</b>", "warning", detail=message)
            return
        self.report = None
        self.rescan_button.setEnabled(bool(self.path_edit.text()))
        self.summary.setText("")
        self.error.show_message("<b>This folder cannot be used.</b>", "error", detail=message)
        # An empty (or too small) folder can still become a dataset: with a camera.
        self.capture_button.setVisible(Path(self._scanning_path).is_dir())
        self.pages.setCurrentIndex(0)
        self.grid.set_paths([])
        self.audit.set_dataset(None)
        self.sort.set_dataset(None)
        self._show_sort_count(0)
        self.datasetChanged.emit(None)

    # -- showing the report ------------------------------------------------------------------------
    def _fit_left(self) -> None:
        """Keep every column of the class table (Share too) and both issue tabs' labels in view."""
        table = self.class_table
        header = table.horizontalHeader()
        columns = sum(
            max(header.sectionSizeHint(c), table.sizeHintForColumn(c), header.minimumSectionSize())
            for c in range(header.count())
        )
        scrollbar = table.verticalScrollBar().sizeHint().width()
        needed = max(
            columns + scrollbar + 2 * table.frameWidth() + 4, self.issues.tabBar().sizeHint().width() + 8
        )
        self.left.setMinimumWidth(max(220, needed))

    def _show_report(self, report: DatasetReport) -> None:
        from engine.data.datasets import SPLITS, TINY_CLASS_TRAIN_IMAGES  # loaded by the scan already

        counts = report.counts()
        splits = [s for s in SPLITS if s in report.splits]
        headers = ["Class"] + [
            f"{s} (auto)" if s == "val" and report.auto_split else s for s in splits
        ] + ["Total", "Share"]  # fmt: skip
        grand_total = max(1, sum(sum(c.values()) for c in counts.values()))
        table = self.class_table
        table.blockSignals(True)
        table.clear()
        table.setColumnCount(len(headers))
        table.setRowCount(len(report.classes))
        table.setHorizontalHeaderLabels([h.capitalize() for h in headers])
        for row, name in enumerate(report.classes):
            table.setItem(row, 0, QTableWidgetItem(name))
            per_split = counts[name]
            for col, split in enumerate(splits, start=1):
                n = per_split.get(split, 0)
                item = QTableWidgetItem(str(n))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if split == "train" and n < TINY_CLASS_TRAIN_IMAGES:
                    item.setForeground(QBrush(QColor("#b35900")))
                    item.setToolTip("Very few training images: results will be unreliable")
                table.setItem(row, col, item)
            total = QTableWidgetItem(str(sum(per_split.values())))
            total.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(row, len(headers) - 2, total)
            share = confidence_item(sum(per_split.values()) / grand_total)
            share.setToolTip("Share of all images")
            table.setItem(row, len(headers) - 1, share)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(headers) - 1, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(48)
        table.setItemDelegateForColumn(len(headers) - 1, self._share_delegate)
        table.blockSignals(False)

        self.warnings.clear()
        self.warnings.addItems(report.warnings or ["No warnings: the dataset looks fine."])
        self.skipped.setRowCount(len(report.skipped))
        for row, entry in enumerate(report.skipped):
            try:
                shown = str(Path(entry.path).relative_to(report.root))
            except ValueError:
                shown = str(entry.path)
            self.skipped.setItem(row, 0, QTableWidgetItem(shown))
            self.skipped.setItem(row, 1, QTableWidgetItem(entry.reason))
        self.skipped.resizeColumnToContents(0)
        self.issues.setTabText(0, f"Warnings ({len(report.warnings)})")
        self.issues.setTabText(1, f"Skipped files ({len(report.skipped)})")
        if report.warnings:
            self.issues.setCurrentIndex(0)
        elif report.skipped:
            self.issues.setCurrentIndex(1)
        self._fit_left()

        totals = ", ".join(f"{len(report.splits[s])} {s}" for s in splits)
        self.summary.setText(
            f"<b>{len(report.classes)} classes</b> · {totals} images"
            + (f" · {len(report.skipped)} files skipped" if report.skipped else "")
            + (f" · {len(report.excluded)} excluded by you" if report.excluded else "")
            + (f" · {len(report.unlabeled)} photos to sort" if report.unlabeled else "")
        )
        self.pages.setCurrentIndex(1)
        if report.classes:
            table.selectRow(0)

    @Slot()
    def _on_class_selected(self) -> None:
        rows = self.class_table.selectionModel().selectedRows()
        if not rows or self.report is None:
            return
        label = rows[0].row()
        name = self.report.classes[label]
        paths, tips = [], []
        for split, samples in self.report.splits.items():
            for sample in samples:
                if sample.label == label:
                    paths.append(sample.path)
                    tips.append(f"{split} · {sample.path}")
        self.grid_title.setText(f"Images of '{name}' ({len(paths)})")
        self.grid.set_paths(paths, tips)

    # -- recent list ---------------------------------------------------------------------------------
    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_datasets()
        for path in recent:
            action = QAction(path, self.recent_menu)
            action.setData(path)
            self.recent_menu.addAction(action)
        if recent:
            self.recent_menu.addSeparator()
            clear = self.recent_menu.addAction("Clear list")
            clear.triggered.connect(self._clear_recent)
        self.recent_button.setEnabled(bool(recent))

    @Slot(QAction)
    def _open_recent(self, action: QAction) -> None:
        if action.data():
            self.open_dataset(str(action.data()))

    @Slot()
    def _clear_recent(self) -> None:
        self.settings.clear_recent_datasets()
        self._refresh_recent()

    # -- drag and drop ---------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if any(p.is_dir() for p in dropped_paths(event.mimeData())):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        folders = [p for p in dropped_paths(event.mimeData()) if p.is_dir()]
        if folders:
            event.acceptProposedAction()
            self.open_dataset(folders[0])

    def shutdown(self) -> None:
        self.audit.shutdown()
        self.sort.shutdown()
        self.grid.shutdown()
