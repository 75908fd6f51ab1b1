"""The sort view's map side: the photo map of every photo (labelled and unsorted), its controls, and
the jobs that place the photos (:func:`engine.sorting.photo_map.project`, progress and Cancel) and
suggest groups (:func:`engine.sorting.photo_map.suggest_groups`, a count the user sets).

Points are coloured by class (unsorted ones grey), by suggestion, or by group; a lasso (the Lasso
button, or Shift+drag), a click or a picked group selects them, and ``nameRequested`` asks the sort
panel to name the unsorted photos of the selection as a class (the panel moves them). The map follows
the photos the panel moves (:meth:`SortMap.renamed`) without placing them again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QColor, QShowEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from gui.background.jobs import FunctionWorker, Job, ThreadRunner
from gui.tabs.sort_state import followed
from gui.views.class_colours import UNSORTED, class_colour
from gui.views.photo_map import PhotoMap

if TYPE_CHECKING:
    from engine.sorting.features import PhotoFeatures
    from engine.sorting.proposals import Proposal

logger = logging.getLogger(__name__)

COLOURINGS = ("Colour by class", "Colour by suggestion", "Colour by group")
GROUPS_MODE = 2


def all_paths(features: PhotoFeatures) -> list[Path]:
    """Every photo of ``features``: the labelled ones, then those to sort (the map's order)."""
    return [*features.labeled_paths, *features.unlabeled_paths]


def _project(features: PhotoFeatures, worker: FunctionWorker) -> np.ndarray:
    import torch

    from engine.sorting.photo_map import project

    everything = torch.cat([features.labeled, features.unlabeled])
    return project(everything, on_progress=worker.report_progress, should_stop=lambda: worker.abort_requested)


def _groups(features: PhotoFeatures, count: int) -> list[int]:
    import torch

    from engine.sorting.photo_map import suggest_groups

    return suggest_groups(torch.cat([features.labeled, features.unlabeled]), count)


class SortMap(QWidget):
    """The map and its controls; ``selectionChanged(unsorted paths)``, ``nameRequested(unsorted
    paths, number of sorted photos also selected)``."""

    selectionChanged = Signal(list)
    nameRequested = Signal(list, int)
    busyChanged = Signal()

    def __init__(self, runner: ThreadRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sortMapSide")
        self.features: PhotoFeatures | None = None
        self.proposals: Mapping[Path, Proposal] = {}
        self.classes: list[str] = []
        self._renames: list[tuple[Path, Path]] = []
        self._placed: tuple[list[Path], np.ndarray] | None = None
        self._groups: dict[Path, int] = {}
        self._suspects: set[Path] = set()  # the dataset doctor's likely wrong labels
        self._stopped = False  # the user cancelled the placing: wait until the map is shown again
        self.map_job = Job(
            runner, "sort-map", self, on_progress=self._on_progress, on_returned=self._on_placed,
            on_errored=self._on_failed, on_aborted=self._on_cancelled, on_done=self.busyChanged.emit,
        )  # fmt: skip
        self.groups_job = Job(
            runner, "sort-groups", self, on_returned=self._on_groups, on_errored=self._on_failed,
            on_done=self._update,
        )  # fmt: skip
        self._build()
        self._update()

    def _build(self) -> None:
        self.map = PhotoMap()
        self.map.selectionChanged.connect(self._on_selection)
        self.map.pointClicked.connect(self._on_point_clicked)
        self.colour_picker = QComboBox()
        self.colour_picker.setObjectName("mapColourPicker")
        self.colour_picker.setAccessibleName("Colour the map by")
        self.colour_picker.addItems(COLOURINGS)
        self.colour_picker.currentIndexChanged.connect(self._on_colouring)
        self.group_count = QSpinBox()
        self.group_count.setObjectName("mapGroupCount")
        self.group_count.setAccessibleName("Number of groups to suggest")
        self.group_count.setToolTip("How many groups to suggest")
        self.group_count.setRange(2, 50)
        self.group_count.setValue(6)
        self.groups_button = QPushButton("Suggest groups")
        self.groups_button.setObjectName("mapGroupsButton")
        self.groups_button.setToolTip("Split the photos into groups that look alike (k-means)")
        self.groups_button.clicked.connect(self.suggest_groups)
        self.group_picker = QComboBox()
        self.group_picker.setObjectName("mapGroupPicker")
        self.group_picker.setAccessibleName("Select a suggested group")
        self.group_picker.setToolTip("Suggest groups first; then pick one to select its photos")
        self.group_picker.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.group_picker.setMinimumContentsLength(8)
        self.group_picker.activated.connect(self._on_group_picked)
        self.lasso_button = QPushButton("Lasso")
        self.lasso_button.setObjectName("mapLassoButton")
        self.lasso_button.setCheckable(True)
        self.lasso_button.setToolTip("Draw around photos to select them (or Shift+drag)")
        self.lasso_button.toggled.connect(self.map.set_lasso_mode)
        self.name_button = QPushButton("Name selection…")
        self.name_button.setObjectName("mapNameButton")
        self.name_button.setToolTip("Put the selected unsorted photos in a class (new or existing)")
        self.name_button.clicked.connect(self.request_name)
        self.status = QLabel()
        self.status.setObjectName("mapStatus")
        self.status.setWordWrap(True)
        row1 = QHBoxLayout()
        row1.addWidget(self.colour_picker)
        row1.addWidget(self.group_count)
        row1.addWidget(self.groups_button)
        row1.addStretch(1)
        row2 = QHBoxLayout()
        row2.addWidget(self.group_picker, 1)
        row2.addWidget(self.lasso_button)
        row2.addWidget(self.name_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row1)
        layout.addLayout(row2)
        layout.addWidget(self.map, 1)
        layout.addWidget(self.status)

    # -- state from the panel ------------------------------------------------------------------------
    def reset(self) -> None:
        self.map_job.cancel()
        self.groups_job.cancel()
        self.features, self.proposals, self.classes = None, {}, []
        self._renames.clear()
        self._placed, self._groups = None, {}
        self._stopped = False
        self.group_picker.clear()
        self.map.set_points(np.zeros((0, 2)), [], [])
        self.status.setText("")
        self._update()

    def show_state(
        self, features: PhotoFeatures | None, proposals: Mapping[Path, Proposal], classes: Sequence[str]
    ) -> None:
        """The panel's photos, proposals and class order: recolour, and place new photos if shown."""
        self.features, self.proposals, self.classes = features, proposals, list(classes)
        if (
            features is not None
            and self._placed is not None
            and set(self._placed[0]) != set(all_paths(features))
        ):
            self._placed = None  # other photos than those placed: place them again
        self._colour()
        self._update()
        if self.isVisible():
            self.place()

    def set_suspects(self, paths: Sequence[Path]) -> None:
        """Mark on the map the photos whose label the dataset doctor found likely wrong."""
        self._suspects = {Path(p) for p in paths}
        self._mark()

    def _mark(self) -> None:
        if self._placed is not None:
            self.map.set_marked([i for i, p in enumerate(self._placed[0]) if p in self._suspects])

    def renamed(self, renames: Sequence[tuple[Path, Path]]) -> None:
        """The panel moved photos (old path, new path): the same points, under their new paths."""
        self._renames += renames
        if self._placed is not None:
            self._placed = (followed(self._placed[0], renames), self._placed[1])
            self.map.set_paths(self._placed[0])
        if self._groups:
            new = dict(renames)
            self._groups = {new.get(p, p): g for p, g in self._groups.items()}

    def is_busy(self) -> bool:
        return self.map_job.is_busy()

    def cancel(self) -> None:
        if self.map_job.is_busy():
            self._stopped = True
            self.map_job.stop()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._stopped = False
        self.place()

    # -- placing the photos --------------------------------------------------------------------------
    def place(self) -> None:
        """Place every photo on the map (a worker), unless placed already or on its way."""
        if self.features is None or self._placed is not None or self.map_job.is_busy() or self._stopped:
            return
        features, paths, start = self.features, all_paths(self.features), len(self._renames)
        self.status.setText("Placing the photos on the map…")

        def work(worker: FunctionWorker) -> tuple[list[Path], int, np.ndarray]:
            return paths, start, _project(features, worker)

        self.map_job.start(work)
        self.busyChanged.emit()

    def _on_progress(self, done: int, total: int) -> None:
        if not self.map_job.stopping:
            self.status.setText(f"Placing the photos on the map… {done / max(1, total):.0%}")

    def _on_placed(self, result: tuple[list[Path], int, np.ndarray]) -> None:
        paths, start, xy = result
        paths = followed(paths, self._renames[start:])
        self._placed = (paths, xy)
        self.map.set_points(xy, paths, self._colours())
        self._mark()
        suspects = len(self.map.marked())
        self.status.setText(
            f"{len(paths)} photos; those that look alike lie close together. Hover for the photo; lasso "
            "(Shift+drag) or pick a group, then Name selection…"
            + (f" Diamonds: {suspects} likely wrong label(s) the dataset doctor found." if suspects else "")
        )

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"No map: {message}")

    def _on_cancelled(self) -> None:
        self.status.setText("Map cancelled: hide and show the map to place the photos again.")

    def placed_paths(self) -> list[Path]:
        """The photos on the map, in the order of its points."""
        return list(self._placed[0]) if self._placed is not None else []

    # -- colours and groups --------------------------------------------------------------------------
    def _colours(self) -> list[QColor]:
        if self._placed is None or self.features is None:
            return []
        if self.colour_picker.currentIndex() == GROUPS_MODE:
            return [class_colour(self._groups[p]) if p in self._groups else UNSORTED for p in self._placed[0]]
        label = dict(zip(self.features.labeled_paths, self.features.labels, strict=True))
        by_suggestion = self.colour_picker.currentIndex() == 1
        colours = []
        for path in self._placed[0]:
            proposal = self.proposals.get(path) if by_suggestion else None
            if path in label:
                colours.append(class_colour(label[path]))
            elif proposal is not None and proposal.suggested in self.classes:
                colours.append(class_colour(self.classes.index(proposal.suggested)).lighter(150))
            else:
                colours.append(UNSORTED)
        return colours

    def _colour(self) -> None:
        if self._placed is not None:
            self.map.set_colours(self._colours())

    @Slot(int)
    def _on_colouring(self, mode: int) -> None:
        if mode == GROUPS_MODE and not self._groups:
            self.suggest_groups()
        self._colour()

    @Slot()
    def suggest_groups(self) -> None:
        """k-means groups of every photo, as many as the spin box says; listed and coloured."""
        if self.features is None:
            return
        features, paths, count = self.features, all_paths(self.features), self.group_count.value()
        start = len(self._renames)
        self.status.setText("Finding groups…")

        def work(_worker: FunctionWorker) -> tuple[list[Path], int, list[int]]:
            return paths, start, _groups(features, count)

        self.groups_job.start(work)
        self._update()

    def _on_groups(self, result: tuple[list[Path], int, list[int]]) -> None:
        paths, start, labels = result
        self._groups = dict(zip(followed(paths, self._renames[start:]), labels, strict=True))
        unsorted = set(self.features.unlabeled_paths) if self.features is not None else set()
        self.group_picker.clear()
        self.group_picker.addItem("Select a group…", -1)
        for group in sorted(set(labels)):
            members = [p for p, g in self._groups.items() if g == group]
            left = sum(p in unsorted for p in members)
            self.group_picker.addItem(f"Group {group + 1}: {len(members)} photos, {left} unsorted", group)
        self.status.setText(f"{len(set(labels))} groups: pick one, or click a point, to select its group.")
        if self.colour_picker.currentIndex() != GROUPS_MODE:
            self.colour_picker.setCurrentIndex(GROUPS_MODE)
        else:
            self._colour()

    def select_group(self, group: int) -> list[int]:
        """Select the points of suggested ``group``; returns their indices."""
        placed = self.placed_paths()
        indices = [i for i, p in enumerate(placed) if self._groups.get(p) == group]
        self.map.select(indices)
        return indices

    @Slot(int)
    def _on_group_picked(self, row: int) -> None:
        group = self.group_picker.itemData(row)
        if isinstance(group, int) and group >= 0:
            self.select_group(group)

    @Slot(int)
    def _on_point_clicked(self, index: int) -> None:
        placed = self.placed_paths()
        if self.colour_picker.currentIndex() == GROUPS_MODE and index < len(placed):
            group = self._groups.get(placed[index])
            if group is not None:
                self.select_group(group)

    # -- the selection -------------------------------------------------------------------------------
    def selected_unsorted(self) -> list[Path]:
        """The unsorted photos among the selected points."""
        if self.features is None:
            return []
        left, placed = set(self.features.unlabeled_paths), self.placed_paths()
        return [placed[i] for i in self.map.selection() if i < len(placed) and placed[i] in left]

    @Slot(list)
    def _on_selection(self, indices: list[int]) -> None:
        unsorted = self.selected_unsorted()
        if indices:
            self.status.setText(
                f"{len(indices)} selected, {len(unsorted)} unsorted: Name selection… moves the unsorted ones."
            )
        self._update()
        self.selectionChanged.emit(unsorted)

    @Slot()
    def request_name(self) -> None:
        unsorted = self.selected_unsorted()
        if not unsorted:
            self.status.setText("Nothing to move: the selected photos are all sorted already.")
            return
        self.nameRequested.emit(unsorted, len(self.map.selection()) - len(unsorted))

    @Slot()
    def _update(self) -> None:
        self.groups_button.setEnabled(self.features is not None and not self.groups_job.is_busy())
        self.group_picker.setEnabled(bool(self._groups))
        self.name_button.setEnabled(bool(self.selected_unsorted()))

    def shutdown(self) -> None:
        self.map_job.cancel()
        self.groups_job.cancel()
        self.map.shutdown()
