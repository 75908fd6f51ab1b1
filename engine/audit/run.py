"""The dataset doctor: one pass over a dataset folder that finds duplicates, leaks between splits,
conflicting and likely wrong labels, poor photos and class imbalance (:func:`run_audit`).

**One backbone pass, shared with training.** The photos come from
:func:`engine.data.datasets.scan_dataset` (train/val folders, or class folders with the seeded split a
training run with the same ``seed`` and ``val_fraction`` makes). Their backbone features go through the
training feature cache (:class:`engine.training.features.FeatureStore`: same model, weights, head,
preprocessing and input size, augmentation settings, seed and precision, so the same file and entry
keys), computed exactly as a feature-extract run (by default ``TrainConfig.for_strategy
("feature-extract")``, or the ``config`` given) computes them: view 0 (the eval view) of every photo
and, with flip test-time augmentation, the mirror view of validation photos. The audit itself needs
view 0 alone. The seeded augmented views a run adds for its training photos (a second one on a CPU,
three more on a GPU) are left to that run by default, which computes only the views a photo misses:
on 4,000 photos on a 2-core CPU the audit takes 89 s instead of 136 s, and the run after it computes
a third of the backbone passes a cold run would (BENCHMARKS.md). ``training_views`` makes the audit
compute them too, so that the run computes none.
While the feature pass decodes each photo (once, with training's JPEG draft decode) it also hashes and
measures it (:mod:`engine.audit.images`); photos whose features were already cached are
decoded for that alone, in threads.

**Findings.**

- Duplicates (:mod:`engine.audit.duplicates`): linked when their decoded pixels are the
  same ("exact"); when their 64-bit pHashes differ in at most 8 bits ("near": resized, recompressed,
  blurred); or when their embeddings' cosine similarity is at least 0.84 and 0.05 above each photo's
  background (the mean of its 20 highest similarities) and their pHashes differ in at most 24 bits
  ("cropped"). Links are joined into groups. A group spanning splits is a leak (``cross_split``), one
  spanning classes is one photo with two labels (``conflicting_labels``), a group can be both; the
  rest are plain ``duplicates``.
- Likely wrong labels (:mod:`engine.audit.labels`): out-of-fold probabilities from a
  5-fold cross-validated logistic-regression head on the L2-normalised view-0 features (a duplicate
  group stays in one fold), then confident learning; ranked by how far the suggested class's
  probability exceeds the given one's. Uniform photos (blank: no class to see) are left out.
- Photo quality (:func:`engine.audit.images.quality_issues`): unreadable, tiny (shorter
  side < 64 px), extreme aspect ratio (> 3:1), uniform (grey-level standard deviation < 6), dark (mean
  brightness <= 0.10), bright (>= 0.92), blurry (variance of the Laplacian at a 256 px shorter side
  < 25, or < 5% of the dataset's median).
- Class balance: photos per class and split, and the largest / smallest training class.

**How the thresholds were chosen** (efficientnet_lite0 on hymenoptera, 398 photos, with planted
variants of 40 randomly drawn photos per kind; ``tests/test_audit.py`` keeps a planted set):

- Between distinct hymenoptera photos (79,003 pairs, and 190,000 pairs of a variant with an unrelated
  photo) the pHash distance was never below 12 and the cosine similarity never above 0.803:
  hymenoptera holds no near-duplicates by either measure, and no rule above links any such pair.
- pHash distance of a variant to its original: half size + JPEG quality 70, quality 40, 80% size PNG,
  Gaussian blur of radius 2 or 8: at most 4 bits (mostly 0); hence "near" at <= 8. Cosine alone would
  miss these: a half-size copy's was as low as 0.68, a radius-8 blur's 0.28.
- Cropped variants: 3% off each side: cosine >= 0.875, pHash <= 10; 5%: cosine >= 0.846, pHash <= 16;
  10% off one side: cosine >= 0.894, pHash <= 20; all 40 of each found. 8% off each side: 35 of 40;
  5% off each side and resized to 60%: 34 of 40; 15% off each side: 7 of 40 (not a light crop). The
  margin over the background (>= 0.14 for every light crop above, <= 0.118 for the unrelated pairs
  that pass the other two tests) keeps a set of look-alike photos, where every cosine is 0.9, from
  collapsing into one group (a test checks it).
- Quality: across hymenoptera, mean brightness 0.18-0.95, grey standard deviation >= 16, Laplacian
  variance >= 47 (1% quantile 63, median 511); a radius-8 Gaussian blur gives 1.5-3.5, radius 2 gives
  4-81 (a light blur is not always flagged). Hymenoptera's flags: one 3.4:1 panorama, and "bright" on
  a white-background stock render (0.94) and ``train/ants/imageNotFound.gif`` (0.95), a placeholder
  saying "this image could not be found".
- Labels: moving 10 random photos to the other class (30 draws), confident learning flagged 11-12
  photos, 8.4 of the 10 moved on average and at least 6 in 28 draws. The moved photos it misses are
  ones the cross-validated head itself finds ambiguous (true class at 0.66-0.77). Weight decay
  1e-4..3e-3, 10 folds, training on the augmented views too, or centred features changed the average
  by less than 0.3.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from engine.audit.duplicates import Link, find_links, group_links
from engine.audit.findings import (
    AuditedImage,
    AuditReport,
    DuplicateGroup,
    LabelIssue,
    QualityIssue,
)
from engine.audit.images import (
    QUALITY_ISSUES,
    UNIFORM_BELOW,
    AuditImageCache,
    ImageStats,
    measure_file,
    quality_issues,
)
from engine.audit.labels import (
    DEFAULT_FOLDS,
    Suspect,
    assign_folds,
    confident_learning,
    out_of_fold_probabilities,
)
from engine.core.config import TrainConfig
from engine.core.device import resolve_device
from engine.core.errors import Cancelled, StopCheck, TransferStudioError, UnreadableImageError
from engine.core.precision import resolve_precision
from engine.data.datasets import DatasetReport, Sample, scan_dataset
from engine.models.build import build_model
from engine.models.heads import HeadSpec
from engine.models.preprocessing import Preprocessing
from engine.models.registry import get_model_info
from engine.training.data_path import decode_threads
from engine.training.features import (
    FeatureExtractor,
    FeatureStore,
    compute_features,
    feature_labels,
    head_is_last,
)
from engine.training.linear_head import DEFAULT_WEIGHT_DECAY
from engine.training.recipe import inference_batch_size, run_preprocessing

__all__ = [
    "AuditReport",
    "AuditedImage",
    "DuplicateGroup",
    "LabelIssue",
    "ProgressCallback",
    "QualityIssue",
    "run_audit",
]

log = logging.getLogger(__name__)

#: Feature views the audit computes per training photo by default: the plain view, all it needs.
AUDIT_TRAINING_VIEWS = 1

#: ``on_progress(stage, done, total)``: stages "features" (photos decoded, hashed and through the
#: backbone), "hashing" (photos whose features were cached), "labels" (folds fitted).
ProgressCallback = Callable[[str, int, int], None]


def run_audit(
    data_root: str | Path,
    *,
    model: str = "efficientnet_lite0",
    device: str = "cpu",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    cache_dir: Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    training_views: int | None = None,
    folds: int = DEFAULT_FOLDS,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    report: DatasetReport | None = None,
    config: TrainConfig | None = None,
) -> AuditReport:
    """Audit the dataset at ``data_root`` (see the module docstring).

    The features are those of a feature-extract run of ``config`` (default:
    ``TrainConfig.for_strategy("feature-extract", model=model, seed=seed, val_fraction=val_fraction)``;
    a given ``config`` decides the model, seed and split instead of those three arguments): the same
    split, input size, head and test-time augmentation, so that run later finds them in the cache.
    ``training_views``: feature views cached per training photo (default :data:`AUDIT_TRAINING_VIEWS`:
    the plain view, all the audit needs; the run adds its augmented views; pass the run's number,
    e.g. ``feature_views(True, 0, device)``, to compute those too). ``cache_dir``: the feature cache
    folder (default: the one training uses). ``report``: an existing scan of ``data_root``. Raises
    :class:`~engine.core.errors.Cancelled` once ``should_stop()`` turns true.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    progress = on_progress or (lambda _stage, _done, _total: None)
    stop = should_stop or (lambda: False)

    def check() -> None:
        if stop():
            raise Cancelled("the audit stopped")

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    dev = resolve_device(device)
    if config is None:
        config = TrainConfig.for_strategy(
            "feature-extract", model=model, seed=seed, val_fraction=val_fraction
        )
    model, seed = config.model, config.seed
    if report is None:
        report = scan_dataset(data_root, val_fraction=config.val_fraction, seed=seed, verify=False)
    root = report.root
    entries = [(split, s) for split, samples in report.splits.items() for s in samples]
    views = AUDIT_TRAINING_VIEWS if training_views is None else training_views
    if views < 1 or folds < 2:
        raise TransferStudioError("an audit needs at least 1 training view and 2 folds")
    check()
    now = lap("scan", started)

    pre = run_preprocessing(config, report)  # the run's input size (automatic: from the photos) and TTA
    features, stats, failed, counted = _feature_pass(
        report, config, pre, dev, views, cache_dir, progress, stop
    )
    now = lap("features", now)
    resize = pre.resize_size
    _measure_rest(entries, stats, failed, resize, progress, check)
    now = lap("hashing", now)

    readable = [i for i in range(len(entries)) if i in stats and i in features]
    images = [
        AuditedImage(report.relative(entries[i][1].path), entries[i][0], report.classes[entries[i][1].label])
        for i in readable
    ]
    image_stats = [stats[i] for i in readable]
    embeddings = torch.stack([features[i] for i in readable]) if readable else torch.empty(0, 0)
    uniform = [s.contrast < UNIFORM_BELOW for s in image_stats]
    links = find_links(image_stats, embeddings if readable else None, uniform)
    groups = group_links(len(readable), links)
    duplicates = _groups(images, links, groups)
    check()
    now = lap("duplicates", now)

    labels = [entries[i][1].label for i in readable]
    judged = [k for k in range(len(readable)) if not uniform[k]]  # a blank photo shows no class

    def on_fold(done: int, total: int) -> None:
        progress("labels", done, total)
        check()

    label_issues = [
        LabelIssue(
            path=images[judged[s.index]].path,
            split=images[judged[s.index]].split,
            given=report.classes[s.given],
            suggested=report.classes[s.suggested],
            confidence=s.confidence,
            given_probability=s.given_probability,
        )
        for s in _suspects(
            embeddings, labels, groups, judged, len(report.classes), folds, seed, weight_decay, on_fold
        )
    ]
    now = lap("labels", now)

    quality = _quality(images, image_stats, entries, failed, report)
    lap("quality", now)
    counts = _readable_counts(report, entries, readable)
    train = [per_split.get("train", 0) for per_split in counts.values()]
    imbalance = 1.0 if not train or max(train) == 0 else (max(train) / min(train) if min(train) else math.inf)
    seconds = time.perf_counter() - started
    timings["total"] = round(seconds, 3)
    log.info("audit of %s: %d photos in %.1f s (%s)", root, len(entries), seconds, timings)
    return AuditReport(
        root=root,
        model=model,
        classes=list(report.classes),
        counts=counts,
        imbalance=None if math.isinf(imbalance) else round(imbalance, 3),
        auto_split=report.auto_split,
        images=images,
        duplicates=duplicates,
        label_issues=label_issues,
        quality=quality,
        stats={image.path: s for image, s in zip(images, image_stats)},
        skipped=[(report.relative(s.path), s.reason) for s in report.skipped],
        features_computed=counted[0],
        features_reused=counted[1],
        training_views=views,
        seconds=seconds,
        timings=timings,
    )


def _suspects(
    embeddings: torch.Tensor,
    labels: list[int],
    groups: list[list[int]],
    judged: list[int],
    classes: int,
    folds: int,
    seed: int,
    weight_decay: float,
    on_fold: Callable[[int, int], None],
) -> list[Suspect]:
    """Confident learning over the ``judged`` photos; the suspects' indices are positions in ``judged``."""
    if len(judged) < folds:
        return []
    position = {k: n for n, k in enumerate(judged)}
    own_labels = [labels[k] for k in judged]
    own_groups = [[position[k] for k in g if k in position] for g in groups]
    fold_of = assign_folds(own_labels, [g for g in own_groups if len(g) > 1], folds, seed)
    probabilities = out_of_fold_probabilities(
        embeddings[judged], own_labels, classes, fold_of, weight_decay=weight_decay, on_fold=on_fold
    )
    return confident_learning(probabilities, own_labels)


def _feature_pass(
    report: DatasetReport,
    config: TrainConfig,
    pre: Preprocessing,
    dev: torch.device,
    training_views: int,
    cache_dir: Path | None,
    progress: ProgressCallback,
    stop: StopCheck,
) -> tuple[dict[int, torch.Tensor], dict[int, ImageStats], dict[int, str], tuple[int, int]]:
    """View-0 features, measurements and decode failures by entry index; (views computed, reused).

    Exactly what a feature-extract run of ``config`` does (:func:`engine.training.recipe.set_up`,
    :func:`engine.training.data_path.open_data_path`): the same model and head, eval mode,
    channels_last, precision, preprocessing, store, views (the validation photos' mirror view with
    flip test-time augmentation) and batch size.
    """
    info = get_model_info(config.model)
    spec = HeadSpec.from_config(config)
    net, head_names = build_model(config.model, len(report.classes), pretrained=True, head=spec)
    net.to(dev)
    net.to(memory_format=torch.channels_last)
    net.eval()
    head = next((h for h in head_names if head_is_last(net, h, pre.crop_size)), None)
    if head is None:
        raise TransferStudioError(
            f"{config.model} cannot be audited: its head is followed by more layers; choose another model"
        )
    compute = resolve_precision(config.precision, dev)
    precision = compute.name
    store = FeatureStore(
        info, config.seed, cache_dir, precision=precision, head_input=spec.head_input, preprocessing=pre
    )
    extractor = FeatureExtractor(net, head)
    batch = inference_batch_size(config.batch_size, dev)
    total = sum(len(s) for s in report.splits.values())
    features: dict[int, torch.Tensor] = {}
    stats: dict[int, ImageStats] = {}
    failed: dict[int, str] = {}
    computed = reused = 0
    offset = 0
    for split, samples in report.splits.items():
        views = training_views if split == "train" else 1
        flipped = split == "val" and pre.tta == "flip"  # as the trainer: validation's mirror view
        missing = _missing_views(samples, store, views, flipped)
        reused += len(samples) * (views + flipped) - missing
        cache = AuditImageCache(samples, pre, decode_threads(config.workers))

        def on_batch(done: int, chunks: int, start: int = offset, size: int = len(samples)) -> None:
            progress("features", start + round(size * done / max(1, chunks)), total)

        try:
            while True:
                try:
                    with compute.autocast(dev):
                        feats, kept = compute_features(
                            extractor, cache, store, views, config.seed, dev, batch, on_batch, stop,
                            flipped=flipped,
                        )  # fmt: skip
                    break
                except torch.cuda.OutOfMemoryError:  # what the trainer does: smaller batches, go on
                    if batch <= 1:
                        raise
                    batch //= 2
                    torch.cuda.empty_cache()
        finally:
            cache.close()
        computed += missing - _missing_views(samples, store, views, flipped)  # not undecodable ones
        for row, i in enumerate(kept):
            features[offset + i] = feats[0, row].float()
        stats.update({offset + i: s for i, s in cache.stats.items()})
        failed.update({offset + i: reason for i, reason in cache.failed.items()})
        offset += len(samples)
        progress("features", offset, total)
    return features, stats, failed, (computed, reused)


def _missing_views(samples: list[Sample], store: FeatureStore, views: int, flipped: bool) -> int:
    labels = feature_labels(views, flipped)
    missing = 0
    for s in samples:
        try:
            missing += sum(FeatureStore.key(s.path, v) not in store.entries for v in labels)
        except OSError:
            missing += len(labels)
    return missing


def _readable_counts(
    report: DatasetReport, entries: list[tuple[str, Sample]], readable: list[int]
) -> dict[str, dict[str, int]]:
    """Photos per class and split that decode: what `scan` counts (it leaves the others out)."""
    out = {name: dict.fromkeys(report.splits, 0) for name in report.classes}
    for i in readable:
        split, sample = entries[i]
        out[report.classes[sample.label]][split] += 1
    return out


def _measure_rest(
    entries: list[tuple[str, Sample]],
    stats: dict[int, ImageStats],
    failed: dict[int, str],
    resize_size: int,
    progress: ProgressCallback,
    check: Callable[[], None],
) -> None:
    """Measure, in threads, the photos the feature pass did not decode (their features were cached)."""
    todo = [i for i in range(len(entries)) if i not in stats and i not in failed]
    if not todo:
        return

    def one(i: int) -> tuple[int, ImageStats | str]:
        try:
            return i, measure_file(entries[i][1].path, resize_size)
        except UnreadableImageError as exc:
            return i, exc.reason

    with ThreadPoolExecutor(max_workers=decode_threads(0), thread_name_prefix="audit") as pool:
        try:
            for done, (i, result) in enumerate(pool.map(one, todo), start=1):
                if isinstance(result, str):
                    failed[i] = result
                else:
                    stats[i] = result
                progress("hashing", done, len(todo))
                check()
        except Cancelled:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _groups(images: list[AuditedImage], links: list[Link], groups: list[list[int]]) -> list[DuplicateGroup]:
    """The groups as records, each with its own links (re-indexed into its members)."""
    where = {i: (g, k) for g, members in enumerate(groups) for k, i in enumerate(members)}
    own: list[list[Link]] = [[] for _ in groups]
    for link in links:
        g, a = where[link.a]
        own[g].append(Link(a, where[link.b][1], link.rule, link.cosine, link.phash_distance))
    return [
        DuplicateGroup(members=tuple(images[i] for i in members), links=tuple(own[g]))
        for g, members in enumerate(groups)
    ]


def _quality(
    images: list[AuditedImage],
    image_stats: list[ImageStats],
    entries: list[tuple[str, Sample]],
    failed: dict[int, str],
    report: DatasetReport,
) -> list[QualityIssue]:
    sharpness = [s.sharpness for s in image_stats]
    median = statistics.median(sharpness) if sharpness else 0.0
    found = [
        QualityIssue(image.path, image.split, issue, value)
        for image, s in zip(images, image_stats)
        for issue, value in quality_issues(s, median)
    ]
    found += [
        QualityIssue(report.relative(entries[i][1].path), entries[i][0], "unreadable", reason)
        for i, reason in failed.items()
    ]
    order = {name: k for k, name in enumerate(QUALITY_ISSUES)}
    return sorted(found, key=lambda q: (order[q.issue], q.path))
