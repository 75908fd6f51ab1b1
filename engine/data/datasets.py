"""Dataset folders: the one scan (files, checks, train/val split) that every part of the app uses.

This module owns how a folder of photos becomes a :class:`DatasetReport` (classes, samples per
split, skipped files with reasons, warnings) via :func:`scan_dataset`, and the human-readable report
(:func:`format_report`). Decoding for training lives in ``engine.training.image_cache``.

Two layouts are accepted: ``root/train/<class>/...`` + ``root/val/<class>/...`` (optionally
``root/test/<class>/...``), or ``root/<class>/...``, which gets a stratified, seeded train/val
split. Images in sub-folders of a class folder belong to that class.

Photos to sort: a top-level folder named ``unlabeled`` (any depth, any names; in either layout it is
never a class), or any other folder given as ``unlabeled=``, holds photos without a class. They are
listed in :attr:`DatasetReport.unlabeled`, counted apart, and never trained on (:mod:`engine.sorting`).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.errors import DatasetError, UnreadableImageError
from engine.data.exclusions import read_exclusions
from engine.data.images import FORMATS_TEXT, IMAGE_EXTENSIONS, verify_image

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: Folder names (lower-case) recognised for each split.
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
#: The folder (lower-case, at the dataset's top level) that holds photos to sort; never a class.
UNLABELED_FOLDER = "unlabeled"
IMBALANCE_WARN_RATIO = 3.0
TINY_CLASS_TRAIN_IMAGES = 10
_VERIFY_THREADS = 4

_JUNK_NAMES = frozenset(
    {"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "@eadir", "$recycle.bin",
     "system volume information", "icon\r"}
)  # fmt: skip
_OTHER_IMAGE_EXTENSIONS = frozenset(
    {".ico", ".ppm", ".pgm", ".pbm", ".pnm", ".psd", ".svg", ".tga",
     ".jp2", ".j2k", ".jxl", ".raw", ".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".eps"}
)  # fmt: skip


@dataclass(frozen=True)
class Sample:
    """One labelled image file."""

    path: Path
    label: int


@dataclass(frozen=True)
class SkippedFile:
    """A file found in the dataset folder that will not be used, and why."""

    path: Path
    reason: str


@dataclass
class DatasetReport:
    """What :func:`scan_dataset` found: classes, samples per split, skipped files, warnings."""

    root: Path
    classes: list[str]
    splits: dict[str, list[Sample]]
    auto_split: bool = False
    skipped: list[SkippedFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    val_fraction: float = 0.2  # the settings of the automatic split (used only when auto_split)
    seed: int = 0
    excluded: list[Path] = field(default_factory=list)  # left out by the user's exclusion list
    unlabeled: list[Path] = field(default_factory=list)  # photos to sort (never trained on)
    unlabeled_root: Path | None = None  # the folder they came from

    def relative(self, path: Path) -> str:
        """``path`` relative to the dataset folder (forward slashes), or in full when outside it."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def same_split(self, val_fraction: float, seed: int) -> bool:
        """Whether a scan with these split settings would give this report's split."""
        return not self.auto_split or (self.val_fraction, self.seed) == (val_fraction, seed)

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of images per class and split: ``{class: {split: n}}``."""
        out = {name: dict.fromkeys(self.splits, 0) for name in self.classes}
        for split, samples in self.splits.items():
            for sample in samples:
                out[self.classes[sample.label]][split] += 1
        return out

    def imbalance(self) -> float:
        """Largest / smallest number of training images per class (1.0 when balanced)."""
        train = [c.get("train", 0) for c in self.counts().values()]
        if not train or max(train) == 0:
            return 1.0
        return float("inf") if min(train) == 0 else max(train) / min(train)

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary of the report."""
        ratio = self.imbalance()
        return {
            "root": str(self.root),
            "classes": list(self.classes),
            "counts": self.counts(),
            "totals": {split: len(samples) for split, samples in self.splits.items()},
            "auto_split": self.auto_split,
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in self.skipped],
            "excluded": [str(p) for p in self.excluded],
            "warnings": list(self.warnings),
            "imbalance": round(ratio, 3) if ratio != float("inf") else None,
            "unlabeled": len(self.unlabeled),
        }


def _is_junk(name: str) -> bool:
    """Hidden files, macOS resource forks and OS metadata files/folders."""
    return name.startswith((".", "~$")) or name.lower() in _JUNK_NAMES


def _skip_reason_for_extension(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in _OTHER_IMAGE_EXTENSIONS:
        return f"unsupported format ({ext}); use {FORMATS_TEXT}"
    return f"not an image ({ext or 'no extension'})"


def _visible_entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not _is_junk(e.name)), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"Cannot read folder {folder}: {exc.strerror or exc}") from exc


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False


def _kind(path: str | Path) -> tuple[str, str | None]:
    """``("dir" | "file" | "skip", reason)`` for one folder entry: follows links, never raises.

    The cheap checks every scan makes, verifying or not: broken links, link loops, entries that
    cannot be examined, and things that are neither a folder nor a regular file (pipes, sockets,
    devices), which would block or fail when read.
    """
    try:
        info = os.stat(path)  # follows symlinks
    except OSError as exc:
        is_link = os.path.islink(path)  # never raises
        if exc.errno == errno.ELOOP:
            return "skip", "link loop (the link points back to itself)"
        if is_link and exc.errno == errno.ENOENT:
            return "skip", "broken link"
        return "skip", f"unreadable ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return "dir", None
    if stat.S_ISREG(info.st_mode):
        return "file", None
    return "skip", "not a regular file (a pipe, socket or device)"


def _walk_files(
    folder: Path, skipped: list[SkippedFile], seen: set[tuple[int, int]] | None = None
) -> Iterator[Path]:
    """Yield the files under ``folder`` recursively (sorted, following symlinks, loop-safe)."""
    seen = set() if seen is None else seen
    try:
        st = folder.stat()
    except OSError as exc:
        skipped.append(SkippedFile(folder, f"unreadable folder ({exc.strerror or exc})"))
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:
        skipped.append(SkippedFile(folder, "folder link loop (already scanned)"))
        return
    seen.add(key)
    try:
        entries = _visible_entries(folder)
    except DatasetError as exc:
        skipped.append(SkippedFile(folder, f"unreadable folder ({exc})"))
        return
    for entry in entries:
        path = Path(entry.path)
        kind, reason = _kind(path)
        if kind == "dir":
            yield from _walk_files(path, skipped, seen)
        elif kind == "file":
            yield path
        elif reason is not None:
            skipped.append(SkippedFile(path, reason))


def _find_split_folders(root: Path, dirs: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        for split, aliases in SPLIT_ALIASES.items():
            if d.name.lower() in aliases and split not in found:
                found[split] = d
    return found


def _collect(
    folder: Path, skipped: list[SkippedFile], leave_out: Path | None = None
) -> dict[str, list[Path]]:
    """Map class name -> candidate files for one split folder (or the root in the flat layout).

    Image files lying directly in ``folder`` (not in a class folder) are reported as skipped;
    other loose files (READMEs, licences) are ignored. ``leave_out``: a folder that is no class (the
    photos to sort).
    """
    per_class: dict[str, list[Path]] = {}
    for entry in _visible_entries(folder):
        path = Path(entry.path)
        kind, reason = _kind(path)
        if kind == "dir" and leave_out is not None and path == leave_out:
            continue
        if kind == "dir":
            per_class[entry.name] = list(_walk_files(path, skipped))
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            skipped.append(SkippedFile(path, reason or "not inside a class folder"))
    return per_class


def _split_stratified(
    per_class: dict[str, list[Path]], val_fraction: float, seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    train: dict[str, list[Path]] = {}
    val: dict[str, list[Path]] = {}
    for name, paths in per_class.items():
        if len(paths) < 2:
            raise DatasetError(
                f"Class '{name}' has only {len(paths)} image; at least 2 are needed to split it "
                "into train and val (add images, or provide train/ and val/ folders)"
            )
        order = sorted(paths)
        random.Random(f"{seed}:{name}").shuffle(order)
        n_val = min(max(1, round(len(order) * val_fraction)), len(order) - 1)
        val[name] = sorted(order[:n_val])
        train[name] = sorted(order[n_val:])
    return train, val


def _cheap_reason(path: Path) -> str | None:
    """Why ``path`` cannot be used, from its name and metadata alone (None when it may be an image)."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return _skip_reason_for_extension(path)
    try:
        size = os.stat(path).st_size
    except OSError as exc:  # vanished or became unreadable since the folder was listed
        return f"unreadable ({exc.strerror or exc})"
    if size == 0:
        return "empty file (0 bytes)"
    if not os.access(path, os.R_OK):
        return "unreadable (permission denied)"
    return None


def _decode_reason(path: Path) -> str | None:
    """None when ``path`` decodes (see :func:`engine.data.images.verify_image`), else why not."""
    try:
        verify_image(path)
    except UnreadableImageError as exc:
        return exc.reason
    return None


def scan_dataset(
    root: str | Path,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    verify: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    exclusions: Iterable[str | Path] | None = None,
    unlabeled: str | Path | None = None,
    list_unlabeled: bool = False,
) -> DatasetReport:
    """Scan a dataset folder into a :class:`DatasetReport`; raise DatasetError if it is unusable.

    This is the one scan: ``scan``, the Data tab and training all call it with ``verify=True``, so
    they use exactly the same files and split. Every scan skips (and reports) non-image extensions,
    broken links, link loops, pipes and other non-files, empty and unreadable files. ``verify=True``
    also decodes each image cheaply (see :func:`engine.data.images.verify_image`); ``verify=False``
    (re-creating a finished run's split for evaluation or a report) skips that but gives every good
    photo the same split. ``on_progress(done, total)`` is called as files are verified (it may
    raise, e.g. to cancel, and the exception propagates). ``exclusions`` (default: the dataset's
    stored list, :mod:`engine.data.exclusions`) are left out after the split and listed in
    ``report.excluded``. The dataset's top-level ``unlabeled/`` folder is never a class. With
    ``list_unlabeled`` (``scan``, the Data tab, sorting), its photos, or those of the folder
    ``unlabeled``, are listed in ``report.unlabeled`` (checked as the labelled ones, unreadable ones
    skipped); they never join a split, and training does not list them.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"Validation fraction must be between 0 and 1, got {val_fraction}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"Dataset folder does not exist: {root}")
    if not root.is_dir():
        raise DatasetError(f"Not a folder: {root}")
    root = root.resolve()
    skipped: list[SkippedFile] = []
    warnings: list[str] = []

    top_dirs = [Path(e.path) for e in _visible_entries(root) if _is_dir(e)]
    own_unlabeled = next((d for d in top_dirs if d.name.lower() == UNLABELED_FOLDER), None)
    unlabeled_root = own_unlabeled if unlabeled is None else _unlabeled_folder(root, Path(unlabeled))
    split_dirs = _find_split_folders(root, top_dirs)
    raw: dict[str, dict[str, list[Path]]] = {}
    if "train" in split_dirs:
        for split, folder in split_dirs.items():
            raw[split] = _collect(folder, skipped)
        for top in top_dirs:
            if top not in split_dirs.values() and top != own_unlabeled:
                warnings.append(f"Folder '{top.name}' next to train/ is not a split; ignored")
        for f in (Path(e.path) for e in _visible_entries(root) if not _is_dir(e)):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                skipped.append(SkippedFile(f, "not inside a class folder"))
    elif split_dirs:
        names = ", ".join(f"'{d.name}'" for d in split_dirs.values())
        raise DatasetError(f"{root.name} has {names} but no 'train' folder")
    else:
        raw["train"] = _collect(root, skipped, leave_out=own_unlabeled)
    if not (list_unlabeled or unlabeled is not None):
        unlabeled_root = None
    to_sort = {"unlabeled": {"": list(_walk_files(unlabeled_root, skipped))}} if unlabeled_root else {}

    # The cheap checks, always; then the automatic split, made before any decoding so that a verifying
    # scan (`scan`, the Data tab, training) and a quick one (evaluate, report) give every good photo
    # the same split; then, when verifying, the decode check.
    usable = _keep(raw, _cheap_reason, skipped)
    to_sort = _keep(to_sort, _cheap_reason, skipped)
    _drop_empty_classes(usable, split_dirs, warnings)
    if "val" in usable and not usable["val"]:
        del usable["val"]
        warnings.append(f"Folder {split_dirs['val'].name}/ has no usable images; ignored")
    auto_split = "val" not in usable
    if auto_split:
        _require_two_classes(usable["train"], root)
        usable["train"], usable["val"] = _split_stratified(usable["train"], val_fraction, seed)
        where = "train/" if "train" in split_dirs else "the folder"
        warnings.append(
            f"No val/ folder: {val_fraction:.0%} of each class in {where} was set aside for "
            f"validation (seed {seed})"
        )
    if exclusions is None:
        exclusions, problem = read_exclusions(root)
        if problem is not None:
            warnings.append(problem)
    excluded_set = {Path(p) if Path(p).is_absolute() else root / p for p in exclusions}
    excluded: list[Path] = []
    if excluded_set:
        for by_class in usable.values():
            for name, paths in by_class.items():
                excluded.extend(p for p in paths if p in excluded_set)
                by_class[name] = [p for p in paths if p not in excluded_set]
        _drop_empty_classes(usable, split_dirs, warnings)
    if verify:
        both = _keep(
            {**usable, **to_sort}, _decode_reason, skipped, on_progress=on_progress, threads=_VERIFY_THREADS
        )
        to_sort = {k: v for k, v in both.items() if k in to_sort}
        usable = {k: v for k, v in both.items() if k not in to_sort}
        _drop_empty_classes(usable, split_dirs, warnings)
    elif on_progress is not None:
        total = sum(len(ps) for found in (*usable.values(), *to_sort.values()) for ps in found.values())
        on_progress(total, total)

    # Every class must appear in train and val (test may miss classes but not add new ones).
    for missing_in, present_in in (("val", "train"), ("train", "val")):
        for name in sorted(set(usable[present_in]) - set(usable[missing_in])):
            if auto_split:
                raise DatasetError(
                    f"Class '{name}' has no usable images left for {missing_in} after the automatic "
                    "split; add images to it"
                )
            raise DatasetError(f"Class '{name}' has images in {present_in}/ but none in {missing_in}/")
    if "test" in usable:
        for name in sorted(set(usable["test"]) - set(usable["train"])):
            raise DatasetError(f"Class '{name}' has images in test/ but none in train/")
        for name in sorted(set(usable["train"]) - set(usable["test"])):
            warnings.append(f"Class '{name}' has no images in test/")
    classes = sorted(usable["train"])
    _require_two_classes(usable["train"], root)

    label = {name: i for i, name in enumerate(classes)}
    splits = {
        split: [Sample(p, label[name]) for name in classes for p in usable[split].get(name, [])]
        for split in SPLITS
        if split in usable
    }
    report = DatasetReport(root, classes, splits, auto_split, skipped, warnings, val_fraction, seed, excluded)
    report.unlabeled = to_sort["unlabeled"][""] if to_sort else []
    report.unlabeled_root = unlabeled_root
    _add_data_warnings(report)
    for w in report.warnings:
        logger.info("Dataset %s: %s", root, w)
    return report


def _unlabeled_folder(root: Path, folder: Path) -> Path:
    """``folder`` checked as a folder of photos to sort for the dataset at ``root``: it must exist, and
    hold no labelled photo (it may be the dataset's own ``unlabeled/`` or lie outside the dataset)."""
    folder = folder.expanduser()
    if not folder.is_dir():
        raise DatasetError(f"Photos to sort: {folder} is not a folder")
    folder = folder.resolve()
    if folder == root or root.is_relative_to(folder):
        raise DatasetError(
            f"Photos to sort: {folder} holds the dataset itself; choose a folder of unsorted photos"
        )
    if folder.is_relative_to(root) and folder.relative_to(root).parts[0].lower() != UNLABELED_FOLDER:
        raise DatasetError(
            f"Photos to sort: {folder} is inside the dataset's class folders; use the dataset's "
            f"{UNLABELED_FOLDER}/ folder or a folder outside the dataset"
        )
    return folder


def _keep(
    found: dict[str, dict[str, list[Path]]],
    reason_for: Callable[[Path], str | None],
    skipped: list[SkippedFile],
    *,
    on_progress: Callable[[int, int], None] | None = None,
    threads: int = 1,
) -> dict[str, dict[str, list[Path]]]:
    """The files for which ``reason_for`` gives None (order kept); the others go to ``skipped``.

    With ``threads`` > 1 the checks run in a thread pool (decoding releases the GIL).
    """
    jobs = [
        (split, name, path)
        for split, by_class in found.items()
        for name, ps in by_class.items()
        for path in ps
    ]
    total = len(jobs)
    if on_progress is not None:
        on_progress(0, total)
    kept: dict[str, dict[str, list[Path]]] = {split: {name: [] for name in bc} for split, bc in found.items()}
    workers = min(threads, os.cpu_count() or 1, max(total, 1))
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        paths = [job[2] for job in jobs]
        reasons = pool.map(reason_for, paths) if pool is not None else map(reason_for, paths)
        for done, ((split, name, path), reason) in enumerate(zip(jobs, reasons, strict=True), start=1):
            if reason is None:
                kept[split][name].append(path)
            else:
                skipped.append(SkippedFile(path, reason))
            if on_progress is not None:
                on_progress(done, total)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return kept


def _drop_empty_classes(
    found: dict[str, dict[str, list[Path]]], split_dirs: dict[str, Path], warnings: list[str]
) -> None:
    for split, by_class in found.items():
        for name in [n for n, ps in by_class.items() if not ps]:
            del by_class[name]
            where = f" in {split_dirs[split].name}/" if split in split_dirs else ""
            warnings.append(f"Class folder '{name}'{where} has no usable images; ignored")


def _require_two_classes(by_class: dict[str, list[Path]], root: Path) -> None:
    if not by_class:
        raise DatasetError(
            f"No class folders with images found in {root} "
            "(expected <folder>/<class>/<images> or <folder>/train/<class>/<images>)"
        )
    if len(by_class) == 1:
        raise DatasetError(
            f"Only one class ('{next(iter(by_class))}') found in {root}; at least two are needed"
        )


def _add_data_warnings(report: DatasetReport) -> None:
    counts = report.counts()
    train = {name: c["train"] for name, c in counts.items()}
    ratio = report.imbalance()
    if ratio > IMBALANCE_WARN_RATIO:
        big = max(train, key=lambda n: train[n])
        small = min(train, key=lambda n: train[n])
        report.warnings.append(
            f"Classes are imbalanced: '{big}' has {train[big]} training images, '{small}' has "
            f"{train[small]} (ratio {ratio:.1f})"
        )
    for name, n in train.items():
        if n < TINY_CLASS_TRAIN_IMAGES:
            report.warnings.append(
                f"Class '{name}' has only {n} training images (fewer than "
                f"{TINY_CLASS_TRAIN_IMAGES}); results will be unreliable"
            )


def format_report(report: DatasetReport) -> str:
    """Human-readable multi-line text of a report (for the command line)."""
    splits = list(report.splits)
    counts = report.counts()
    width = max([len("class"), *(len(c) for c in report.classes)])
    lines = [f"Dataset: {report.root}"]
    layout = "auto split (no val/ folder)" if report.auto_split else "train/val folders"
    lines.append(f"Classes: {len(report.classes)}   Layout: {layout}")
    lines.append("  " + "class".ljust(width) + "".join(f"{s:>8}" for s in splits))
    for name in report.classes:
        row = "".join(f"{counts[name][s]:>8}" for s in splits)
        lines.append("  " + name.ljust(width) + row)
    totals = "".join(f"{len(report.splits[s]):>8}" for s in splits)
    lines.append("  " + "total".ljust(width) + totals)
    ratio = report.imbalance()
    lines.append(f"Imbalance (largest/smallest train class): {ratio:.2f}")
    if report.skipped:
        lines.append(f"Skipped files ({len(report.skipped)}):")
        lines.extend(f"  {report.relative(s.path)}: {s.reason}" for s in report.skipped)
    if report.unlabeled_root is not None:
        lines.append(
            f"Photos to sort: {len(report.unlabeled)} in {report.relative(report.unlabeled_root)}/ "
            "(not trained on; `transfer-studio sort` proposes their classes)"
        )
    if report.excluded:
        lines.append(
            f"Excluded by you ({len(report.excluded)}; `transfer-studio audit` or the Data tab manage the list):"
        )
        lines.extend(f"  {report.relative(path)}" for path in report.excluded)
    if report.warnings:
        lines.append("Warnings:")
        lines.extend(f"  - {w}" for w in report.warnings)
    return "\n".join(lines)
