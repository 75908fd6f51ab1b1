"""The Data tab's sort view: sort new photos into class folders with the model's help.

It owns the jobs (:mod:`gui.background.jobs`) of the backbone pass over every photo
(:func:`engine.sorting.features.photo_features`, progress and Cancel) and of the head's fit
(:func:`engine.sorting.proposals.fit_proposals`), which runs again after every accepted batch on the
in-memory features of :class:`gui.tabs.sort_state.SortSession` (no new backbone pass).

The grid (:mod:`gui.views.sort_grid`) shows one thumbnail per photo to sort with its suggestion; keys
1-9 put the selected photos in a class, Enter accepts the suggestions, X skips, Ctrl+Z undoes; the
map side (:mod:`gui.tabs.sort_map`) names a lasso or a group as a class; **Capture into class**
(:mod:`gui.dialogs.capture_dialog`) takes camera photos straight into a class folder. Every move is one batch of
:func:`engine.sorting.journal.accept`; a refusal shows one line and changes nothing. After a batch
the panel emits ``datasetEdited`` (the Data tab scans again) and keeps its state when the new scan
matches its features (:func:`gui.tabs.sort_state.reconciled`), else computes them again (mostly
from the feature cache).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gui.background.jobs import FunctionWorker, Job, ThreadRunner, friendly_error
from gui.dialogs.capture_dialog import CaptureDialog
from gui.tabs.sort_map import SortMap
from gui.tabs.sort_state import Move, SortSession, reconciled
from gui.views.class_colours import class_colour
from gui.views.progress_clock import ProgressClock
from gui.views.sort_grid import SortGrid, grid_items
from gui.views.widgets import MessageBanner, hint_label

if TYPE_CHECKING:
    from engine.data.datasets import DatasetReport
    from engine.sorting.features import PhotoFeatures
    from engine.sorting.proposals import Proposal, Proposals

logger = logging.getLogger(__name__)

DEFAULT_SURE = 0.9  # engine.sorting.proposals.DEFAULT_SURE (not imported: it would import torch)
BAR_STEPS = 1000
ORDERS = ("By suggested class", "In review order")  # the grid's order
COLD_START = "Name a group on the map to start."
KEYS_HINT = (
    "Keys: 1–9 put the selected photos in that class · Enter accepts the suggestion · X skips · "
    "arrows move (Shift/Ctrl select more) · Ctrl+Z undoes. Double-click opens a photo."
)
EMPTY_TEXT = (
    "<p style='font-size:13pt'><b>No photos to sort.</b></p>"
    "<p>Put new photos in a folder named <i>unlabeled</i> inside the dataset folder and press "
    "<b>Rescan</b>, or add a folder of photos to sort.<br>The model suggests a class for each; you "
    "accept with one key, and every move can be undone.</p>"
)


def _features(report: DatasetReport, worker: FunctionWorker) -> PhotoFeatures:
    from engine.sorting.features import photo_features

    return photo_features(
        report, on_progress=worker.report_progress, should_stop=lambda: worker.abort_requested
    )


def _fit(features: PhotoFeatures) -> Proposals:
    from engine.sorting.proposals import fit_proposals

    return fit_proposals(features)


def _button(
    text: str, name: str, slot: Callable[[], None], tip: str, *, tool: bool = False
) -> QAbstractButton:
    button: QAbstractButton = QToolButton() if tool else QPushButton()
    button.setText(text)
    button.setObjectName(name)
    button.setToolTip(tip)
    button.setAccessibleName(tip)
    button.clicked.connect(slot)
    return button


def _row(*widgets: QWidget | int | None) -> QHBoxLayout:
    """Widgets left to right; ``None`` is a stretch, an int a spacing."""
    row = QHBoxLayout()
    for widget in widgets:
        if widget is None:
            row.addStretch(1)
        elif isinstance(widget, int):
            row.addSpacing(widget)
        else:
            row.addWidget(widget)
    return row


class SortPanel(QWidget):
    """The sort view and the photo map of one dataset (see the module docstring)."""

    datasetEdited = Signal()  # photos moved: scan the folder again
    unlabeledFolderChosen = Signal(str)  # scan again, listing this folder's photos to sort
    countChanged = Signal(int)  # photos left to sort

    def __init__(self, runner: ThreadRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sortView")
        self.runner = runner
        self.report: DatasetReport | None = None
        self.session = SortSession(Path())
        self.proposals: Proposals | None = None
        self.fit_problem = ""  # the one line saying why no head could be fitted
        self._asked = False  # features asked for once (after a Cancel, Compute suggestions starts them)
        self._said = ""  # what the last action did
        self._left: tuple[object, object, dict[Path, Proposal]] = (None, None, {})  # proposal_of's cache
        self.features_job = Job(
            runner, "sort-features", self, on_progress=self._on_feature_progress,
            on_returned=self._on_features, on_errored=self._on_features_failed,
            on_aborted=self._on_cancelled, on_done=self._on_features_done,
        )  # fmt: skip
        self.fit_job = Job(
            runner, "sort-fit", self, on_returned=self._on_proposals, on_errored=self._on_fit_failed,
            on_done=self._update,
        )  # fmt: skip
        self.capture_dialog: CaptureDialog | None = None
        self._build()
        self._update()

    @property
    def features(self) -> PhotoFeatures | None:
        return self.session.features

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.empty_text = QLabel(EMPTY_TEXT)
        self.empty_text.setObjectName("sortEmptyHint")
        self.empty_text.setWordWrap(True)
        self.empty_text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        add = _button("Add a folder of photos to sort…", "sortAddFolderButton", self.choose_folder,
                      "Choose a folder of photos to sort into this dataset's classes")  # fmt: skip
        show_map = _button("Show the photo map of the dataset", "sortShowMapButton", self.show_map_only,
                           "Place every photo of the dataset on a map of what it looks like")  # fmt: skip
        empty = QWidget()
        empty_layout = QVBoxLayout(empty)
        empty_layout.addStretch(1)
        empty_layout.addWidget(self.empty_text)
        capture = _button("Capture into class…", "sortCaptureButton", self._capture_clicked,
                          "Take photos with a camera straight into a class folder")  # fmt: skip
        empty_layout.addLayout(_row(None, add, show_map, None))
        empty_layout.addLayout(_row(None, capture, None))  # a row of its own: the tab stays narrow
        empty_layout.addStretch(2)

        self.start_button = _button("Compute suggestions", "sortStartButton", self.start,
                                    "Run the photos through the model to suggest classes")  # fmt: skip
        self.cancel_button = _button("Cancel", "sortCancelButton", self.cancel,
                                     "Stop computing the features or the map")  # fmt: skip
        self.progress = QProgressBar()
        self.progress.setObjectName("sortProgress")
        self.progress.setAccessibleName("Sorting progress")
        self.progress.setRange(0, BAR_STEPS)
        self.progress.hide()
        self.clock = ProgressClock(self.progress, self)
        self.clock.ticked.connect(self._update_status)
        self._progress_text = ""
        self.status = QLabel()
        self.status.setObjectName("sortStatus")
        self.status.setWordWrap(True)
        self.classes_label = QLabel()
        self.classes_label.setObjectName("sortClasses")
        self.classes_label.setWordWrap(True)
        self.notice = MessageBanner("sortNotice")
        self.error = MessageBanner("sortError")

        self.assign_menu = QMenu(self)
        self.assign_button = _button("Put in class", "sortAssignButton", lambda: None,
                                     "Put the selected photos in a class (keys 1–9)", tool=True)  # fmt: skip
        assert isinstance(self.assign_button, QToolButton)
        self.assign_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.assign_button.setMenu(self.assign_menu)
        self.accept_button = _button("Accept", "sortAcceptButton", self.accept_selected,
                                     "Accept the suggestion for the selected photos (Enter)")  # fmt: skip
        self.skip_button = _button("Skip", "sortSkipButton", self.skip_selected,
                                   "Leave the selected photos for later (X)")  # fmt: skip
        self.new_class_button = _button("New class…", "sortNewClassButton", self.new_class,
                                        "Put the selected photos in a new class")  # fmt: skip
        self.undo_button = _button("Undo", "sortUndoButton", self.undo, "Undo the last sort or skip (Ctrl+Z)")

        self.order_picker = QComboBox()
        self.order_picker.setObjectName("sortOrderPicker")
        self.order_picker.setAccessibleName("Order of the photos")
        self.order_picker.addItems(ORDERS)
        self.order_picker.currentIndexChanged.connect(self._reorder)
        self.sure_spin = QDoubleSpinBox()
        self.sure_spin.setObjectName("sortSureSpin")
        self.sure_spin.setAccessibleName("How sure the model must be")
        self.sure_spin.setToolTip("Accept all sure… accepts the suggestions at least this confident")
        self.sure_spin.setRange(0.5, 1.0)
        self.sure_spin.setSingleStep(0.01)
        self.sure_spin.setDecimals(2)
        self.sure_spin.setValue(DEFAULT_SURE)
        self.sure_spin.valueChanged.connect(self._update)
        self.sure_button = _button("Accept all sure…", "sortAcceptSureButton", self.accept_sure,
                                   "Accept every suggestion at least this sure (asks first)")  # fmt: skip
        add_more = _button("Add folder…", "sortAddMoreButton", self.choose_folder,
                           "Sort the photos of another folder into this dataset", tool=True)  # fmt: skip
        capture_more = _button("Capture…", "sortCaptureMoreButton", self._capture_clicked,
                               "Take photos with a camera straight into a class folder", tool=True)  # fmt: skip
        self.map_toggle = QPushButton("Map")
        self.map_toggle.setObjectName("sortMapToggle")
        self.map_toggle.setToolTip("Show or hide the photo map")
        self.map_toggle.setCheckable(True)
        self.map_toggle.setChecked(True)
        self.map_toggle.toggled.connect(self._update)  # shown, the map places the photos

        self.grid = SortGrid()
        self.grid.classKey.connect(self.assign_class)
        self.grid.acceptKey.connect(self.accept_selected)
        self.grid.skipKey.connect(self.skip_selected)
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.grid.customContextMenuRequested.connect(self._grid_menu)
        self.grid.selectionModel().selectionChanged.connect(self._update)
        grid_side = QWidget()
        grid_layout = QVBoxLayout(grid_side)
        grid_layout.setContentsMargins(0, 0, 0, 0)
        grid_layout.addWidget(self.grid, 1)
        grid_layout.addWidget(hint_label(KEYS_HINT))
        self.map_side = SortMap(self.runner)
        self.map_side.selectionChanged.connect(self._on_map_selection)
        self.map_side.nameRequested.connect(self.name_photos)
        self.map_side.busyChanged.connect(self._update)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("sortSplitter")
        splitter.addWidget(grid_side)
        splitter.addWidget(self.map_side)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 4)
        splitter.setSizes([5000, 4000])  # in proportion to the room there is (until the user drags it)

        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        top = _row(self.start_button, self.cancel_button)
        top.addWidget(self.progress, 1)
        top.addWidget(self.status, 2)  # the progress line (how many sorted, left, the accuracy so far)
        top.addWidget(add_more, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(capture_more, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.map_toggle, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(top)
        for widget in (self.error, self.notice, self.classes_label):
            layout.addWidget(widget)
        layout.addLayout(_row(self.assign_button, self.accept_button, self.skip_button,
                              self.new_class_button, None, self.undo_button))  # fmt: skip
        layout.addLayout(_row(self.order_picker, 8, QLabel("Sure ≥"), self.sure_spin, self.sure_button, None))
        layout.addWidget(splitter, 1)
        self.pages = QStackedWidget()
        self.pages.addWidget(empty)
        self.pages.addWidget(page)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.pages)
        undo = QShortcut(QKeySequence(QKeySequence.StandardKey.Undo), self)
        undo.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        undo.activated.connect(self.undo)

    # -- the dataset -------------------------------------------------------------------------------
    def set_dataset(self, report: DatasetReport | None) -> None:
        """A new scan of the Data tab: the same folder keeps the view when its photos match."""
        same = report is not None and self.report is not None and report.root == self.report.root
        self.report = report
        if report is not None and self.capture_dialog is not None and self.capture_dialog.root != report.root:
            self.close_capture()  # another dataset: photos must not go on into the one before
        if not same:
            self._reset(report.root if report is not None else Path())
        elif self.features is not None and report is not None:
            kept = reconciled(self.features, report)
            if kept is not None:
                self.session.features = kept
                self._refresh()
                return
            logger.info("the photos of %s changed outside the sort view: features again", report.root)
            self.start()
        elif self.features_job.is_busy():
            self.start()  # with the new scan's photos
        self._show_page()
        if self.isVisible():
            self._auto_start()

    def _reset(self, root: Path) -> None:
        self.features_job.cancel()
        self.fit_job.cancel()
        self.map_side.reset()
        self.clock.finish(completed=False)
        self.session = SortSession(root)
        self.proposals, self.fit_problem = None, ""
        self._asked, self._said = False, ""
        self.error.hide()
        self.notice.hide()
        self._show_page()
        self._refresh()

    def _show_page(self) -> None:
        has_photos = self.report is not None and bool(self.report.unlabeled)
        self.pages.setCurrentIndex(1 if has_photos or self._asked or self.features is not None else 0)

    def to_sort(self) -> int:
        """Photos left to sort (those the model can read, once it read them)."""
        if self.features is not None:
            return len(self.features.unlabeled_paths)
        return len(self.report.unlabeled) if self.report is not None else 0

    def classes(self) -> list[str]:
        """The class order that keys 1-9 follow (the dataset's, then classes made here)."""
        if self.features is not None:
            return list(self.features.classes)
        return list(self.report.classes) if self.report is not None else []

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._auto_start()
        if self.grid.photos.rowCount():
            self.grid.setFocus()  # the sorting keys work at once

    def _auto_start(self) -> None:
        report = self.report
        if report is not None and report.unlabeled and self.features is None and not self._asked:
            self.start()

    # -- the features ------------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        """Compute (or read from the cache) the features of every photo of the dataset."""
        if self.report is None:
            return
        report = self.report
        self._asked = True
        self.error.hide()
        self._progress_text = "Computing the photos' features"
        self.progress.show()
        self.clock.start()
        if not self.features_job.start(lambda w: _features(report, w)):
            self.clock.finish(completed=False)
            self.progress.hide()
        self._show_page()
        self._update()

    @Slot()
    def show_map_only(self) -> None:
        """The map of a dataset with no photos to sort."""
        self.map_toggle.setChecked(True)
        self.start()

    @Slot()
    def cancel(self) -> None:
        self.features_job.stop()
        self.map_side.cancel()
        self.cancel_button.setEnabled(False)

    def _on_feature_progress(self, done: int, total: int) -> None:
        if not self.features_job.stopping:
            self._progress_text = f"Computing the photos' features: {done} / {total}"
            self.clock.measure(done / max(1, total))

    def _on_features(self, features: PhotoFeatures) -> None:
        self.clock.finish()
        if self.report is not None:
            features = reconciled(features, self.report) or features
        self.session.features = features
        self.proposals, self.fit_problem = None, ""
        self.start_fit()
        self._refresh()

    def _on_features_failed(self, message: str) -> None:
        self.clock.finish(completed=False)
        self.error.show_message("<b>Cannot compute the photos' features:</b>", "error", detail=message)

    def _on_cancelled(self) -> None:
        self.clock.finish(completed=False)
        self._say("Cancelled. Compute suggestions starts again")

    def _on_features_done(self) -> None:
        self.clock.finish(completed=False)
        self.progress.hide()
        self._update()

    # -- the proposals -----------------------------------------------------------------------------
    def start_fit(self) -> None:
        """Fit the head on the labelled photos in memory (seconds; no backbone pass)."""
        features = self.features
        if features is not None:
            self.fit_job.start(lambda _w: _fit(features))
            self._update()

    def _on_proposals(self, proposals: Proposals) -> None:
        first = self.proposals is None
        self.proposals, self.fit_problem = proposals, ""
        self._refresh()
        if first and self.grid.photos.rowCount():  # the first suggestions: start at the top
            top = self.grid.photos.path(0)
            self.grid.select_paths([top], top)
            self.grid.scrollToTop()

    def _on_fit_failed(self, message: str) -> None:
        self.proposals, self.fit_problem = None, message
        self.map_toggle.setChecked(True)
        self._refresh()

    def proposal_of(self) -> dict[Path, Proposal]:
        """The current proposal of each photo still to sort (do not change it: it is cached)."""
        proposals, features = self.proposals, self.features
        if proposals is None or features is None:
            return {}
        if self._left[0] is not proposals or self._left[1] is not features:
            left = set(features.unlabeled_paths)
            self._left = (proposals, features, {p.path: p for p in proposals.proposals if p.path in left})
        return self._left[2]

    # -- showing -----------------------------------------------------------------------------------
    def _refresh(self) -> None:
        self._fill_grid()
        self._show_classes()
        self._show_notice()
        self.map_side.show_state(self.features, self.proposal_of(), self.classes())
        self._update()
        self.countChanged.emit(self.to_sort())

    @Slot()
    def _fill_grid(self) -> None:
        if self.features is not None:
            paths = list(self.features.unlabeled_paths)
        else:
            paths = list(self.report.unlabeled) if self.report is not None else []
        review = self.order_picker.currentIndex() == 1
        items = grid_items(paths, self.proposal_of(), self.classes(), self.session.skipped, review)
        self.grid.set_items(items)
        if not self.grid.currentIndex().isValid() and items:
            self.grid.select_paths([items[0].path], items[0].path)

    @Slot()
    def _reorder(self) -> None:
        """Another order: start from its first photo (in review order, the one to review first)."""
        self._fill_grid()
        if self.grid.photos.rowCount():
            top = self.grid.photos.path(0)
            self.grid.select_paths([top], top)
            self.grid.scrollToTop()

    def _show_classes(self) -> None:
        classes = self.classes()
        parts = [
            f"<span style='color:{class_colour(i).name()}'>■</span> {f'{i + 1} ' if i < 9 else ''}"
            f"{html.escape(name)}"
            for i, name in enumerate(classes)
        ]
        self.classes_label.setText("Classes: " + " · ".join(parts) if parts else "")
        self.assign_menu.clear()
        for i, name in enumerate(classes):
            action = self.assign_menu.addAction(f"&{i + 1}  {name}" if i < 9 else name)
            action.triggered.connect(lambda _checked=False, c=i: self.assign_class(c))
        self.assign_menu.addSeparator()
        self.assign_menu.addAction("New class…").triggered.connect(self.new_class)

    def _show_notice(self) -> None:
        lines = []
        if self.fit_problem:
            lines.append(f"{html.escape(self.fit_problem)}. <b>{COLD_START}</b>")
        elif self.proposals is not None and self.proposals.classes_without_photos:
            names = ", ".join(f"'{html.escape(n)}'" for n in self.proposals.classes_without_photos)
            lines.append(
                f"No suggestions for {names} until it has a photo: select photos of it and press its "
                "number, or name a group on the map."
            )
        unreadable = len(self.features.skipped) if self.features is not None else 0
        if unreadable:
            lines.append(
                f"{unreadable} photo(s) to sort cannot be read and are left out (see Skipped files)."
            )
        if lines:
            self.notice.show_message("<br>".join(lines), "warning" if self.fit_problem else "info")
        else:
            self.notice.hide()

    def _say(self, text: str) -> None:
        """What the last action did, at the start of the progress line until the next action."""
        self._said = text
        self._update_status()

    @Slot()
    def _update_status(self, timing: str = "") -> None:
        parts = [self._said] if self._said else []
        if self.features_job.is_busy():
            parts.append(f"{self._progress_text}… {timing or self.clock.text()}")
        elif self.features is not None:
            parts.append(f"Sorted {self.session.sorted_count} · {self.to_sort()} left to sort")
            accuracy = self.proposals.estimated_accuracy if self.proposals is not None else None
            if accuracy is not None and self.proposals is not None:
                parts.append(
                    f"estimated accuracy so far {accuracy:.0%} "
                    f"(cross-validated on the {self.proposals.labeled} labelled photos)"
                )
            if self.fit_job.is_busy():
                parts.append("updating the suggestions…")
        elif self.report is not None:
            parts.append(f"{self.to_sort()} photos to sort")
        self.status.setText(" · ".join(parts))

    @Slot()
    def _update(self) -> None:
        busy = self.features_job.is_busy()
        selected = self.grid.selected_paths() if self.features is not None else []
        proposals = self.proposal_of()
        self.start_button.setVisible(not busy and self.features is None and self.report is not None)
        self.cancel_button.setVisible(busy or self.map_side.is_busy())
        self.cancel_button.setEnabled(not (self.features_job.stopping or self.map_side.map_job.stopping))
        for button in (self.assign_button, self.new_class_button, self.skip_button):
            button.setEnabled(bool(selected))
        self.accept_button.setEnabled(any(p in proposals for p in selected))
        threshold, skipped = self.sure_spin.value(), self.session.skipped
        sure = sum(p.confidence >= threshold and path not in skipped for path, p in proposals.items())
        self.sure_button.setText(f"Accept all sure ({sure})…")
        self.sure_button.setEnabled(sure > 0)
        self.undo_button.setEnabled(bool(self.session.steps))
        self.map_side.setVisible(self.map_toggle.isChecked())
        self._update_status()

    # -- acting ------------------------------------------------------------------------------------
    def _move(self, choices: list[tuple[Path, str]], what: str) -> bool:
        """Move ``choices`` (photo, class) as one batch; a refusal shows one line and changes nothing."""
        from engine.core.errors import TransferStudioError

        if self.report is None or self.features is None or not choices:
            return False
        following = self._next_after([p for p, _ in choices])
        try:
            moves = self.session.move(choices)
        except (TransferStudioError, OSError) as exc:
            self.error.show_message("<b>Nothing was moved:</b>", "error", detail=friendly_error(exc))
            return False
        self.error.hide()
        self._moved(moves, what, [following] if following is not None else [])
        return True

    def _moved(self, moves: list[Move], what: str, select: list[Path]) -> None:
        """After a batch or its undo (``moves`` as done): the map follows, the head refits, the Data
        tab scans again."""
        self.map_side.renamed([(old, new) for old, new, _ in moves])
        self._refresh()
        if select:
            self.grid.select_paths(select, select[0])
        self._say(what)
        self.start_fit()
        self.datasetEdited.emit()

    def _next_after(self, paths: Sequence[Path]) -> Path | None:
        """The photo the grid goes to after ``paths`` leave it (the next one, else the one before)."""
        order = [item.path for item in self.grid.photos.items()]
        leaving = set(paths)
        rows = [i for i, p in enumerate(order) if p in leaving]
        if not rows:
            return None
        after = [p for p in order[max(rows) + 1 :] if p not in leaving]
        before = [p for p in order[: min(rows)] if p not in leaving]
        return after[0] if after else (before[-1] if before else None)

    @Slot(int)
    def assign_class(self, index: int) -> None:
        """Put the selected photos in the ``index``-th class (keys 1-9)."""
        classes, paths = self.classes(), self.grid.selected_paths()
        if self.features is None or not paths:
            return
        if not 0 <= index < len(classes):
            self._say(f"There is no class {index + 1}: the dataset has {len(classes)}")
            return
        self._move(
            [(p, classes[index]) for p in paths], f"Moved {len(paths)} photo(s) into '{classes[index]}'"
        )

    @Slot()
    def accept_selected(self) -> None:
        """Accept the suggestion of each selected photo (Enter)."""
        proposals = self.proposal_of()
        chosen = [(p, proposals[p].suggested) for p in self.grid.selected_paths() if p in proposals]
        if chosen:
            self._move(chosen, f"Accepted {len(chosen)} suggestion(s)")
        elif self.features is not None:
            self._say("No suggestion for the selected photo(s) yet: press a class's number")

    @Slot()
    def skip_selected(self) -> None:
        """Leave the selected photos for later (X); Undo brings them back."""
        paths = self.grid.selected_paths() if self.features is not None else []
        following = self._next_after(paths)
        if self.session.skip(paths):
            self._fill_grid()
            if following is not None:
                self.grid.select_paths([following], following)
            self._update()

    @Slot()
    def new_class(self) -> None:
        """Put the selected photos in a class named here (checked as a folder name)."""
        paths = self.grid.selected_paths()
        if self.features is None or not paths:
            return
        name = self._ask_class(f"A name for the new class of the {len(paths)} selected photo(s):", [])
        if name:
            self._move([(p, name) for p in paths], f"Moved {len(paths)} photo(s) into '{name}'")

    def _ask_class(self, prompt: str, choices: list[str]) -> str:
        """A class name the user typed or picked, checked as a folder name ("" when cancelled)."""
        from engine.core.errors import TransferStudioError
        from engine.sorting.journal import check_class_name

        if choices:
            text, ok = QInputDialog.getItem(self, "Name the photos", prompt, choices, 0, True)
        else:
            text, ok = QInputDialog.getText(self, "New class", prompt)
        if not ok or not str(text).strip():
            return ""
        try:
            return check_class_name(str(text))
        except TransferStudioError as exc:
            self.error.show_message("<b>Not a class name:</b>", "error", detail=friendly_error(exc))
            return ""

    def sure_candidates(self) -> list[Proposal]:
        """The photos "Accept all sure" would move: at or above the threshold, not skipped."""
        if self.proposals is None:
            return []
        left, skipped = self.proposal_of(), self.session.skipped
        return [
            p for p in self.proposals.sure(self.sure_spin.value()) if p.path in left and p.path not in skipped
        ]

    @Slot()
    def accept_sure(self) -> None:
        """Accept every suggestion at or above the threshold, after a confirmation that gives the count
        and the number of mistakes to expect."""
        from engine.sorting.proposals import expected_mistakes

        chosen = self.sure_candidates()
        if not chosen or self.proposals is None:
            return
        threshold = self.sure_spin.value()
        skipped = len(self.session.skipped & {p.path for p in self.proposals.sure(threshold)})
        text = (
            f"Move {len(chosen)} photo(s) whose suggestion is at least {threshold:.2f} sure into the "
            f"suggested classes?\n\nAbout {expected_mistakes(chosen):.1f} of them are expected to be "
            "wrong (the sum of 1 − confidence). Undo puts them all back."
            + (f"\n\nThe {skipped} photo(s) you skipped are left out." if skipped else "")
        )
        if QMessageBox.question(self, "Accept all sure suggestions", text) != QMessageBox.StandardButton.Yes:
            return
        self._move([(p.path, p.suggested) for p in chosen], f"Accepted {len(chosen)} sure suggestion(s)")

    @Slot()
    def undo(self) -> None:
        """Undo the last skip (in the view) or batch of moves (through the journal)."""
        from engine.core.errors import TransferStudioError

        if self.report is None or not self.session.steps:
            return
        try:
            step = self.session.undo(self.report.classes)
        except (TransferStudioError, OSError) as exc:
            self.error.show_message("<b>Cannot undo:</b>", "error", detail=friendly_error(exc))
            return
        self.error.hide()
        if step is None:
            self._update()
        elif step.kind == "skip":
            self._fill_grid()
            self.grid.select_paths(step.paths, step.paths[0])
            self._say(f"{len(step.paths)} photo(s) no longer skipped")
        else:
            self._moved([(new, old, c) for old, new, c in step.moves], f"Put {len(step.moves)} photo(s) back",
                        step.paths)  # fmt: skip

    # -- the grid's menu, folders and the map --------------------------------------------------------
    @Slot(QPoint)
    def _grid_menu(self, pos: QPoint) -> None:
        if self.features is None:
            return
        menu = QMenu(self)
        menu.addAction("Accept suggestion\tEnter").triggered.connect(self.accept_selected)
        menu.addMenu(self.assign_menu).setText("Put in class")
        menu.addAction("Skip\tX").triggered.connect(self.skip_selected)
        menu.addSeparator()
        menu.addAction("Undo\tCtrl+Z").triggered.connect(self.undo)
        menu.exec(self.grid.viewport().mapToGlobal(pos))

    @Slot()
    def choose_folder(self) -> None:
        """Sort the photos of a folder the user picks (the Data tab scans again with it)."""
        start = str(self.report.root) if self.report is not None else ""
        folder = QFileDialog.getExistingDirectory(self, "Folder of photos to sort", start)
        if folder:
            self.unlabeledFolderChosen.emit(folder)

    @Slot(list)
    def _on_map_selection(self, unsorted: list[Path]) -> None:
        """The map's selection, in the grid too (keys 1-9 then put it in a class)."""
        self.grid.select_paths(unsorted, unsorted[0] if unsorted else None)
        self._update()

    @Slot(list, int)
    def name_photos(self, unsorted: list[Path], sorted_already: int = 0) -> None:
        """Name the map's selection as a class: its unsorted photos move there as one batch (asks first)."""
        if self.features is None or not unsorted:
            return
        name = self._ask_class(
            f"The class of the {len(unsorted)} unsorted photo(s) selected (pick one or type a new name):",
            self.classes(),
        )
        if not name:
            return
        text = f"Move {len(unsorted)} unsorted photo(s) into '{name}'?" + (
            f"\n\nThe {sorted_already} photo(s) already sorted stay where they are." if sorted_already else ""
        )
        if QMessageBox.question(self, "Name the selection", text) != QMessageBox.StandardButton.Yes:
            return
        if self._move([(p, name) for p in unsorted], f"Moved {len(unsorted)} photo(s) into '{name}'"):
            self.map_side.map.select([])

    def open_capture(self, root: Path | None = None) -> CaptureDialog | None:
        """Capture into class: the camera dialog, its photos going into the class folders of this
        dataset (or of ``root``, a folder that is not a dataset yet)."""
        folder = root if root is not None else self.report.root if self.report is not None else None
        if folder is None:
            return None
        if self.capture_dialog is not None and self.capture_dialog.root != folder:
            self.close_capture()
        if self.capture_dialog is None:
            from engine.sorting.capture import existing_classes

            classes = self.classes() if root is None else existing_classes(folder)
            self.capture_dialog = CaptureDialog(folder, classes, self)
            self.capture_dialog.finished.connect(self._on_capture_closed)
        self.capture_dialog.show()
        self.capture_dialog.raise_()
        if not self.capture_dialog.panel.is_running():
            self.capture_dialog.start()
        return self.capture_dialog

    def close_capture(self) -> None:
        """Close Capture into class (its camera goes off)."""
        if self.capture_dialog is not None:
            self.capture_dialog.reject()

    @Slot()
    def _capture_clicked(self) -> None:
        self.open_capture()

    @Slot()
    def _on_capture_closed(self) -> None:
        dialog, self.capture_dialog = self.capture_dialog, None
        if dialog is None:
            return
        dialog.deleteLater()
        if dialog.saved:
            self._say(f"Captured {len(dialog.saved)} photo(s) into their class folders")
            self.datasetEdited.emit()  # the Data tab scans again: the new photos count

    def shutdown(self) -> None:
        self.close_capture()
        self.features_job.cancel()
        self.fit_job.cancel()
        self.grid.shutdown()
        self.map_side.shutdown()
