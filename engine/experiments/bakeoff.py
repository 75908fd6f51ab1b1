"""The bake-off: train several model x strategy candidates on one frozen split and rank them.

Every candidate trains on the same scanned dataset (one split, one seed), one after another, each in
its own run folder under the bake-off folder. After each one the leaderboard (finished candidates,
best validation accuracy first) is written to ``leaderboard.json`` and reported, so a Stop keeps
everything that finished. A time budget skips candidates whose estimated time (from the epochs
measured so far) would not fit in what is left.

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
from engine.core.errors import StopCheck, TransferStudioError, raise_if_stopped
from engine.core.files import atomic_write_text
from engine.core.locations import default_runs_root
from engine.core.rundir import LEADERBOARD_FILE
from engine.core.small_files import read_json
from engine.data.datasets import DatasetReport, scan_dataset
from engine.data.outputs import check_output_folder
from engine.experiments.bakeoff_eta import BakeoffEta, CandidateWork, candidate_work
from engine.models.registry import get_model_info, list_models
from engine.models.weights import weights_status
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


BakeoffEvent = BakeoffStarted | CandidateStarted | CandidateEnded | BakeoffProgress | BakeoffFinished
EventCallback = Callable[[BakeoffEvent | ev.Event], None]


# -- choosing candidates ----------------------------------------------------------------------------


def default_candidates(device: str = "auto") -> list[Candidate]:
    """What this machine can run now: the built-in model with every strategy, plus each torchvision
    model whose weights are already cached (on a CPU, those up to 30M parameters) with the pretrained
    strategies."""
    candidates = [Candidate(BUILT_IN_MODEL, s) for s in STRATEGIES]
    on_cpu = resolve_device(device).type == "cpu"
    for info in list_models():
        if info.name == BUILT_IN_MODEL or weights_status(info.name) != "cached":
            continue
        if on_cpu and info.num_params > CPU_DEFAULT_MAX_PARAMS:
            continue
        candidates.extend(Candidate(info.name, s) for s in PRETRAINED_STRATEGIES)
    return candidates


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
    candidates: Sequence[Candidate],
    *,
    epochs: int | None = None,
    budget_minutes: float | None = None,
    device: str = "auto",
    seed: int = 0,
    out: str | Path | None = None,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
) -> BakeoffResult:
    """Train each candidate on one frozen split, one after another; returns the ranked result.

    ``epochs`` None uses each strategy's default. A Stop ends the candidate being trained (its best
    epoch so far is kept in its run folder, but an unfinished candidate is not ranked) and skips the rest.
    """
    if not candidates:
        raise TransferStudioError("a bake-off needs at least one candidate")
    if budget_minutes is not None and not (math.isfinite(budget_minutes) and budget_minutes > 0):
        raise TransferStudioError(
            f"the time budget must be a positive number of minutes, not {budget_minutes}"
        )
    if epochs is not None and epochs < 1:
        raise TransferStudioError("epochs must be at least 1")
    emit: EventCallback = on_event or (lambda _event: None)
    stop: StopCheck = should_stop or (lambda: False)
    resolve_device(device)  # an unusable device fails now, not once per candidate
    data_root = Path(data_root)
    out_dir = Path(out) if out is not None else new_bakeoff_dir()
    check_output_folder(out_dir, what="the bake-off", datasets=[data_root])  # before anything is written
    # The one scan every candidate uses: the same files and split as `scan` and a single training run.
    report = scan_dataset(
        data_root, seed=seed, on_progress=lambda _done, _total: raise_if_stopped(stop, "bake-off")
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "data_root": str(data_root.resolve()),
        "candidates": [[c.model, c.strategy] for c in candidates],
        "epochs": epochs,
        "budget_minutes": budget_minutes,
        "device": device,
        "seed": seed,
    }
    atomic_write_text(out_dir / BAKEOFF_FILE, json.dumps(settings, indent=2) + "\n")
    result = BakeoffResult(out_dir)
    configs = [
        TrainConfig.for_strategy(c.strategy, model=c.model, epochs=epochs, device=device, seed=seed)
        for c in candidates
    ]
    overall = BakeoffEta([_work(config, report) for config in configs])
    emit(BakeoffStarted(str(out_dir), tuple(candidates), epochs))
    estimator = _Estimator()
    started = time.perf_counter()
    for index, (candidate, config) in enumerate(zip(candidates, configs, strict=True)):
        if result.cancelled or stop():
            result.cancelled = True
            result.entries.append(Entry(candidate.model, candidate.strategy, "skipped", reason="stopped"))
            continue
        reason = _over_budget(estimator, candidate, config.epochs, budget_minutes, started)
        if reason is not None:
            entry = Entry(candidate.model, candidate.strategy, "skipped", reason=reason)
            overall.skip(index)
        else:
            run_dir = out_dir / f"{index + 1:02d}-{candidate.model}-{candidate.strategy}"
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
