"""The runs index: every run under a folder summarised from its small files; `transfer-studio runs`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers_images import SMALL_INPUT, make_image_folder

from engine.cli import main
from engine.core.config import TrainConfig
from engine.core.errors import TransferStudioError
from engine.core.rundir import RunDir
from engine.core.runs import find_run_dirs, list_runs, set_note, summarize_run


def _fake_run(
    folder, *, epochs_done=2, epochs=3, status=None, accs=(0.5, 0.75), checkpoint=True, bundle=False
) -> RunDir:
    run = RunDir(folder)
    run.path.mkdir(parents=True)
    run.write_config(TrainConfig(epochs=epochs).to_dict(), folder.parent / "data")
    rows = [
        {"epoch": e + 1, "val_acc": accs[e % len(accs)], "train_loss": 1.0, "seconds": 1.5}
        for e in range(epochs_done)
    ]
    run.write_metrics(rows)
    if status is not None:
        run.write_status(**status)
    if checkpoint:
        run.checkpoint_path.write_bytes(b"x")
    if bundle:
        run.bundle_path.write_bytes(b"x")
    return run


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_summary_reads_config_metrics_and_status(tmp_path):
    run = _fake_run(tmp_path / "a", status={"status": "stopped", "started": "2026-01-02T03:04:05+0000"})
    s = summarize_run(run.path)
    assert (s.model, s.strategy, s.dataset) == (
        "efficientnet_lite0",
        "feature-extract",
        str(tmp_path / "data"),
    )
    assert (s.epochs_done, s.epochs_planned, s.best_epoch, s.best_val_acc) == (2, 3, 2, 0.75)
    assert s.status == "stopped" and s.resumable and s.seconds == 3.0
    assert s.settings["epochs"] == 3 and s.started == "2026-01-02T03:04:05+0000"


@pytest.mark.parametrize(
    ("status", "checkpoint", "bundle", "epochs_done", "expected", "resumable"),
    [
        ({"status": "running", "pid": "dead"}, True, False, 1, "interrupted", True),
        ({"status": "running", "pid": "self"}, True, False, 1, "running", False),
        ({"status": "failed", "message": "no val image could be read"}, False, False, 0, "failed", False),
        ({"status": "finished"}, True, True, 3, "finished", False),
        (None, True, True, 3, "finished", False),  # a run from before status.json
        (None, True, False, 1, "interrupted", True),
    ],
)
def test_status_of_each_kind_of_run(tmp_path, status, checkpoint, bundle, epochs_done, expected, resumable):
    if status and status.get("pid") == "dead":
        status["pid"] = _dead_pid()
    elif status and status.get("pid") == "self":
        import os

        status["pid"] = os.getpid()
    run = _fake_run(
        tmp_path / "r", status=status, checkpoint=checkpoint, bundle=bundle, epochs_done=epochs_done
    )
    s = summarize_run(run.path)
    assert (s.status, s.resumable) == (expected, resumable)
    if expected == "failed":
        assert s.message == "no val image could be read" and s.best_val_acc is None


def test_listing_finds_nested_runs_newest_first_and_skips_damaged_ones(tmp_path):
    _fake_run(tmp_path / "old", status={"status": "finished", "started": "2026-01-01T00:00:00+0000"})
    _fake_run(
        tmp_path / "bakeoff" / "new", status={"status": "finished", "started": "2026-02-01T00:00:00+0000"}
    )
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "config.json").write_text("{not json")
    (tmp_path / "not-a-run").mkdir()
    runs = list_runs(tmp_path)
    assert [r.path.name for r in runs] == ["new", "old"]
    assert {p.name for p in find_run_dirs(tmp_path)} == {"new", "old", "damaged"}


def test_five_hundred_runs_list_completely(tmp_path):
    for i in range(500):
        _fake_run(
            tmp_path / f"run-{i:03d}",
            status={"status": "finished", "started": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}"},
        )
    import time

    started = time.perf_counter()
    runs = list_runs(tmp_path)
    seconds = time.perf_counter() - started
    assert len(runs) == 500 and runs[0].path.name == "run-499" and runs[-1].path.name == "run-000"
    # Issue 11's acceptance bound; it takes about 0.1 s here (benchmarks/runs_listing.py).
    assert seconds < 2.0


def test_names_and_notes(tmp_path):
    run = _fake_run(tmp_path / "r")
    set_note(run.path, name="  lite0 baseline ", note="first try")
    s = summarize_run(run.path)
    assert (s.name, s.note) == ("lite0 baseline", "first try")
    set_note(run.path, name="")
    assert summarize_run(run.path).name == "r"
    with pytest.raises(TransferStudioError, match="not a run folder"):
        set_note(tmp_path, name="x")


def test_a_real_run_is_listed_finished_with_its_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    from engine.training.trainer import train

    data = make_image_folder(tmp_path / "data", {"red": 6, "green": 6})
    config = TrainConfig.for_strategy(
        "feature-extract", epochs=1, batch_size=8, device="cpu", input_size=SMALL_INPUT
    )
    result = train(config, data, run_dir=tmp_path / "runs" / "one")
    assert main(["runs", "--root", str(tmp_path / "runs"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "finished" and row["has_bundle"] and not row["resumable"]
    assert row["best_val_acc"] == result.best_val_acc and row["epochs_done"] == 1
    status = RunDir(tmp_path / "runs" / "one").read_status()
    assert row["started"] and status["ended"]
    # Wall time, the feature pass included: more than the epochs alone.
    assert row["seconds"] == status["seconds"] > sum(r["seconds"] for r in result.history)


def test_cli_runs_text_and_missing_root(tmp_path, capsys):
    _fake_run(tmp_path / "r", status={"status": "stopped", "started": "2026-01-02T03:04:05+0000"})
    assert main(["runs", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "stopped*" in out and "0.7500" in out and "2/3" in out
    assert main(["runs", "--root", str(tmp_path / "nope")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_delete_moves_to_the_trash_or_deletes_after_confirmation(tmp_path, trash_home):
    from engine.core.runs import delete_run, move_run_to_trash

    run = _fake_run(tmp_path / "runs" / "r")
    move_run_to_trash(run.path)
    assert not run.path.exists()
    trashed = list(trash_home.iterdir())
    assert [p.name for p in trashed] == ["r"] and (trashed[0] / "config.json").is_file()
    other = _fake_run(tmp_path / "runs" / "s")
    delete_run(other.path)
    assert not other.path.exists()
    with pytest.raises(TransferStudioError, match="not a run folder"):
        delete_run(tmp_path / "runs")  # never a folder that is not a run
    assert (tmp_path / "runs").is_dir()


def test_duration_of_a_run_without_recorded_seconds_comes_from_its_start_and_end(tmp_path):
    run = _fake_run(tmp_path / "r", status={"status": "finished", "started": "2026-01-02T10:00:00+0000"})
    run.write_status("finished", ended="2026-01-02T10:03:05+0000")
    assert summarize_run(run.path).seconds == 185.0
    run.write_status("finished", seconds=12.5)
    assert summarize_run(run.path).seconds == 12.5


def test_odd_run_folders_are_left_out_not_fatal(tmp_path):
    good = _fake_run(tmp_path / "good", status={"status": "finished"})
    odd = _fake_run(tmp_path / "odd-epochs")
    payload = json.loads(odd.config_path.read_text())
    payload["config"]["epochs"] = "three"
    odd.config_path.write_text(json.dumps(payload))
    rows = _fake_run(tmp_path / "odd-metrics")
    rows.metrics_path.write_text('[1, 2]\n{"epoch": 1, "val_acc": 0.5, "seconds": "x"}\n')
    not_a_dict = tmp_path / "list-config"
    not_a_dict.mkdir()
    (not_a_dict / "config.json").write_text('{"config": [1], "data_root": "/d"}')
    names = {r.path.name: r for r in list_runs(tmp_path)}
    assert set(names) == {"good", "odd-epochs", "odd-metrics"}
    assert names["odd-epochs"].epochs_planned == names["odd-epochs"].epochs_done == 2
    assert names["odd-metrics"].epochs_done == 1 and names["odd-metrics"].seconds == 0.0
    assert good.path.exists()


def test_a_run_that_is_training_cannot_be_deleted(tmp_path, trash_home):
    import os

    from engine.core.runs import delete_run, move_run_to_trash

    run = _fake_run(tmp_path / "r", status={"status": "running", "pid": os.getpid()})
    for delete in (delete_run, move_run_to_trash):
        with pytest.raises(TransferStudioError, match="still training"):
            delete(run.path)
    assert run.path.is_dir()


def test_status_times_with_either_offset_style_parse():
    from engine.core.runs import parse_status_time

    a = parse_status_time("2026-01-02T10:00:00+0000")
    b = parse_status_time("2026-01-02T11:00:00+01:00")
    assert a is not None and a == b
    assert parse_status_time("yesterday") is None and parse_status_time(None) is None
