"""A training run from start to end: its folder, its status, its events, and the loop in between.

:func:`train` and :func:`resume` are the entry points. Each scans the dataset, builds the run's recipe
(:func:`engine.training.recipe.set_up`: model, optimizer, schedule, loss and precision in one
:class:`~engine.training.state.TrainingState`), opens its data path (cached features or images,
:mod:`engine.training.data_path`), optionally restores a checkpoint, then runs the epochs of
:mod:`engine.training.loop`. A Stop (``should_stop()`` turning true, polled between batches) ends the
run cleanly with the best epoch's bundle; callers read ``RunResult.cancelled``.

Callers drive it through two plain callables: ``on_event`` receives the events of
:mod:`engine.training.events` and ``should_stop`` is polled between batches (both carried by a
:class:`~engine.training.state.Caller`). The CLI and the GUI's QThread worker are both thin adapters
over :func:`train` and :func:`resume`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.core.config import INPUT_SIZE_AUTO, TrainConfig
from engine.core.device import describe_device, resolve_device
from engine.core.errors import Cancelled, StopCheck, TransferStudioError
from engine.core.files import cpu_copy
from engine.core.run_lock import RunLock
from engine.core.rundir import RunDir
from engine.data.datasets import DatasetReport, scan_dataset
from engine.models.bundle import Bundle, save_bundle
from engine.models.heads import HeadSpec, head_spec_of
from engine.training import events as ev
from engine.training import run_folder
from engine.training.calibrate import calibrate_run
from engine.training.checkpoints import CheckpointWriter, load_weights_snapshot
from engine.training.data_path import open_data_path
from engine.training.distributed import Dist, run_on_main, sync, sync_batchnorm, train_steps, wrap_ddp
from engine.training.early_stopping import EarlyStopping
from engine.training.head_fit import fit_head_first, head_first_applies
from engine.training.loop import halve_batch, plan_eta, restore_checkpoint, run_epoch
from engine.training.recipe import run_precision, set_up
from engine.training.state import Caller, EventCallback, TrainingState

log = logging.getLogger(__name__)

#: The training scan reports its progress every this many files (and at the end).
SCAN_PROGRESS_EVERY = 64


@dataclass
class RunResult:
    """What a finished (or stopped) run produced."""

    run_dir: Path
    bundle_path: Path | None
    best_epoch: int
    best_val_acc: float
    epochs_completed: int
    epochs: int
    seconds: float
    device: str
    cancelled: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False  # early stopping ended the run before its planned epochs
    world_size: int = 1  # processes that trained it together (torchrun)
    features_cached: bool = False  # its feature pass was read from the cache: a first run takes longer

    def to_json(self) -> dict[str, Any]:
        return {
            "world_size": self.world_size,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs_completed,
            "epochs_planned": self.epochs,
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "bundle": str(self.bundle_path) if self.bundle_path else None,
            "run_dir": str(self.run_dir),
            "cancelled": self.cancelled,
            "stopped_early": self.stopped_early,
            "history": self.history,
        }


# -- entry points ---------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    data_root: str | Path,
    *,
    run_dir: str | Path | None = None,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    report: DatasetReport | None = None,
    dist: Dist | None = None,
) -> RunResult:
    """Train ``config.model`` on the dataset at ``data_root``; writes everything to ``run_dir``.

    The folder must be new or empty and outside the dataset; it is locked while the run trains, so a
    second run into it is refused (:mod:`engine.training.run_folder`). ``dist``: this process's place in
    a multi-process run (torchrun); rank 0 alone creates, locks and writes the run folder, and only its
    ``on_event`` should be given.
    """
    d = dist or Dist.single()
    caller = Caller(on_event, should_stop, d)
    lock: RunLock | None = None

    def create() -> str:
        nonlocal lock
        created, lock = run_folder.create(config, Path(data_root), run_dir)
        return str(created.path)

    try:
        run = RunDir(run_on_main(create, d, "creating the run folder"), writes=d.is_main)
        _say_taken_over(lock, caller)
        return _run(config, Path(data_root), run, caller, report, None)
    finally:
        if lock is not None:
            lock.release()


def resume(
    run_dir: str | Path,
    *,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    epochs: int | None = None,
    dist: Dist | None = None,
    allow_changed_data: bool = False,
) -> RunResult:
    """Continue an interrupted run from its last finished epoch (optionally to a new epoch count).

    Nothing in the run folder is written before the run is known to go on: it is not training in another
    process (its lock), its settings and checkpoint read, and its dataset has the same classes and (unless
    ``allow_changed_data``) the same photos as when it started. A multi-process run may resume with a
    different number of processes (``dist``): rank 0 reads the folder and shares the checkpoint.
    """
    d = dist or Dist.single()
    caller = Caller(on_event, should_stop, d)
    lock: RunLock | None = None

    def load() -> tuple[dict[str, Any], str, dict[str, Any], bool]:
        nonlocal lock
        opened, lock = run_folder.open_for_resume(run_dir, epochs)
        return opened.config.to_dict(), str(opened.data_root), opened.checkpoint, opened.epochs_changed

    try:
        config_dict, data_root, checkpoint, epochs_changed = run_on_main(load, d, "reading the run to resume")
        config = TrainConfig.from_dict(config_dict)
        run = RunDir(run_dir, writes=d.is_main)
        opened = run_folder.OpenedRun(run, config, Path(data_root), checkpoint, epochs_changed)
        resuming = Resuming(opened, allow_changed_data)
        _say_taken_over(lock, caller)
        return _run(config, Path(data_root), run, caller, None, checkpoint, resuming)
    finally:
        if lock is not None:
            lock.release()


def _say_taken_over(lock: RunLock | None, caller: Caller) -> None:
    if lock is not None and lock.took_over is not None:
        caller.warn(
            f"the run folder was locked by process {lock.took_over.pid}, which has ended (it was killed or "
            "crashed): this run took the lock over"
        )


@dataclass
class Resuming:
    """A resumed run's folder as it was read, and whether its dataset may have changed."""

    opened: run_folder.OpenedRun
    allow_changed_data: bool

    def check_then_write(self, report: DatasetReport, caller: Caller) -> None:
        """Check the dataset against the run's record; only then write what a resume changes."""
        change = run_folder.check_dataset(self.opened, report, self.allow_changed_data)
        run = self.opened.run
        if self.opened.epochs_changed:
            config_dict, data_root = run.read_config()
            run.write_config({**config_dict, "epochs": self.opened.config.epochs}, data_root)
        if change is not None:
            run.record_dataset_change(change)
            caller.warn(
                f"the dataset changed since this run started ({change['summary']} photos); going on as asked"
            )
        run.remove_stale_temp_files()


def _run(
    config: TrainConfig,
    data_root: Path,
    run: RunDir,
    caller: Caller,
    report: DatasetReport | None,
    checkpoint: dict[str, Any] | None,
    resuming: Resuming | None = None,
) -> RunResult:
    """The whole lifecycle: check, set up, (restore), epochs; a Stop ends it like a finished run.

    The run's status is written only once the device, the dataset and (for a resume) the run's record
    have been checked: a run that cannot start leaves its folder as it was.
    """
    state: TrainingState | None = None
    stopper: EarlyStopping | None = None
    started = False
    try:
        try:
            device = resolve_device(config.device)  # first: an unusable device is the one error to report
            if caller.dist.distributed:
                device = caller.dist.device(device.type)  # CUDA: the GPU of this process's LOCAL_RANK
            precision = run_on_main(
                lambda: run_precision(config, device, checkpoint), caller.dist, "choosing the precision"
            )
            if report is None or not report.same_split(config.val_fraction, config.seed):
                report = scan_for_training(data_root, config, caller)
            if resuming is not None:
                resuming.check_then_write(report, caller)
            previous = run.read_status()  # a resumed run's: its first start and its earlier sessions' time
            earlier = previous.get("seconds")
            caller.earlier_seconds = float(earlier) if isinstance(earlier, (int, float)) else 0.0
            run.write_status(
                "running",
                started=previous.get("started") or _now(),
                resumed=None if checkpoint is None else _now(),
                pid=os.getpid(),
                ended=None,
                message=None,
                stopped_early=None,
            )
            started = True
            _report_dataset_warnings(report, caller)
            state = set_up(config, report, run, device, caller.warn, precision)
            caller.info(f"computing in {precision.name}: {precision.reason}")
            if config.sync_batchnorm and caller.dist.distributed and not state.head_only:
                state.model = sync_batchnorm(state.model, caller.dist)
            _check_head(state)
            _record_dataset(run, report, state, caller, first=checkpoint is None)
            start_epoch = restore_checkpoint(state, checkpoint, caller) if checkpoint is not None else 1
            stopper = _early_stopping(state, checkpoint, caller)
            if stopper.stopped_at is not None:  # it stopped early and no more epochs were asked for
                start_epoch = config.epochs + 1
            plan_eta(state, report, start_epoch, caller)
            caller.emit(
                ev.RunStarted(
                    run_dir=str(run.path),
                    device=describe_device(state.device),
                    classes=tuple(state.classes),
                    num_train=len(report.splits["train"]),
                    num_val=len(report.splits["val"]),
                    epochs=config.epochs,
                    start_epoch=start_epoch,
                    batches_per_epoch=train_steps(
                        len(report.splits["train"]), state.batch_size, caller.dist.world_size
                    ),
                )
            )
            caller.eta.restart_clock()  # building the model is not a batch
            with (
                CheckpointWriter(run, caller.warn) as checkpoints,
                open_data_path(
                    state, report, caller, lambda: halve_batch(state, caller, training=False)
                ) as data,
            ):
                if start_epoch == 1 and head_first_applies(state):
                    fit_head_first(state, data, caller, lambda: halve_batch(state, caller, training=False))
                data.forward = wrap_ddp(data.forward, caller.dist)  # several processes: gradients averaged
                stopped = False
                try:
                    for epoch in range(start_epoch, config.epochs + 1):
                        run_epoch(state, data, epoch, caller, checkpoints)
                        if stopper.update(epoch, state.history[-1]):
                            caller.info(stopper.describe_stop(config.epochs))
                            break
                except Cancelled:
                    stopped = True
                state.calibration = calibrate_run(state, data, caller, stopped=stopped)
                if stopped:
                    raise Cancelled("training stopped")
        except Cancelled:
            return _finish(config, run, state, caller, cancelled=True)
        stopped_early = stopper is not None and stopper.stopped_at is not None
        return _finish(config, run, state, caller, cancelled=False, stopped_early=stopped_early)
    except TransferStudioError as exc:
        if started:
            run.write_status("failed", ended=_now(), message=str(exc), seconds=caller.total_seconds())
        caller.emit(ev.RunFailed(str(exc)))
        raise
    except Exception as exc:
        log.exception("training failed")
        message = f"training failed: {type(exc).__name__}: {exc}"
        if started:
            run.write_status("failed", ended=_now(), message=message, seconds=caller.total_seconds())
        caller.emit(ev.RunFailed(message))
        raise


def _now() -> str:
    """The local time as an ISO 8601 string with its UTC offset (what status.json records)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def scan_for_training(data_root: Path, config: TrainConfig, caller: Caller) -> DatasetReport:
    """The same scan as ``transfer-studio scan`` and the Data tab (so the same files and split), with
    progress events and Stop."""

    def progress(done: int, total: int) -> None:
        caller.check_stop()
        if done == total or done % SCAN_PROGRESS_EVERY == 0:
            caller.emit(ev.ScanProgress(done=done, total=total))

    return scan_dataset(data_root, val_fraction=config.val_fraction, seed=config.seed, on_progress=progress)


def _report_dataset_warnings(report: DatasetReport, caller: Caller) -> None:
    for warning in report.warnings:
        caller.warn(warning)
    if report.skipped:  # each skipped file once, with its reason
        lines = [f"  {report.relative(skipped.path)}: {skipped.reason}" for skipped in report.skipped]
        caller.warn(f"{len(report.skipped)} file(s) skipped, not used for training:\n" + "\n".join(lines))


def _record_dataset(
    run: RunDir, report: DatasetReport, state: TrainingState, caller: Caller, first: bool
) -> None:
    """Say what the run trains on (images, exclusions, class balance), and record it in config.json when
    the run starts (a resume keeps the record; a change of the dataset is recorded as its own entry)."""
    ratio = report.imbalance()
    if state.balance != "none":
        why = " (the classes are imbalanced)" if state.config.balance == "auto" else ""
        how = "a class-weighted loss" if state.balance == "weights" else "a class-balanced sampler"
        caller.info(f"Class balance: {how}{why}; largest/smallest training class {ratio:.1f}")
    if report.excluded:
        caller.info(f"{len(report.excluded)} photo(s) left out by the dataset's exclusion list")
    if state.config.input_size == INPUT_SIZE_AUTO:
        caller.info(
            f"Input size {state.preprocessing.crop_size} px (automatic, from the training photos' sizes)"
        )
    if first or not run.read_dataset():
        record = run_folder.dataset_record(
            report, state.balance, state.preprocessing.crop_size, describe_device(state.device)
        )
        run.record_dataset(record)


# -- the end --------------------------------------------------------------------------------------


def _check_head(state: TrainingState) -> None:
    """Refuse to train another head than the configured one (the bundle records the built one)."""
    built, asked = head_spec_of(state.model), HeadSpec.from_config(state.config)
    if built != asked:
        raise TransferStudioError(
            f"the model was built with the {built.kind} head, not the {asked.kind} head of the run's settings"
        )


def _early_stopping(state: TrainingState, checkpoint: dict[str, Any] | None, caller: Caller) -> EarlyStopping:
    """Early stopping for this session, replayed from a resumed run's history.

    A run that already stopped early stays stopped (``stopped_at`` set: nothing left to train) unless
    more epochs are now asked for than its checkpoint planned; then its patience counts again.
    """
    config = state.config
    stopper = EarlyStopping.from_config(config)
    stopper.replay(state.history)
    if stopper.stopped_at is None or checkpoint is None:
        return stopper
    stopped_at = stopper.stopped_at
    planned = int(checkpoint.get("config", {}).get("epochs", config.epochs))
    if config.epochs > planned:
        stopper.restart(stopped_at)
        caller.info(
            f"this run stopped early after epoch {stopped_at}; it goes on to epoch {config.epochs} as asked, "
            f"and early stopping counts {config.early_stopping_patience} epoch(s) again from here"
        )
    else:
        caller.info(
            f"this run stopped early after epoch {stopped_at} of {planned}: nothing is left to train "
            f"(ask for more than {planned} epochs to go on)"
        )
    return stopper


def _finish(
    config: TrainConfig,
    run: RunDir,
    state: TrainingState | None,
    caller: Caller,
    cancelled: bool,
    stopped_early: bool = False,
) -> RunResult:
    """Save the best epoch's bundle (if any epoch finished) and report the run's end."""
    bundle_path = None
    if state is not None and state.best_state is not None:
        load_weights_snapshot(state.model, state.best_state, state.head_names, state.head_only)
        bundle = Bundle(
            architecture=config.model,
            class_names=state.classes,
            state_dict=cpu_copy(state.model.state_dict()),
            preprocessing=state.preprocessing,
            metrics={
                "best_val_acc": state.best_val_acc,
                "best_epoch": state.best_epoch,
                "epochs_completed": len(state.history),
                "stopped_early": stopped_early,
                "history": state.history,
            },
            config=config.to_dict(),
            head=head_spec_of(state.model),
            calibration=state.calibration,
            precision=state.precision,
            fused=state.features_fused,
        )
        bundle_path = save_bundle(run.bundle_path, bundle) if run.writes else run.bundle_path
    sync(caller.dist, "saving the model")  # the other processes return once rank 0 saved it
    seconds = time.perf_counter() - caller.start_time
    run.write_status(
        "stopped" if cancelled else "finished",
        ended=_now(),
        seconds=caller.total_seconds(),
        stopped_early=stopped_early,
        features_cached=caller.features_cached,
    )
    device = describe_device(state.device) if state is not None else config.device
    history = state.history if state is not None else []
    result = RunResult(
        run_dir=run.path,
        bundle_path=bundle_path,
        best_epoch=state.best_epoch if state is not None else 0,
        best_val_acc=max(state.best_val_acc, 0.0) if state is not None else 0.0,
        epochs_completed=len(history),
        epochs=config.epochs,
        seconds=seconds,
        device=device,
        cancelled=cancelled,
        history=history,
        stopped_early=stopped_early,
        world_size=caller.dist.world_size,
        features_cached=caller.features_cached,
    )
    caller.emit(
        ev.RunFinished(
            best_epoch=result.best_epoch,
            best_val_acc=result.best_val_acc,
            epochs_completed=result.epochs_completed,
            seconds=seconds,
            bundle_path=str(bundle_path) if bundle_path else None,
            cancelled=cancelled,
            device=device,
            run_dir=str(run.path),
            stopped_early=stopped_early,
        )
    )
    return result
