"""Dataset folders: scanning, checking and train/val splitting.

This module owns how a folder of photos becomes a :class:`DatasetReport` (classes, samples per
split, skipped files with reasons, warnings) via :func:`scan_dataset`, and the human-readable report
(:func:`format_report`). Decoding for training lives in ``engine.training.image_cache``.

Two layouts are accepted: ``root/train/<class>/...`` + ``root/val/<class>/...`` (optionally
``root/test/<class>/...``), or ``root/<class>/...``, which gets a stratified, seeded train/val
split. Images in sub-folders of a class folder belong to that class.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.errors import DatasetError, UnreadableImageError
from engine.data.images import IMAGE_EXTENSIONS, verify_image

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: Folder names (lower-case) recognised for each split.
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
IMBALANCE_WARN_RATIO = 3.0
TINY_CLASS_TRAIN_IMAGES = 10
_VERIFY_THREADS = 4

_JUNK_NAMES = frozenset(
    {"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "@eadir", "$recycle.bin",
     "system volume information", "icon\r"}
)  # fmt: skip
_OTHER_IMAGE_EXTENSIONS = frozenset(
    {".heic", ".heif", ".avif", ".ico", ".ppm", ".pgm", ".pbm", ".pnm", ".psd", ".svg", ".tga",
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
            "warnings": list(self.warnings),
            "imbalance": round(ratio, 3) if ratio != float("inf") else None,
        }


def _is_junk(name: str) -> bool:
    """Hidden files, macOS resource forks and OS metadata files/folders."""
    return name.startswith((".", "~$")) or name.lower() in _JUNK_NAMES


def _skip_reason_for_extension(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in _OTHER_IMAGE_EXTENSIONS:
        return f"unsupported format ({ext}); use JPEG, PNG, GIF, WebP, BMP or TIFF"
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
        if _is_dir(entry):
            yield from _walk_files(path, skipped, seen)
        elif entry.is_file():
            yield path
        elif entry.is_symlink():
            skipped.append(SkippedFile(path, "broken link"))


def _find_split_folders(root: Path, dirs: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        for split, aliases in SPLIT_ALIASES.items():
            if d.name.lower() in aliases and split not in found:
                found[split] = d
    return found


def _collect(folder: Path, skipped: list[SkippedFile]) -> dict[str, list[Path]]:
    """Map class name -> candidate files for one split folder (or the root in the flat layout).

    Image files lying directly in ``folder`` (not in a class folder) are reported as skipped;
    other loose files (READMEs, licences) are ignored.
    """
    per_class: dict[str, list[Path]] = {}
    for entry in _visible_entries(folder):
        path = Path(entry.path)
        if _is_dir(entry):
            per_class[entry.name] = list(_walk_files(path, skipped))
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            skipped.append(SkippedFile(path, "not inside a class folder"))
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


def _check_file(path: Path, verify: bool) -> str | None:
    """None when ``path`` is usable, else the reason to skip it."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return _skip_reason_for_extension(path)
    if verify:
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
) -> DatasetReport:
    """Scan a dataset folder into a :class:`DatasetReport`; raise DatasetError if it is unusable.

    ``verify=True`` checks each image cheaply (see :func:`engine.data.images.verify_image`);
    ``verify=False`` only checks file extensions. ``on_progress(done, total)`` is called as files
    are checked (it may raise, e.g. to cancel, and the exception propagates).
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
    split_dirs = _find_split_folders(root, top_dirs)
    raw: dict[str, dict[str, list[Path]]] = {}
    if "train" in split_dirs:
        for split, folder in split_dirs.items():
            raw[split] = _collect(folder, skipped)
        for top in top_dirs:
            if top not in split_dirs.values():
                warnings.append(f"Folder '{top.name}' next to train/ is not a split; ignored")
        for f in (Path(e.path) for e in _visible_entries(root) if not _is_dir(e)):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                skipped.append(SkippedFile(f, "not inside a class folder"))
    elif split_dirs:
        names = ", ".join(f"'{d.name}'" for d in split_dirs.values())
        raise DatasetError(f"{root.name} has {names} but no 'train' folder")
    else:
        raw["train"] = _collect(root, skipped)

    # Check every candidate file (decoding releases the GIL, so threads help).
    jobs = [(split, name, path) for split, found in raw.items() for name, ps in found.items() for path in ps]
    total = len(jobs)
    if on_progress is not None:
        on_progress(0, total)
    usable: dict[str, dict[str, list[Path]]] = {
        split: {name: [] for name in found} for split, found in raw.items()
    }
    workers = min(_VERIFY_THREADS, os.cpu_count() or 1) if verify else 1
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        reasons = (
            pool.map(_check_file, (j[2] for j in jobs), [verify] * total)
            if pool is not None
            else (_check_file(j[2], verify) for j in jobs)
        )
        for done, ((split, name, path), reason) in enumerate(zip(jobs, reasons, strict=True), start=1):
            if reason is None:
                usable[split][name].append(path)
            else:
                skipped.append(SkippedFile(path, reason))
            if on_progress is not None:
                on_progress(done, total)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    for split, by_class in usable.items():
        for name in [n for n, ps in by_class.items() if not ps]:
            del by_class[name]
            where = f" in {split_dirs[split].name}/" if split in split_dirs else ""
            warnings.append(f"Class folder '{name}'{where} has no usable images; ignored")
    if "val" in usable and not usable["val"]:
        del usable["val"]
        warnings.append(f"Folder {split_dirs['val'].name}/ has no usable images; ignored")

    # Every class must appear in train and val (test may miss classes but not add new ones).
    auto_split = "val" not in usable
    if "val" in usable:
        for missing_in, present_in in (("val", "train"), ("train", "val")):
            for name in sorted(set(usable[present_in]) - set(usable[missing_in])):
                raise DatasetError(f"Class '{name}' has images in {present_in}/ but none in {missing_in}/")
    if "test" in usable:
        for name in sorted(set(usable["test"]) - set(usable["train"])):
            raise DatasetError(f"Class '{name}' has images in test/ but none in train/")
        for name in sorted(set(usable["train"]) - set(usable["test"])):
            warnings.append(f"Class '{name}' has no images in test/")

    classes = sorted(usable["train"])
    if not classes:
        raise DatasetError(
            f"No class folders with images found in {root} "
            "(expected <folder>/<class>/<images> or <folder>/train/<class>/<images>)"
        )
    if len(classes) == 1:
        raise DatasetError(f"Only one class ('{classes[0]}') found in {root}; at least two are needed")
    if auto_split:
        usable["train"], usable["val"] = _split_stratified(usable["train"], val_fraction, seed)
        where = "train/" if "train" in split_dirs else "the folder"
        warnings.append(
            f"No val/ folder: {val_fraction:.0%} of each class in {where} was set aside for "
            f"validation (seed {seed})"
        )

    label = {name: i for i, name in enumerate(classes)}
    splits = {
        split: [Sample(p, label[name]) for name in classes for p in usable[split].get(name, [])]
        for split in SPLITS
        if split in usable
    }
    report = DatasetReport(root, classes, splits, auto_split, skipped, warnings)
    _add_data_warnings(report)
    for w in report.warnings:
        logger.info("Dataset %s: %s", root, w)
    return report


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
        for s in report.skipped:
            try:
                shown = s.path.relative_to(report.root)
            except ValueError:
                shown = s.path
            lines.append(f"  {shown}: {s.reason}")
    if report.warnings:
        lines.append("Warnings:")
        lines.extend(f"  - {w}" for w in report.warnings)
    return "\n".join(lines)
