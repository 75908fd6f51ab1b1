"""The bake-off: train several model x strategy candidates on one frozen split and rank them.

Every candidate trains on the same scanned dataset (one split, one seed), one after another, each in
its own run folder under the bake-off folder. After each one the leaderboard (finished candidates,
best validation accuracy first) is written to ``leaderboard.json`` and reported, so a Stop keeps
everything that finished. A time budget skips candidates whose estimated time (from the epochs
measured so far) would not fit in what is left.

The default set (:func:`default_candidates`) and each candidate's epochs under a budget
(:func:`plan_epochs`) are priced before anything runs from the measured cost of each model
(:mod:`engine.models.costs`, :mod:`engine.experiments.estimates`). A candidate whose weights are not on
this computer is tried only when the caller allows downloads (``allow_downloads``): the bake-off then
downloads them just before the model's first candidate (progress through events, Stop honoured); a
failed download skips that model's candidates with the reason. Without it they are skipped with the
download they need.

Layout::

    OUT/bakeoff.json         the dataset, candidates, epochs, seed and budget
    OUT/leaderboard.json     {"leaderboard": [...], "best": {...}, "skipped": [...], "cancelled": ...}
    OUT/01-<model>-<strategy>/   a run folder per candidate (config.json, metrics.jsonl, model.pt, ...)
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.core.config import STRATEGIES, TrainConfig
from engine.core.device import resolve_device
from engine.core.errors import Cancelled, StopCheck, TransferStudioError, raise_if_stopped
from engine.core.files import atomic_write_text
from engine.core.locations import default_runs_root
from engine.core.rundir import LEADERBOARD_FILE, folder_safe
from engine.core.sizes import format_size
from engine.core.small_files import read_json
from engine.data.datasets import DatasetReport, scan_dataset
from engine.data.outputs import check_output_folder
from engine.experiments.bakeoff_eta import BakeoffEta, CandidateWork, candidate_work
from engine.experiments.estimates import (
    DatasetSize,
    dataset_size,
    describe_download,
    download_seconds,
    epoch_seconds,
    feature_extract_seconds,
    fine_tune_seconds,
)
from engine.models.costs import ModelCost, model_cost, speed_factor
from engine.models.registry import ModelInfo, get_model_info, list_models
from engine.models.weights import download_weights, weights_status
from engine.training import events as ev
from engine.training.data_path import feature_views
from engine.training.recipe import run_preprocessing
from engine.training.trainer import train

log = logging.getLogger(__name__)

BAKEOFF_FILE = "bakeoff.json"
BUILT_IN_MODEL = "efficientnet_lite0"
#: On a CPU, cached torchvision models above this size are left out of the default set (too slow).
CPU_DEFAULT_MAX_PARAMS = 30_000_000
#: Strategies tried for cached torchvision models in the default set (scratch needs far more epochs).
PRETRAINED_STRATEGIES = ("feature-extract", "fine-tune")
#: Downloadable backbones in the default set: the strongest that fit, one per family.
MAX_DOWNLOADABLE = 2
#: Without a budget, the downloadable backbones chosen are those that fit in this many minutes each.
UNBUDGETED_MINUTES = 15.0
#: The dataset the default set is priced for when none is given: a few hundred photos.
TYPICAL_DATASET = DatasetSize(train=400, val=100)
#: The skipped reason's advice, when downloads were not allowed (the CLI's; the window words its own).
CLI_DOWNLOAD_HINT = "run with --download"


@dataclass(frozen=True)
class Candidate:
    """One model x strategy to try."""

    model: str
    strategy: str

    @property
    def label(self) -> str:
        return f"{self.model} · {self.strategy}"


#: How a candidate ended: ranked (finished), stopped by the user, failed, or not tried (skipped).
EntryStatus = Literal["finished", "stopped", "failed", "skipped"]


@dataclass(frozen=True)
class Entry:
    """What one candidate gave: ``status`` is finished, stopped, failed or skipped (with a reason)."""

    model: str
    strategy: str
    status: EntryStatus = "finished"  # a leaderboard row of an older version says nothing: it finished
    best_val_acc: float = 0.0
    best_epoch: int = 0
    seconds: float = 0.0
    epochs: int = 0
    run_dir: str | None = None
    bundle: str | None = None
    size_bytes: int | None = None
    reason: str | None = None
    features_cached: bool = False  # its features came from the cache: its seconds are not a first run's

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "strategy": self.strategy,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "seconds": round(self.seconds, 3),
            "run_dir": self.run_dir,
            "bundle": self.bundle,
            "size_bytes": self.size_bytes,
            "epochs": self.epochs,
            "status": self.status,
            "reason": self.reason,
            "features_cached": self.features_cached,
        }


def rank(entries: Sequence[Entry]) -> list[Entry]:
    """The finished entries, best validation accuracy first (the faster one first on a tie)."""
    finished = [e for e in entries if e.status == "finished"]
    return sorted(finished, key=lambda e: (-e.best_val_acc, e.seconds))


@dataclass
class BakeoffResult:
    """Every candidate's entry, in the order they were tried, and where they were written."""

    out: Path
    entries: list[Entry] = field(default_factory=list)
    cancelled: bool = False

    @property
    def leaderboard(self) -> list[Entry]:
        return rank(self.entries)

    @property
    def best(self) -> Entry | None:
        board = self.leaderboard
        return board[0] if board else None

    def to_json(self) -> dict[str, Any]:
        board = [e.to_json() for e in self.leaderboard]
        return {
            "leaderboard": board,
            "best": board[0] if board else None,
            "skipped": [e.to_json() for e in self.entries if e.status != "finished"],
            "cancelled": self.cancelled,
            "out": str(self.out),
        }


# -- events (besides the training events of the candidate being trained, which are passed on) -------


@dataclass(frozen=True)
class BakeoffStarted:
    out: str
    candidates: tuple[Candidate, ...]
    epochs: int | None


@dataclass(frozen=True)
class CandidateStarted:
    index: int  # 0-based
    total: int
    candidate: Candidate
    run_dir: str


@dataclass(frozen=True)
class CandidateEnded:
    index: int
    entry: Entry
    leaderboard: tuple[Entry, ...]  # finished entries so far, best first


@dataclass(frozen=True)
class BakeoffProgress:
    """After each batch of a candidate: the bake-off's wall time so far and its estimated seconds left
    (the running candidate's own estimate plus a price for each one to come)."""

    elapsed_s: float
    eta_s: float


@dataclass(frozen=True)
class BakeoffFinished:
    result: BakeoffResult


@dataclass(frozen=True)
class DownloadStarted:
    """The weights of ``model`` are being downloaded (``num_bytes`` about, from the catalog)."""

    model: str
    num_bytes: int | None


@dataclass(frozen=True)
class DownloadProgress:
    model: str
    done: int
    total: int  # 0 when the server does not say
    bytes_per_s: float


@dataclass(frozen=True)
class DownloadEnded:
    """``error`` None: the weights are on disk now; else why not (the model's candidates are skipped)."""

    model: str
    error: str | None = None


BakeoffEvent = (
    BakeoffStarted
    | CandidateStarted
    | CandidateEnded
    | BakeoffProgress
    | BakeoffFinished
    | DownloadStarted
    | DownloadProgress
    | DownloadEnded
)
EventCallback = Callable[[BakeoffEvent | ev.Event], None]


# -- choosing candidates ----------------------------------------------------------------------------


def needs_download(candidate: Candidate) -> bool:
    """Whether ``candidate`` needs pretrained weights that are not on this computer."""
    return candidate.strategy != "scratch" and weights_status(candidate.model) == "download"


def default_candidates(
    device: str = "auto",
    *,
    data: DatasetSize | None = None,
    budget_minutes: float | None = None,
    speed: float | None = None,
) -> list[Candidate]:
    """What is worth trying here, priced from each model's measured cost on ``data`` (default: a
    few hundred photos) on this machine (``speed``: its factor, timed once when None).

    - The built-in model with feature-extract and fine-tune; with scratch too when there is no budget,
      or when the budget still covers scratch's default epochs after everything else (from scratch
      needs many epochs to be worth anything).
    - Each torchvision model already downloaded (on a CPU, those up to 30M parameters) with the
      pretrained strategies, when its feature-extract run fits the budget.
    - The strongest downloadable backbones (by published ImageNet top-1; one per family, at most
      :data:`MAX_DOWNLOADABLE`) whose feature-extract run fits what the budget leaves (without a
      budget: :data:`UNBUDGETED_MINUTES` each), with fine-tune too when one epoch of it also fits.
      Whether they are downloaded is the bake-off's caller's decision (``allow_downloads``).
    """
    data = data or TYPICAL_DATASET
    on_cpu = resolve_device(device).type == "cpu"
    factor = speed if speed is not None else speed_factor(resolve_device(device))

    def cost(name: str) -> ModelCost:
        return model_cost(name).scaled(factor)

    budget = budget_minutes * 60 if budget_minutes is not None else None
    lite = cost(BUILT_IN_MODEL)
    candidates = [Candidate(BUILT_IN_MODEL, "feature-extract"), Candidate(BUILT_IN_MODEL, "fine-tune")]
    fine_tune_epochs = TrainConfig.for_strategy("fine-tune").epochs
    used = feature_extract_seconds(lite, data) + fine_tune_seconds(lite, data, fine_tune_epochs)
    for info in list_models():
        if info.name == BUILT_IN_MODEL or info.source == "timm" or weights_status(info.name) != "cached":
            continue
        if on_cpu and info.num_params > CPU_DEFAULT_MAX_PARAMS:
            continue
        seconds = feature_extract_seconds(cost(info.name), data)
        if budget is not None and used + seconds > budget:
            continue
        used += seconds
        candidates.extend(Candidate(info.name, s) for s in PRETRAINED_STRATEGIES)
    families: set[str] = set()
    extras: list[Candidate] = []
    for info in _strongest_first([i for i in list_models() if i.source == "timm"]):
        if len(families) >= MAX_DOWNLOADABLE or info.family in families:
            continue
        model_cost_ = cost(info.name)
        fe = feature_extract_seconds(model_cost_, data)
        fetch = download_seconds(info.download_bytes) if weights_status(info.name) == "download" else 0.0
        room = (budget - used) if budget is not None else UNBUDGETED_MINUTES * 60
        if fe + fetch > room:
            continue
        families.add(info.family)
        used += fe + fetch
        extras.append(Candidate(info.name, "feature-extract"))
        one_epoch = fine_tune_seconds(model_cost_, data, 1)
        if one_epoch <= room - fe - fetch:
            used += one_epoch
            extras.append(Candidate(info.name, "fine-tune"))
    candidates.extend(c for c in extras if c.strategy == "feature-extract")
    candidates.extend(c for c in extras if c.strategy == "fine-tune")
    scratch_epochs = TrainConfig.for_strategy("scratch").epochs
    if budget is None or used + fine_tune_seconds(lite, data, scratch_epochs, head_first=False) <= budget:
        candidates.insert(2, Candidate(BUILT_IN_MODEL, "scratch"))
    return candidates


def _strongest_first(infos: list[ModelInfo]) -> list[ModelInfo]:
    return sorted(infos, key=lambda i: (-(i.published_top1 or 0.0), i.num_params))


def describe_candidate_download(model: str) -> str:
    """E.g. ``timm:vit_small_patch14_dinov2.lvd142m: 88.2 MB, about 18 s to download``."""
    return f"{model}: {describe_download(get_model_info(model).download_bytes)}"


def plan_epochs(
    candidates: Sequence[Candidate],
    data: DatasetSize,
    *,
    budget_minutes: float | None,
    epochs: int | None = None,
    speed: float = 1.0,
    downloads: Sequence[str] = (),
) -> list[int]:
    """Each candidate's epochs. Without a budget: ``epochs``, or each strategy's default. With one,
    what is left after the feature-extract runs and the ``downloads`` (model names) is shared among
    the candidates that train through the network (fine-tune, scratch), from each one's estimated
    seconds per epoch: each gets at least 1 epoch and at most ``epochs`` (or its strategy's default);
    time one cannot use goes to the others."""
    caps = [epochs or TrainConfig.for_strategy(c.strategy).epochs for c in candidates]
    if budget_minutes is None:
        return caps
    costs = {c.model: model_cost(c.model).scaled(speed) for c in candidates}
    left = budget_minutes * 60 - sum(
        download_seconds(get_model_info(m).download_bytes) for m in set(downloads)
    )
    tuned: list[int] = []
    for i, c in enumerate(candidates):
        if c.strategy == "feature-extract":
            left -= feature_extract_seconds(costs[c.model], data)
        else:
            tuned.append(i)
    planned = list(caps)
    # The cheapest to fill first, so the time a capped candidate leaves goes to the others.
    order = sorted(tuned, key=lambda i: caps[i] * epoch_seconds(costs[candidates[i].model], data))
    for n, i in enumerate(order):
        c = candidates[i]
        share = max(left, 0.0) / (len(order) - n)
        start = fine_tune_seconds(costs[c.model], data, 0, head_first=c.strategy == "fine-tune")
        per_epoch = max(epoch_seconds(costs[c.model], data), 1e-6)
        planned[i] = max(1, min(caps[i], math.floor((share - start) / per_epoch)))
        left -= start + planned[i] * per_epoch
    return planned


def candidates_from(models: Sequence[str], strategies: Sequence[str]) -> list[Candidate]:
    """Every model x strategy, in that order; TransferStudioError for an unknown name."""
    for model in models:
        get_model_info(model)
    for strategy in strategies:
        if strategy not in STRATEGIES:
            raise TransferStudioError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if not models or not strategies:
        raise TransferStudioError("a bake-off needs at least one model and one strategy")
    return list(dict.fromkeys(Candidate(m, s) for m in models for s in strategies))  # each once, in order


# -- the time budget --------------------------------------------------------------------------------


class _Estimator:
    """Seconds a candidate will take, from the seconds per epoch measured for earlier candidates."""

    def __init__(self) -> None:
        self.per_epoch: dict[Candidate, float] = {}

    def record(self, candidate: Candidate, seconds: float, epochs: int) -> None:
        if epochs > 0:
            self.per_epoch[candidate] = seconds / epochs

    def estimate(self, candidate: Candidate, epochs: int) -> float | None:
        """None when nothing comparable was measured yet (then the candidate is simply tried)."""
        if candidate in self.per_epoch:
            return self.per_epoch[candidate] * epochs
        params = get_model_info(candidate.model).num_params
        same_strategy = [(c, s) for c, s in self.per_epoch.items() if c.strategy == candidate.strategy]
        pool = same_strategy or list(self.per_epoch.items())
        if not pool:
            return None
        # Time scales roughly with the parameter count for the same kind of work.
        rates = [s / max(get_model_info(c.model).num_params, 1) for c, s in pool]
        return sum(rates) / len(rates) * params * epochs


# -- the bake-off -----------------------------------------------------------------------------------


def new_bakeoff_dir(root: Path | None = None) -> Path:
    """A fresh folder for a bake-off under the runs folder."""
    root = root or default_runs_root()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = root / f"{stamp}-bakeoff", 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-bakeoff-{n}"
    return candidate


def run_bakeoff(
    data_root: str | Path,
    candidates: Sequence[Candidate] | None = None,
    *,
    epochs: int | None = None,
    budget_minutes: float | None = None,
    device: str = "auto",
    seed: int = 0,
    out: str | Path | None = None,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    allow_downloads: bool = False,
    download_hint: str = CLI_DOWNLOAD_HINT,
) -> BakeoffResult:
    """Train each candidate on one frozen split, one after another; returns the ranked result.

    ``candidates`` None is the default set for this dataset and budget (:func:`default_candidates`).
    ``epochs`` None uses each strategy's default; with ``budget_minutes`` the epochs of candidates that
    train through the network come from the budget (:func:`plan_epochs`, ``epochs`` their most). A
    candidate whose weights are not on this computer is downloaded first when ``allow_downloads``,
    else skipped with the download it needs and ``download_hint``. A Stop ends the candidate being
    trained (its best epoch so far is kept in its run folder, but an unfinished candidate is not
    ranked) and skips the rest.
    """
    if candidates is not None and not candidates:
        raise TransferStudioError("a bake-off needs at least one candidate")
    if budget_minutes is not None and not (math.isfinite(budget_minutes) and budget_minutes > 0):
        raise TransferStudioError(
            f"the time budget must be a positive number of minutes, not {budget_minutes}"
        )
    if epochs is not None and epochs < 1:
        raise TransferStudioError("epochs must be at least 1")
    emit: EventCallback = on_event or (lambda _event: None)
    stop: StopCheck = should_stop or (lambda: False)
    torch_device = resolve_device(device)  # an unusable device fails now, not once per candidate
    data_root = Path(data_root)
    out_dir = Path(out) if out is not None else new_bakeoff_dir()
    check_output_folder(out_dir, what="the bake-off", datasets=[data_root])  # before anything is written
    # The one scan every candidate uses: the same files and split as `scan` and a single training run.
    report = scan_dataset(
        data_root, seed=seed, on_progress=lambda _done, _total: raise_if_stopped(stop, "bake-off")
    )
    size = dataset_size(report)
    speed = speed_factor(torch_device) if candidates is None or budget_minutes is not None else 1.0
    if candidates is None:
        candidates = default_candidates(device, data=size, budget_minutes=budget_minutes, speed=speed)
    to_fetch = sorted({c.model for c in candidates if needs_download(c)})
    planned = plan_epochs(
        candidates,
        size,
        budget_minutes=budget_minutes,
        epochs=epochs,
        speed=speed,
        downloads=to_fetch if allow_downloads else (),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "data_root": str(data_root.resolve()),
        "candidates": [[c.model, c.strategy] for c in candidates],
        "epochs": epochs,
        "epochs_each": planned,
        "budget_minutes": budget_minutes,
        "device": device,
        "seed": seed,
        "allow_downloads": allow_downloads,
    }
    atomic_write_text(out_dir / BAKEOFF_FILE, json.dumps(settings, indent=2) + "\n")
    result = BakeoffResult(out_dir)
    configs = [
        TrainConfig.for_strategy(c.strategy, model=c.model, epochs=n, device=device, seed=seed)
        for c, n in zip(candidates, planned, strict=True)
    ]
    overall = BakeoffEta([_work(config, report) for config in configs])
    emit(BakeoffStarted(str(out_dir), tuple(candidates), epochs))
    estimator = _Estimator()
    fetched: dict[str, str | None] = {}  # model -> None (on disk now) or why it is not
    started = time.perf_counter()
    for index, (candidate, config) in enumerate(zip(candidates, configs, strict=True)):
        if result.cancelled or stop():
            result.cancelled = True
            result.entries.append(Entry(candidate.model, candidate.strategy, "skipped", reason="stopped"))
            continue
        fetch_first = candidate.model in to_fetch and candidate.strategy != "scratch"
        reason = None
        if fetch_first and not allow_downloads:  # the first thing in its way, whatever the budget
            size_text = format_size(get_model_info(candidate.model).download_bytes or 0)
            reason = f"needs a download of {size_text} ({download_hint})"
        if reason is None:
            reason = _over_budget(estimator, candidate, config.epochs, budget_minutes, started)
        if reason is None and fetch_first:
            if candidate.model not in fetched:
                try:
                    fetched[candidate.model] = _download(candidate.model, emit, stop)
                except Cancelled:
                    result.cancelled = True
                    fetched[candidate.model] = "the download was cancelled"
            reason = fetched[candidate.model]
        if reason is not None:
            entry = Entry(candidate.model, candidate.strategy, "skipped", reason=reason)
            overall.skip(index)
        else:
            run_dir = out_dir / f"{index + 1:02d}-{folder_safe(candidate.model)}-{candidate.strategy}"
            emit(CandidateStarted(index, len(candidates), candidate, str(run_dir)))
            entry = _train_candidate(
                candidate,
                config,
                data_root,
                run_dir,
                report,
                _with_overall(emit, overall, index, started),
                stop,
            )
            overall.ended(index, entry.seconds, entry.features_cached)
            if entry.status == "finished":
                estimator.record(candidate, entry.seconds, entry.epochs)
            result.cancelled = entry.status == "stopped"
        result.entries.append(entry)
        _write_leaderboard(result)
        emit(CandidateEnded(index, entry, tuple(result.leaderboard)))
    _write_leaderboard(result)
    emit(BakeoffFinished(result))
    return result


def _download(model: str, emit: EventCallback, stop: StopCheck) -> str | None:
    """Download ``model``'s weights; None when they are on disk, else why not. Cancelled on Stop."""
    emit(DownloadStarted(model, get_model_info(model).download_bytes))
    try:
        download_weights(
            model,
            on_progress=lambda done, total, rate: emit(DownloadProgress(model, done, total, rate)),
            should_stop=stop,
        )
    except Cancelled:
        emit(DownloadEnded(model, "the download was cancelled"))
        raise
    except Exception as exc:  # noqa: BLE001 - offline, a server error, a full disk: skip this model
        error = f"the download failed: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}"
        log.warning("bake-off: %s: %s", model, error)
        emit(DownloadEnded(model, error))
        return error
    if weights_status(model) == "download":  # nothing came down where the model is built from
        error = "the download failed: its weights are still not on this computer"
        emit(DownloadEnded(model, error))
        return error
    emit(DownloadEnded(model))
    return None


def _work(config: TrainConfig, report: DatasetReport) -> CandidateWork:
    """What ``config`` will compute on ``report``'s split (for the bake-off's estimate of time left)."""
    try:
        px = run_preprocessing(config, report).crop_size
    except TransferStudioError:  # an input size the model cannot take: the candidate will fail fast
        px = 0
    views = feature_views(config.augment, config.feature_views, resolve_device(config.device))
    return candidate_work(
        config, report, views=views, input_px=px, cached_features=config.strategy == "feature-extract"
    )


def _with_overall(emit: EventCallback, overall: BakeoffEta, index: int, started: float) -> EventCallback:
    """``emit`` that follows each of candidate ``index``'s batches with the whole bake-off's progress."""

    def on_event(event: BakeoffEvent | ev.Event) -> None:
        emit(event)
        if isinstance(event, ev.BatchProgress):
            left = overall.seconds_left(index, event.elapsed_s, event.eta_s)
            emit(BakeoffProgress(time.perf_counter() - started, left))

    return on_event


def _over_budget(
    estimator: _Estimator, candidate: Candidate, epochs: int, budget_minutes: float | None, started: float
) -> str | None:
    if budget_minutes is None:
        return None
    left = budget_minutes * 60 - (time.perf_counter() - started)
    estimate = estimator.estimate(candidate, epochs)
    if left <= 0:
        return "the time budget is used up"
    if estimate is not None and estimate > left:
        return f"would not fit the time budget (about {estimate:.0f} s needed, {left:.0f} s left)"
    return None


def _train_candidate(
    candidate: Candidate,
    config: TrainConfig,
    data_root: Path,
    run_dir: Path,
    report: DatasetReport,
    emit: EventCallback,
    stop: StopCheck,
) -> Entry:
    try:
        run = train(config, data_root, run_dir=run_dir, on_event=emit, should_stop=stop, report=report)
    except TransferStudioError as exc:  # e.g. weights that cannot be downloaded: try the next one
        log.warning("bake-off candidate %s failed: %s", candidate.label, exc)
        return Entry(candidate.model, candidate.strategy, "failed", run_dir=str(run_dir), reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a model quirk or a device error ends this candidate only
        log.exception("bake-off candidate %s failed", candidate.label)
        reason = f"{type(exc).__name__}: {exc}"
        return Entry(candidate.model, candidate.strategy, "failed", run_dir=str(run_dir), reason=reason)
    bundle = run.bundle_path
    return Entry(
        model=candidate.model,
        strategy=candidate.strategy,
        status="stopped" if run.cancelled else "finished",
        best_val_acc=run.best_val_acc,
        best_epoch=run.best_epoch,
        seconds=run.seconds,
        epochs=run.epochs_completed,
        run_dir=str(run.run_dir),
        bundle=str(bundle) if bundle else None,
        size_bytes=bundle.stat().st_size if bundle and bundle.exists() else None,
        reason="stopped by the user" if run.cancelled else None,
        features_cached=run.features_cached,
    )


def _write_leaderboard(result: BakeoffResult) -> None:
    atomic_write_text(result.out / LEADERBOARD_FILE, json.dumps(result.to_json(), indent=2) + "\n")


@dataclass(frozen=True)
class LeaderboardFile:
    """What ``leaderboard.json`` holds (:meth:`BakeoffResult.to_json`), as it is read back."""

    leaderboard: list[Entry]
    best: Entry | None = None
    skipped: list[Entry] = field(default_factory=list)
    cancelled: bool = False
    out: str = ""


def read_leaderboard(folder: str | Path) -> BakeoffResult:
    """A bake-off folder's leaderboard.json, as the result that wrote it (its finished entries best
    first, then the others); TransferStudioError if it has none or it is damaged."""
    path = Path(folder) / LEADERBOARD_FILE
    if not path.is_file():
        raise TransferStudioError(f"{folder} is not a bake-off folder (no {LEADERBOARD_FILE})")
    board = read_json(path, LeaderboardFile)
    return BakeoffResult(Path(folder), [*board.leaderboard, *board.skipped], cancelled=board.cancelled)
