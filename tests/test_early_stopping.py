"""Early stopping (issue 15, item 3), and label smoothing reaching the loss.

A run whose validation metric stops improving for ``early_stopping_patience`` epochs ends early,
says so (a Message, ``RunFinished``/``RunResult.stopped_early``, ``status.json``), writes metrics for
the epochs it ran only, and keeps the best epoch's weights in model.pt. Resuming it trains no
further unless more epochs are asked for.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers_images import SMALL_INPUT, make_image_folder

from engine.core.config import ConfigError, TrainConfig
from engine.core.rundir import RunDir
from engine.inference.evaluate import evaluate
from engine.models.bundle import load_bundle
from engine.training import events as ev
from engine.training import loop
from engine.training.early_stopping import EarlyStopping
from engine.training.trainer import resume, train

FAST = {
    "batch_size": 8,
    "workers": 0,
    "device": "cpu",
    "lr": 1e-2,
    "augment": False,
    "input_size": SMALL_INPUT,
}


@pytest.fixture(autouse=True)
def _feature_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path_factory.getbasetemp() / "early-stop-cache"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(
        tmp_path_factory.mktemp("early") / "data", {"red": 6, "green": 6}, splits=("train", "val")
    )


def _rows(losses: list[float], accs: list[float] | None = None) -> list[dict[str, float]]:
    accs = accs or [0.5] * len(losses)
    return [
        {"epoch": i, "val_loss": loss, "val_acc": acc} for i, (loss, acc) in enumerate(zip(losses, accs), 1)
    ]


def _stop_epoch(stopper: EarlyStopping, rows: list[dict[str, float]]) -> int | None:
    for row in rows:
        if stopper.update(int(row["epoch"]), row):
            return int(row["epoch"])
    return None


# -- the rule ---------------------------------------------------------------------------------------


def test_stops_after_patience_epochs_without_a_lower_loss():
    rows = _rows([1.0, 0.8, 0.7, 0.75, 0.9, 0.5])
    assert _stop_epoch(EarlyStopping(2), rows) == 5  # best 0.7 at epoch 3, then two worse epochs
    assert _stop_epoch(EarlyStopping(1), rows) == 4
    assert _stop_epoch(EarlyStopping(3), rows) is None  # epoch 6 improved in time
    assert _stop_epoch(EarlyStopping(0), rows) is None  # 0: off
    assert _stop_epoch(EarlyStopping(1), _rows([1.0, 1.0])) == 2  # equal is not better
    assert _stop_epoch(EarlyStopping(1), _rows([1.0, math.nan])) == 2  # NaN never is


def test_accuracy_metric_wants_higher_values():
    rows = _rows([1.0, 0.9, 0.8, 0.7], accs=[0.5, 0.9, 0.9, 0.8])
    stopper = EarlyStopping(2, "accuracy")
    assert _stop_epoch(stopper, rows) == 4 and stopper.best == 0.9 and stopper.best_epoch == 2
    assert "validation accuracy" in stopper.describe_stop(10) and "epoch 4 of 10" in stopper.describe_stop(10)


def test_replay_matches_a_live_run_including_a_restart():
    rows = _rows([1.0, 0.8, 0.9, 0.95, 0.85, 0.9, 0.95])
    live = EarlyStopping(2)
    assert _stop_epoch(live, rows[:4]) == 4
    live.restart(4)  # more epochs were asked for
    assert _stop_epoch(live, rows[4:]) == 6  # no lower loss than 0.8 in epochs 5 and 6
    replayed = EarlyStopping(2)
    replayed.replay(rows[:6])
    assert replayed.stopped_at == 6 and (replayed.best, replayed.best_epoch) == (0.8, 2)
    partial = EarlyStopping(2)
    partial.replay(rows[:5])
    assert partial.stopped_at is None  # the stop at 4 was overridden; 5 is one epoch into the restart


def test_config_fields_and_validation():
    config = TrainConfig()
    assert config.early_stopping_patience == 0 and config.early_stopping_metric == "loss"
    assert (
        TrainConfig(early_stopping_patience=3, early_stopping_metric="accuracy").early_stopping_patience == 3
    )
    for bad in (
        {"early_stopping_patience": -1},
        {"early_stopping_metric": "f1"},
        {"label_smoothing": 1.0},
        {"label_smoothing": -0.1},
    ):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


# -- in the trainer ---------------------------------------------------------------------------------


def _scripted_validation(monkeypatch, losses, accs, seen):
    """Replace the validation pass by a scripted (loss, accuracy) per epoch; record each epoch's head."""

    def scripted(state, _data, epoch, _caller):
        seen["criterion"] = state.criterion
        seen[epoch] = {
            k: v.detach().clone() for k, v in state.model.state_dict().items() if k.startswith("_fc")
        }
        return losses[epoch - 1], accs[epoch - 1]

    monkeypatch.setattr(loop, "evaluate", scripted)


def _head_of(bundle_path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_bundle(bundle_path).state_dict.items() if k.startswith("_fc")}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_ends_the_run_keeps_the_best_epoch_and_resume_respects_it(data, tmp_path, monkeypatch):
    losses = [1.0, 0.8, 0.7, 0.75, 0.9, 0.6, 0.65, 0.7, 0.8, 0.9, 1.0, 1.1]
    accs = [0.5, 0.6, 0.9, 0.8, 0.7, 0.95, 0.7, 0.7, 0.6, 0.6, 0.6, 0.6]
    seen: dict = {}
    _scripted_validation(monkeypatch, losses, accs, seen)
    config = TrainConfig.for_strategy(
        "feature-extract", epochs=10, early_stopping_patience=2, label_smoothing=0.1, **FAST
    )
    events: list[ev.Event] = []
    result = train(config, data, run_dir=tmp_path / "run", on_event=events.append)

    # Best loss 0.7 at epoch 3, then two epochs without a lower one: the run ends after epoch 5.
    assert [e.epoch for e in events if isinstance(e, ev.EpochEnd)] == [1, 2, 3, 4, 5]
    assert result.epochs_completed == 5 and result.epochs == 10
    assert result.stopped_early and not result.cancelled and result.to_json()["stopped_early"] is True
    finished = [e for e in events if isinstance(e, ev.RunFinished)]
    assert len(finished) == 1 and finished[0].stopped_early and finished[0].epochs_completed == 5
    stop_messages = [e.text for e in events if isinstance(e, ev.Message) and "early stopping" in e.text]
    assert len(stop_messages) == 1 and "after epoch 5 of 10" in stop_messages[0]
    run = RunDir(tmp_path / "run")
    assert [row["epoch"] for row in run.read_metrics()] == [1, 2, 3, 4, 5]
    status = json.loads(run.status_path.read_text())
    assert status["status"] == "finished" and status["stopped_early"] is True
    # model.pt holds the best epoch's weights (epoch 3: best accuracy, and here best loss too).
    assert result.best_epoch == 3
    assert _same(_head_of(result.bundle_path), seen[3]) and not _same(seen[3], seen[5])
    assert load_bundle(result.bundle_path).metrics["stopped_early"] is True
    assert seen["criterion"].label_smoothing == pytest.approx(0.1)  # label smoothing reaches the loss

    # Resuming it without asking for more epochs trains nothing.
    events.clear()
    again = resume(tmp_path / "run", on_event=events.append)
    assert not [e for e in events if isinstance(e, ev.EpochEnd)]
    assert again.stopped_early and again.epochs_completed == 5 and again.best_epoch == 3
    assert any("nothing is left to train" in e.text for e in events if isinstance(e, ev.Message))
    assert len(run.read_metrics()) == 5 and _same(_head_of(again.bundle_path), seen[3])

    # Asking for more epochs goes on, and the patience counts again: epoch 6 improves (0.6), 7 and 8
    # do not, so it stops after epoch 8, keeping epoch 6 (best accuracy).
    events.clear()
    more = resume(tmp_path / "run", on_event=events.append, epochs=12)
    assert [e.epoch for e in events if isinstance(e, ev.EpochEnd)] == [6, 7, 8]
    assert more.stopped_early and more.epochs_completed == 8 and more.best_epoch == 6
    assert _same(_head_of(more.bundle_path), seen[6])
    assert json.loads(run.status_path.read_text())["stopped_early"] is True


def test_without_early_stopping_every_epoch_runs(data, tmp_path, monkeypatch):
    seen: dict = {}
    _scripted_validation(monkeypatch, [1.0, 2.0, 3.0], [0.5, 0.5, 0.5], seen)
    config = TrainConfig.for_strategy("feature-extract", epochs=3, **FAST)
    result = train(config, data, run_dir=tmp_path / "run")
    assert result.epochs_completed == 3 and not result.stopped_early
    assert json.loads(RunDir(tmp_path / "run").status_path.read_text())["stopped_early"] is False
    assert seen["criterion"].label_smoothing == 0.0


def test_a_real_run_stops_once_validation_accuracy_stops_improving(data, tmp_path):
    """No script: colour classes are learned within a few epochs, after which accuracy cannot rise."""
    config = TrainConfig.for_strategy(
        "feature-extract", epochs=12, early_stopping_patience=1, early_stopping_metric="accuracy", **FAST
    )
    result = train(config, data, run_dir=tmp_path / "run")
    history = result.history
    assert result.stopped_early and len(history) < 12
    accs = [row["val_acc"] for row in history]
    assert all(later > earlier for earlier, later in zip(accs[:-2], accs[1:-1]))  # it improved until
    assert accs[-1] <= max(accs[:-1])  # the last epoch did not
    assert result.best_epoch == len(history) - 1
    # model.pt is that epoch: its accuracy and mean loss on val are that epoch's.
    best = history[result.best_epoch - 1]
    report = evaluate(result.bundle_path, data, split="val", device="cpu")
    assert report.accuracy == pytest.approx(best["val_acc"])
    assert report.mean_loss == pytest.approx(best["val_loss"], rel=1e-3)
    checkpoint = RunDir(tmp_path / "run").load_checkpoint()
    assert _same(_head_of(result.bundle_path), checkpoint["best_state"])
