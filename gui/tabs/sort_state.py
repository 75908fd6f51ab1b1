"""What the sort view knows between two backbone passes: the in-memory features, kept in step with
the photos the user moved, so the head refits in seconds without a new pass, and the undo stack.

No Qt here. :class:`SortSession` is the sorting of one dataset: it moves photos in batches
(:func:`engine.sorting.journal.accept`), skips them (in the view only), and undoes either. Plain
functions: :func:`accepted` takes the moved photos' rows from the photos to sort to the
labelled ones (under their new paths and classes), :func:`restored` puts them back (an undo), and
:func:`reconciled` checks a new scan of the folder against the features (and takes the scan's class
order), or says that they no longer match (then the features are computed again, mostly from the
cache). A :class:`PhotoFeatures` is never changed in place: a fit running on a worker keeps its own.
Torch is imported only here, inside the functions (the window starts without it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.data.datasets import DatasetReport
    from engine.sorting.features import PhotoFeatures

#: One moved photo: (where it was, where it is now, its class).
Move = tuple[Path, Path, str]


def accepted(features: PhotoFeatures, moves: Sequence[Move]) -> PhotoFeatures:
    """``features`` after ``moves``: each moved photo labelled (a new class is added at the end)."""
    import torch

    row_of = {p: i for i, p in enumerate(features.unlabeled_paths)}
    classes = list(features.classes)
    rows, labels, paths = [], [], []
    for source, destination, name in moves:
        row = row_of.get(source)
        if row is None:
            continue
        if name not in classes:
            classes.append(name)
        rows.append(row)
        labels.append(classes.index(name))
        paths.append(destination)
    if not rows:
        return features
    taken = set(rows)
    keep = [i for i in range(len(features.unlabeled_paths)) if i not in taken]
    return dataclasses.replace(
        features,
        classes=classes,
        labeled_paths=[*features.labeled_paths, *paths],
        labels=[*features.labels, *labels],
        labeled=torch.cat([features.labeled, features.unlabeled[rows]]),
        unlabeled_paths=[features.unlabeled_paths[i] for i in keep],
        unlabeled=features.unlabeled[keep],
    )


def restored(features: PhotoFeatures, moves: Sequence[Move], known: Sequence[str]) -> PhotoFeatures:
    """``features`` after ``moves`` were undone: each photo back among those to sort, at its old path.

    A class that is not in ``known`` (the last scan's) and has no labelled photo left is dropped.
    """
    row_of = {p: i for i, p in enumerate(features.labeled_paths)}
    rows, paths = [], []
    for source, destination, _name in moves:
        row = row_of.get(destination)
        if row is not None:
            rows.append(row)
            paths.append(source)
    if not rows:
        return features
    taken = set(rows)
    keep = [i for i in range(len(features.labeled_paths)) if i not in taken]
    import torch

    labels = [features.labels[i] for i in keep]
    used = set(labels)
    classes = [n for c, n in enumerate(features.classes) if c in used or n in known]
    names = [features.classes[c] for c in labels]
    return dataclasses.replace(
        features,
        classes=classes,
        labeled_paths=[features.labeled_paths[i] for i in keep],
        labels=[classes.index(n) for n in names],
        labeled=features.labeled[keep],
        unlabeled_paths=[*features.unlabeled_paths, *paths],
        unlabeled=torch.cat([features.unlabeled, features.labeled[rows]]),
    )


def reconciled(features: PhotoFeatures, report: DatasetReport) -> PhotoFeatures | None:
    """``features`` in the class order of ``report`` when they hold exactly its photos (None if not)."""
    scanned = {s.path: report.classes[s.label] for samples in report.splits.values() for s in samples}
    mine = {p: features.classes[c] for p, c in zip(features.labeled_paths, features.labels, strict=True)}
    if scanned != mine:
        return None
    to_sort, unreadable = set(features.unlabeled_paths), {s.path for s in features.skipped}
    if not to_sort <= set(report.unlabeled) or set(report.unlabeled) - to_sort - unreadable:
        return None
    classes = list(report.classes)
    return dataclasses.replace(
        features, classes=classes, labels=[classes.index(mine[p]) for p in features.labeled_paths]
    )


def followed(paths: Sequence[Path], renames: Sequence[tuple[Path, Path]]) -> list[Path]:
    """``paths`` after the photos were moved by ``renames`` (old path, new path), in order."""
    now: dict[Path, Path] = {}  # first path -> where it is now
    first: dict[Path, Path] = {}  # where it is now -> first path
    for old, new in renames:
        origin = first.pop(old, old)
        now[origin] = new
        first[new] = origin
    return [now.get(p, p) for p in paths]


@dataclass
class Step:
    """One undoable action: a skip (in the view only) or a batch of moves (in the journal)."""

    kind: str  # "skip" or "batch"
    paths: list[Path]  # skipped photos, or the moved photos' new paths
    moves: list[Move] = field(default_factory=list)


class SortSession:
    """The sorting of the dataset at ``root``: its features in memory, the photos skipped, the undo
    stack, and how many photos were sorted here."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.features: PhotoFeatures | None = None
        self.skipped: set[Path] = set()
        self.steps: list[Step] = []
        self.sorted_count = 0

    def move(self, choices: Sequence[tuple[Path, str]]) -> list[Move]:
        """Move ``choices`` (photo, class name) as one batch; the journal's one-line
        :class:`~engine.core.errors.TransferStudioError` when it refuses (then nothing changed)."""
        from engine.sorting.journal import accept

        if self.features is None or not choices:
            return []
        batch = accept(self.root, choices)
        moves = [(m.source, m.destination, m.class_name) for m in batch.moves]
        self.features = accepted(self.features, moves)
        self.skipped -= {source for source, _, _ in moves}
        self.steps.append(Step("batch", [d for _, d, _ in moves], moves))
        self.sorted_count += len(moves)
        return moves

    def skip(self, paths: Iterable[Path]) -> list[Path]:
        """Leave ``paths`` for later (not those skipped already); returns those newly skipped."""
        new = [p for p in paths if p not in self.skipped]
        if new:
            self.skipped |= set(new)
            self.steps.append(Step("skip", new))
        return new

    def undo(self, known: Sequence[str]) -> Step | None:
        """Undo the last step (a batch through :func:`engine.sorting.journal.undo_last`); its moves are
        those put back. ``known``: the last scan's classes. Raises the journal's one-line error."""
        from engine.sorting.journal import undo_last

        if not self.steps:
            return None
        step = self.steps[-1]
        if step.kind == "skip":
            self.skipped -= set(step.paths)
            return self.steps.pop()
        batch = undo_last(self.root)
        self.steps.pop()
        if batch is None:
            return None
        moves = [(m.source, m.destination, m.class_name) for m in batch.moves]
        if self.features is not None:
            self.features = restored(self.features, moves, known)
        self.sorted_count = max(0, self.sorted_count - len(moves))
        return Step("batch", [source for source, _, _ in moves], moves)
