"""The Data tab's dataset doctor: run :func:`engine.audit.run.run_audit` off the GUI thread
(progress, Cancel), list what it found, show the photos of a finding, and act on them without ever
deleting a file: exclude photos from training, keep one copy of a duplicate, move a photo to the
suggested class (with Undo), include excluded photos again.

Every change goes through :mod:`engine.data.exclusions`; the panel then emits ``datasetEdited`` so the
Data tab scans the folder again (counts, and the report that training uses, follow at once).
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.background.jobs import PROGRESS_INTERVAL_S, Job, ThreadRunner, Worker
from gui.views.progress_clock import ProgressClock
from gui.views.thumbnails import ThumbnailGrid
from gui.views.widgets import MessageBanner, format_duration, hint_label

if TYPE_CHECKING:
    from engine.audit.run import AuditReport
    from engine.data.datasets import DatasetReport
    from engine.data.exclusions import Move

logger = logging.getLogger(__name__)

#: The backbone whose embeddings the panel uses: built in (no download), and the Train tab's default,
#: so the features it computes are the ones a default training run then finds in the cache.
AUDIT_MODEL = "efficientnet_lite0"
STAGE_TEXT = {"features": "Computing the photos' features", "hashing": "Reading and measuring the photos"}
#: Each stage's share of the whole bar, in the order they run: photos through the backbone, photos
#: whose features were cached (decoded and measured only), then the label folds (under a second).
STAGE_SPAN = {"features": (0.0, 0.9), "hashing": (0.0, 0.95), "labels": (0.95, 1.0)}
#: The bar's steps (its percentage is what it shows).
BAR_STEPS = 1000
QUALITY_TEXT = {
    "dark": "very dark",
    "bright": "very bright",
    "blurry": "blurry",
    "tiny": "tiny",
    "extreme_aspect": "extreme aspect ratio",
    "uniform": "nearly uniform",
    "unreadable": "unreadable",
}


class AuditWorker(Worker):
    """Runs the audit of one dataset folder; yields ``(text, done, total)`` as it goes."""

    def __init__(self, root: Path, seed: int = 0, val_fraction: float = 0.2) -> None:
        super().__init__()
        self.root = root
        self.seed = seed
        self.val_fraction = val_fraction
        self._last = 0.0

    def _progress(self, stage: str, done: int, total: int) -> None:
        self.check_abort()
        now = time.monotonic()
        if done >= total or now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            self.yielded.emit((stage, done, total))

    def work(self) -> AuditReport:
        from engine.audit.run import run_audit
        from engine.core.device import resolve_device

        return run_audit(
            self.root,
            model=AUDIT_MODEL,
            device=resolve_device("auto").type,
            seed=self.seed,
            val_fraction=self.val_fraction,
            on_progress=self._progress,
            should_stop=lambda: self.abort_requested,
        )


@dataclass
class Finding:
    """What a row of the findings tree stands for."""

    kind: str  # "leak", "conflict", "duplicate", "label", "quality", "excluded"
    paths: list[str]  # relative to the dataset folder
    tips: list[str]
    given: str = ""
    suggested: str = ""
    done: list[str] = field(default_factory=list)  # what the user did about it (shown in the tree)


class AuditPanel(QWidget):
    """Run the audit, browse its findings with thumbnails, and act on them."""

    datasetEdited = Signal()  # the exclusion list or a class folder changed: scan again
    suspectsFound = Signal(list)  # the photos (absolute paths) whose label looks wrong, after an audit

    def __init__(self, runner: ThreadRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("auditPanel")
        self.runner = runner
        self.report: DatasetReport | None = None
        self.audit: AuditReport | None = None
        self.job = Job(
            runner,
            "audit",
            self,
            on_yielded=self._on_stage,
            on_returned=self._on_audited,
            on_errored=self._on_failed,
            on_aborted=self._on_cancelled,
            on_done=self._on_done,
        )
        self.moves: list[tuple[Move, Finding, QTreeWidgetItem]] = []  # the Undo stack
        self.excluded: set[str] = set()  # the dataset's excluded photos, relative: what the buttons offer
        self._build()
        self._update_buttons()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.run_button = QPushButton("Check the dataset")
        self.run_button.setObjectName("auditRunButton")
        self.run_button.setAccessibleName("Run the dataset doctor")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("auditCancelButton")
        self.cancel_button.setAccessibleName("Cancel the dataset doctor")
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel(
            "Finds copies of a photo in train and val (they make validation look better than the model "
            "is), the same photo under two classes, duplicates, photos that look like another class, and "
            "dark, blurry or tiny photos. Nothing is changed until you say so, and no file is ever deleted."
        )
        self.status.setObjectName("auditStatus")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setObjectName("auditProgress")
        self.progress.setAccessibleName("Dataset doctor progress")
        self.progress.setRange(0, BAR_STEPS)
        self.progress.hide()
        self.clock = ProgressClock(self.progress, self)  # one bar over every stage, elapsed, estimate
        self.clock.ticked.connect(self._show_timing)
        self._stage_text = ""
        self.error = MessageBanner("auditError")
        top = QHBoxLayout()
        top.addWidget(self.run_button)
        top.addWidget(self.cancel_button)
        top.addWidget(self.progress, 1)

        self.tree = QTreeWidget()
        self.tree.setObjectName("auditFindings")
        self.tree.setAccessibleName("Dataset doctor findings")
        self.tree.setHeaderLabels(["Finding", "Detail"])
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.itemSelectionChanged.connect(self._on_finding_selected)
        self.grid = ThumbnailGrid()
        self.grid.setObjectName("auditThumbnails")
        self.grid.setAccessibleName("Photos of the selected finding")
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.selectionModel().selectionChanged.connect(self._update_buttons)

        self.exclude_button = self._action(
            "Exclude",
            "auditExcludeButton",
            self.exclude_selected,
            "Leave the selected photos out of training",
        )
        self.keep_button = self._action(
            "Keep this copy", "auditKeepButton", self.keep_selected,
            "Keep the selected copy; exclude the others from training",
        )  # fmt: skip
        self.include_button = self._action(
            "Include again", "auditIncludeButton", self.include_selected,
            "Use the selected excluded photos for training again",
        )  # fmt: skip
        self.move_button = self._action(
            "Move to suggested class", "auditMoveButton", self.move_suggested,
            "Move the photo into the class folder the doctor suggests",
        )  # fmt: skip
        self.undo_button = self._action(
            "Undo move", "auditUndoButton", self.undo, "Put the last moved photo back"
        )
        actions = QGridLayout()
        for index, button in enumerate((self.exclude_button, self.keep_button, self.include_button,
                                        self.move_button, self.undo_button)):  # fmt: skip
            actions.addWidget(button, index // 3, index % 3)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        self.detail = QLabel()
        self.detail.setObjectName("auditDetail")
        self.detail.setWordWrap(True)
        right_layout.addWidget(self.detail)
        right_layout.addWidget(self.grid, 1)
        right_layout.addLayout(actions)
        right_layout.addWidget(
            hint_label(
                "Select a finding, then the photo(s) to act on (for copies: the one to keep). Excluded "
                "photos stay where they are; training leaves them out (the list is kept outside the "
                "dataset folder). Double-click a photo to open it."
            )
        )
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("auditSplitter")
        splitter.addWidget(self.tree)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addWidget(splitter, 1)

    def _action(self, text: str, name: str, slot: Any, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.setAccessibleName(tip)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # -- the dataset -------------------------------------------------------------------------------
    def set_dataset(self, report: DatasetReport | None) -> None:
        """A new scan of the Data tab: keep the findings when it is the same folder, else clear them."""
        same = report is not None and self.report is not None and report.root == self.report.root
        self.report = report
        self._set_excluded(report.excluded if report is not None else [])
        if not same:
            self.cancel()
            self.audit = None
            self.moves.clear()
            self.tree.clear()
            self.grid.set_paths([])
        elif self.audit is not None:
            self._show_excluded()
        self._update_buttons()

    def _set_excluded(self, paths: Iterable[Path]) -> None:
        """The excluded photos (absolute paths), as the last scan or edit left them."""
        root = Path(self.report.root).resolve() if self.report is not None else None
        self.excluded = set()
        for path in paths:
            try:
                self.excluded.add(Path(path).resolve().relative_to(root).as_posix() if root else str(path))
            except ValueError:
                continue

    def is_running(self) -> bool:
        return self.job.is_busy()

    # -- running -----------------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        if self.report is None or self.is_running():
            return
        self.error.hide()
        worker = AuditWorker(self.report.root, seed=self.report.seed, val_fraction=self.report.val_fraction)
        self._stage_text = "Starting the dataset doctor"
        self.progress.setFormat("%p%")
        self.progress.show()
        self.clock.start()
        if not self.job.start(worker):
            self.clock.finish(completed=False)
            self.progress.hide()
        self._update_buttons()

    @Slot()
    def cancel(self) -> None:
        if self.job.is_busy():
            self.job.stop()
            self.status.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    def _on_stage(self, report: tuple[str, int, int]) -> None:
        stage, done, total = report
        if self.job.stopping:
            return
        low, high = STAGE_SPAN.get(stage, (0.0, 1.0))
        self._stage_text = f"{STAGE_TEXT.get(stage, stage.capitalize())}: {done} / {total}"
        self.clock.measure(low + (high - low) * done / max(total, 1))

    def _show_timing(self, timing: str) -> None:
        if self.clock.is_running() and not self.job.stopping:
            self.status.setText(f"{self._stage_text}… {timing}")

    def _on_audited(self, audit: AuditReport) -> None:
        waited = self.clock.elapsed()  # the wall time the user waited, start-up included
        self.clock.finish()
        self.audit = audit
        self.moves.clear()
        self._fill_tree()
        self.suspectsFound.emit([audit.root / issue.path for issue in audit.label_issues])
        tops = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        found = sum(top.childCount() for top in tops if top is not None)
        reused = " (features from the cache)" if audit.features_computed == 0 else ""
        self.status.setText(
            f"Checked {len(audit.images)} photos in {format_duration(waited)}{reused}: "
            + (f"{found} finding(s). Select one to see its photos." if found else "nothing to report.")
        )

    def _on_failed(self, message: str) -> None:
        self.clock.finish(completed=False)
        self.error.show_message("<b>The dataset doctor failed:</b>", "error", detail=message)
        self.status.setText("")

    def _on_cancelled(self) -> None:
        self.clock.finish(completed=False)
        self.status.setText("Cancelled. Nothing was changed.")

    def _on_done(self) -> None:
        self.clock.finish(completed=False)  # stops the clock if no other ending did
        self.progress.hide()
        self._update_buttons()

    # -- the findings tree -------------------------------------------------------------------------
    def _fill_tree(self) -> None:
        assert self.audit is not None
        audit = self.audit
        self.tree.clear()
        split_of = {image.path: image for image in audit.images}

        def tip(path: str) -> str:
            image = split_of.get(path)
            return f"{path}\n{image.split} · {image.label}" if image else path

        def group_detail(group: Any) -> str:
            how = "exact copies" if group.exact else "near copies"
            where = " / ".join(f"{m.split}:{m.label}" for m in group.members)
            return f"{how} · {where}"

        sections: list[tuple[str, str, list[tuple[str, str, Finding]]]] = []
        groups = {"leak": [], "conflict": [], "duplicate": []}  # type: dict[str, list[tuple[str, str, Finding]]]
        for group in audit.duplicates:
            kind = "leak" if group.cross_split else "conflict" if group.conflicting_labels else "duplicate"
            paths = group.paths
            finding = Finding(kind, paths, [tip(p) for p in paths])
            groups[kind].append((Path(paths[0]).name + (f" + {len(paths) - 1}" if len(paths) > 1 else ""),
                                 group_detail(group), finding))  # fmt: skip
        sections.append(("leak", "Leaks: the same photo in train and val", groups["leak"]))
        sections.append(("conflict", "The same photo under two labels", groups["conflict"]))
        sections.append(("duplicate", "Duplicates", groups["duplicate"]))
        labels = [
            (Path(i.path).name, f"labelled {i.given}, looks like {i.suggested} ({i.confidence:.0%})",
             Finding("label", [i.path], [tip(i.path)], given=i.given, suggested=i.suggested))
            for i in audit.label_issues
        ]  # fmt: skip
        sections.append(("label", "Likely wrong labels", labels))
        quality = [
            (Path(q.path).name, QUALITY_TEXT.get(q.issue, q.issue) + (f" ({q.value:.3g})" if isinstance(q.value, float) else ""),
             Finding("quality", [q.path], [tip(q.path)]))
            for q in audit.quality
        ]  # fmt: skip
        sections.append(("quality", "Photo quality", quality))
        bold = QFont()
        bold.setBold(True)
        for kind, title, rows in sections:
            top = QTreeWidgetItem([f"{title} ({len(rows)})", ""])
            top.setFont(0, bold)
            top.setData(0, Qt.ItemDataRole.UserRole, kind)
            self.tree.addTopLevelItem(top)
            for name, detail, finding in rows:
                item = QTreeWidgetItem([name, detail])
                item.setData(0, Qt.ItemDataRole.UserRole, finding)
                item.setToolTip(0, "\n".join(finding.paths))
                item.setToolTip(1, detail)
                top.addChild(item)
            top.setExpanded(bool(rows) and kind in ("leak", "conflict", "label"))
        balance = QTreeWidgetItem(["Class balance", self._balance_text(audit)])
        balance.setFont(0, bold)
        self.tree.addTopLevelItem(balance)
        self._show_excluded()
        # The names column takes at most half the tree, so the Detail column never vanishes (and each
        # row's whole text is its tooltip and shows above the photos when selected).
        self.tree.resizeColumnToContents(0)
        half = max(120, self.tree.viewport().width() // 2)
        self.tree.setColumnWidth(0, min(self.tree.columnWidth(0), 320, half))

    @staticmethod
    def _balance_text(audit: AuditReport) -> str:
        per_class = ", ".join(f"{name} {sum(c.values())}" for name, c in audit.counts.items())
        ratio = "one class has no training photos" if audit.imbalance is None else f"{audit.imbalance:.1f}"
        return f"{per_class} · largest/smallest training class {ratio}"

    def _show_excluded(self) -> None:
        """The 'Excluded by you' section, from the Data tab's latest scan."""
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            if top is not None and top.data(0, Qt.ItemDataRole.UserRole) == "excluded":
                self.tree.takeTopLevelItem(i)
                break
        if self.report is None:
            return
        paths = [p.relative_to(self.report.root).as_posix() for p in self.report.excluded]
        top = QTreeWidgetItem(
            [f"Excluded by you ({len(paths)})", "left out of training; select to include again"]
        )
        bold = QFont()
        bold.setBold(True)
        top.setFont(0, bold)
        top.setData(0, Qt.ItemDataRole.UserRole, "excluded")
        if paths:
            finding = Finding("excluded", paths, paths)
            item = QTreeWidgetItem([f"{len(paths)} photo(s)", ""])
            item.setData(0, Qt.ItemDataRole.UserRole, finding)
            top.addChild(item)
        self.tree.addTopLevelItem(top)

    def selected_finding(self) -> Finding | None:
        items = self.tree.selectedItems()
        data = items[0].data(0, Qt.ItemDataRole.UserRole) if items else None
        return data if isinstance(data, Finding) else None

    @Slot()
    def _on_finding_selected(self) -> None:
        finding = self.selected_finding()
        items = self.tree.selectedItems()
        self.detail.setText(
            f"<b>{items[0].text(0)}</b>: {items[0].text(1)}" if items and items[0].text(1) else ""
        )
        if finding is None or self.report is None:
            self.grid.set_paths([])
        else:
            self.grid.set_paths([self.report.root / p for p in finding.paths], finding.tips)
            if len(finding.paths) == 1:
                self.grid.selectAll()
        self._update_buttons()

    def selected_paths(self) -> list[str]:
        """The selected photos of the grid, relative to the dataset folder."""
        finding = self.selected_finding()
        if finding is None:
            return []
        rows = sorted({index.row() for index in self.grid.selectionModel().selectedIndexes()})
        return [finding.paths[row] for row in rows if row < len(finding.paths)]

    @Slot()
    def _update_buttons(self) -> None:
        running = self.is_running()
        self.run_button.setEnabled(self.report is not None and not running)
        self.cancel_button.setEnabled(running)
        finding = self.selected_finding()
        selected = self.selected_paths()
        editable = finding is not None and not running and self.report is not None
        kind = finding.kind if finding is not None else ""
        moved = finding is not None and "moved" in finding.done
        is_group = kind in ("leak", "conflict", "duplicate")
        # By photo, whatever the finding: a photo just excluded can be included again at once.
        excluded = [p for p in selected if p in self.excluded]
        self.exclude_button.setEnabled(editable and len(excluded) < len(selected))
        self.keep_button.setEnabled(editable and is_group and len(selected) == 1)
        self.move_button.setEnabled(editable and kind == "label" and not moved)
        self.undo_button.setEnabled(bool(self.moves) and not running)
        self.include_button.setEnabled(editable and bool(excluded))

    # -- acting on findings ------------------------------------------------------------------------
    def _mark(self, text: str) -> None:
        finding = self.selected_finding()
        items = self.tree.selectedItems()
        if finding is None or not items:
            return
        finding.done.append(text)
        self._show_done(items[0], finding)

    def _show_done(self, item: QTreeWidgetItem, finding: Finding) -> None:
        detail = item.text(1).split(" — ")[0]
        item.setText(1, f"{detail} — {', '.join(finding.done)}" if finding.done else detail)
        self._refresh_detail()

    def _refresh_detail(self) -> None:
        """The selected finding's name and detail, above its photos (the tree's column may be cut)."""
        items = self.tree.selectedItems()
        text = f"<b>{html.escape(items[0].text(0))}</b>: {html.escape(items[0].text(1))}" if items else ""
        self.detail.setText(text if items and items[0].text(1) else "")

    def _edit(self, action: Any) -> bool:
        """Run one edit; a refusal (a vanished file, a name taken) is shown, never raised."""
        from engine.core.errors import TransferStudioError

        try:
            action()
        except (TransferStudioError, OSError) as exc:
            self.error.show_message("<b>Not done:</b>", "error", detail=str(exc))
            return False
        self.error.hide()
        self.datasetEdited.emit()
        return True

    @Slot()
    def exclude_selected(self) -> None:
        from engine.data.exclusions import exclude

        paths = [p for p in self.selected_paths() if p not in self.excluded]
        if self.report is None or not paths:
            return
        root = self.report.root
        if self._edit(lambda: self._set_excluded(exclude(root, paths))):
            self._mark(f"{len(paths)} excluded")
            self.status.setText(f"Excluded {len(paths)} photo(s) from training.")
        self._update_buttons()

    @Slot()
    def keep_selected(self) -> None:
        from engine.data.exclusions import exclude

        finding, keep = self.selected_finding(), self.selected_paths()
        if self.report is None or finding is None or len(keep) != 1:
            return
        others = [p for p in finding.paths if p != keep[0]]
        root = self.report.root
        if self._edit(lambda: self._set_excluded(exclude(root, others))):
            self._mark(f"kept {Path(keep[0]).name}")
            self.status.setText(f"Kept {keep[0]}; excluded the other {len(others)} copy(ies) from training.")

    @Slot()
    def move_suggested(self) -> None:
        from engine.data.exclusions import move_to_class

        finding = self.selected_finding()
        if self.report is None or finding is None or finding.kind != "label":
            return
        source = self.report.root / finding.paths[0]
        moves, item = self.moves, self.tree.selectedItems()[0]

        def act() -> None:
            moves.append((move_to_class(source, finding.given, finding.suggested), finding, item))

        if self._edit(act):
            self._mark(f"moved to {finding.suggested}")
            self.status.setText(
                f"Moved {Path(finding.paths[0]).name} to '{finding.suggested}'. Undo puts it back."
            )
        self._update_buttons()

    @Slot()
    def undo(self) -> None:
        from engine.data.exclusions import undo_move

        if not self.moves:
            return
        move, finding, item = self.moves[-1]
        if self._edit(lambda: undo_move(move)):
            self.moves.pop()
            finding.done = [text for text in finding.done if not text.startswith("moved to")]
            self._show_done(item, finding)
            self.status.setText(f"Moved {move.source.name} back to {move.source.parent.name}.")
        self._update_buttons()

    @Slot()
    def include_selected(self) -> None:
        from engine.data.exclusions import include

        paths = [p for p in self.selected_paths() if p in self.excluded]
        if self.report is None or not paths:
            return
        root = self.report.root
        if self._edit(lambda: self._set_excluded(include(root, paths))):
            self.status.setText(f"{len(paths)} photo(s) will be used for training again.")
        self._update_buttons()

    def shutdown(self) -> None:
        self.cancel()
        self.grid.shutdown()
