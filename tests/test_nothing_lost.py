"""Nothing a user has is lost, whatever the input: every case found by trying the command line with
careless and hostile input ends in one line and a non-zero exit, changes no file it must not (the
dataset, the bundle and the run folder are compared byte for byte before and after), and prints no
traceback. RELIABILITY.md lists them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_images import SMALL_INPUT, make_image_folder

from engine.cli import main
from engine.core.config import TrainConfig
from engine.core.run_lock import RunLock, is_locked
from engine.core.rundir import RunDir
from engine.training.trainer import train

DEEP = "[" * 100_000 + "]" * 100_000


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` and its SHA-256: compared before and after a command."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """The one line the command printed on standard error (no traceback), holding every word."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def error_line(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """For a command that reports as it goes (train): exactly one error line, no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("transfer-studio: error:")]
    assert "Traceback" not in err, err
    assert len(errors) == 1, err
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("lost") / "data", {"ants": 6, "bees": 6}, size=(40, 40))


@pytest.fixture(scope="module")
def run_dir(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run of ``data`` (its bundle, checkpoint and files)."""
    config = TrainConfig.for_strategy(
        "feature-extract", epochs=1, batch_size=8, device="cpu", workers=1, input_size=SMALL_INPUT
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path_factory.mktemp("cache")))
        result = train(config, data, run_dir=tmp_path_factory.mktemp("runs") / "run")
    return result.run_dir


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


# -- outputs never overwrite what they must not ------------------------------------------------------


@pytest.mark.parametrize("target", ["val/bees/bees_00.png", "model.pt"])
def test_predict_csv_over_a_photo_or_the_model_is_refused(data, run_dir, target, capsys):
    where = data / target if target.startswith("val") else run_dir / target
    before_data, before_run = tree(data), tree(run_dir)
    assert cli("predict", run_dir / "model.pt", data / "val" / "bees", "--csv", where) == 1
    one_line_error(capsys, str(where))
    assert tree(data) == before_data and tree(run_dir) == before_run


def test_predict_csv_replaces_an_existing_csv_only_with_force(data, run_dir, tmp_path, capsys):
    out = tmp_path / "p.csv"
    out.write_text("mine\n")
    assert cli("predict", run_dir / "model.pt", data / "val" / "bees", "--csv", out) == 1
    one_line_error(capsys, "already exists", "--force")
    assert out.read_text() == "mine\n"
    assert cli("predict", run_dir / "model.pt", data / "val" / "bees", "--csv", out, "--force") == 0
    assert out.read_text().startswith("path,label")


def test_export_over_the_bundle_is_refused(run_copy, capsys):
    before = tree(run_copy)
    assert cli("export", run_copy / "model.pt", "--format", "onnx", "--out", run_copy / "model.pt") == 1
    one_line_error(capsys, "model bundle")
    assert cli("export", run_copy / "model.pt", "--format", "onnx", "--out", run_copy / "config") == 1
    one_line_error(capsys, "config.json")  # its metadata file (FILE.json) would be the run's config
    assert tree(run_copy) == before


@pytest.mark.parametrize("inside", [".", "train/ants"])
def test_train_into_the_dataset_is_refused(data, inside, capsys):
    before = tree(data)
    assert cli("train", data, "--epochs", "1", "--device", "cpu", "--out", data / inside) == 1
    one_line_error(capsys, "being used")
    assert tree(data) == before


def test_train_into_a_run_or_a_folder_holding_files_is_refused(data, run_copy, tmp_path, capsys):
    before = tree(run_copy)
    assert cli("train", data, "--epochs", "1", "--out", run_copy) == 1
    one_line_error(capsys, "already holds a run")
    assert tree(run_copy) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert cli("train", data, "--epochs", "1", "--out", mine) == 1
    one_line_error(capsys, "not empty")
    assert (mine / "notes.txt").read_text() == "keep"


def test_clean_up_removes_only_the_runs_own_temporary_files(run_copy):
    (run_copy / ".notes.tmp").write_text("the user's")
    (run_copy / ".checkpoint.pt.x1y2z3.tmp").write_bytes(b"cut off")
    RunDir(run_copy).remove_stale_temp_files()
    assert (run_copy / ".notes.tmp").read_text() == "the user's"
    assert not (run_copy / ".checkpoint.pt.x1y2z3.tmp").exists()


def test_compare_into_an_existing_bakeoff_is_refused_and_no_winner_is_a_failure(data, tmp_path, capsys):
    out = tmp_path / "bake"
    out.mkdir()
    (out / "leaderboard.json").write_text('{"leaderboard": []}')
    before = tree(out)
    assert cli("compare", data, "--models", "efficientnet_lite0", "--strategies", "feature-extract",
               "--out", out) == 1  # fmt: skip
    one_line_error(capsys, "already holds a bake-off")
    assert tree(out) == before
    assert cli("compare", data, "--models", "", "--out", tmp_path / "b2") == 1
    one_line_error(capsys, "--models names nothing")


# -- resume checks before it writes ------------------------------------------------------------------


def test_resume_with_the_dataset_gone_or_its_classes_changed_changes_nothing(
    data, run_copy, tmp_path, capsys
):
    config = json.loads((run_copy / "config.json").read_text())
    moved = dict(config, data_root=str(tmp_path / "moved-away"))
    (run_copy / "config.json").write_text(json.dumps(moved))
    before = tree(run_copy)
    assert cli("train", "--resume", run_copy, "--epochs", "3") == 1
    one_line_error(capsys, "moved-away")
    assert tree(run_copy) == before  # epochs, dataset record and status as they were

    other = make_image_folder(tmp_path / "other", {"ants": 4, "wasps": 4}, size=(40, 40))
    (run_copy / "config.json").write_text(json.dumps(dict(config, data_root=str(other))))
    before = tree(run_copy)
    assert cli("train", "--resume", run_copy, "--epochs", "3") == 1
    one_line_error(capsys, "classes changed")
    assert tree(run_copy) == before
    assert RunDir(run_copy).read_status()["status"] == "finished"


def test_resume_after_photos_were_deleted_needs_allow_changed_data_and_records_the_change(
    data, run_copy, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    fewer = tmp_path / "fewer"
    shutil.copytree(data, fewer)
    for photo in sorted((fewer / "train" / "ants").iterdir())[:3]:
        photo.unlink()
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps(dict(config, data_root=str(fewer))))
    before = tree(run_copy)
    assert cli("train", "--resume", run_copy, "--epochs", "2") == 1
    line = one_line_error(capsys, "photos changed", "train 12 → 9", "--allow-changed-data")
    assert "val 12 → 12" in line
    assert tree(run_copy) == before
    assert cli("train", "--resume", run_copy, "--epochs", "2", "--allow-changed-data", "--json") == 0
    saved = json.loads((run_copy / "config.json").read_text())
    assert saved["dataset"]["images"] == {"train": 12, "val": 12}  # what it started with, kept
    assert saved["dataset_changes"][0]["images"] == {"train": 9, "val": 12}
    assert saved["config"]["epochs"] == 2


# -- one writer per run ------------------------------------------------------------------------------


def test_a_second_writer_and_a_resume_of_a_running_run_are_refused(data, run_copy, tmp_path, capsys):
    with RunLock.acquire(run_copy):  # a run training there now
        before = tree(run_copy)
        assert cli("train", "--resume", run_copy, "--epochs", "2") == 1
        one_line_error(capsys, "in use by another training", f"process {os.getpid()}")
        assert tree(run_copy) == before
        assert is_locked(run_copy)
    empty = tmp_path / "dup"
    with RunLock.acquire(empty):  # the first of two `train --out runs/dup` has taken the folder
        assert cli("train", data, "--epochs", "1", "--device", "cpu", "--out", empty) == 1
        one_line_error(capsys)
        assert not (empty / "config.json").exists()


def test_a_stale_lock_of_a_killed_run_is_taken_over_with_a_message(
    data, run_copy, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    (run_copy / ".lock").write_text(json.dumps({"pid": 999_999_999, "host": os.uname().nodename}))
    assert not is_locked(run_copy)  # nobody holds it: its process was killed
    assert cli("train", "--resume", run_copy, "--epochs", "2", "--json") == 0
    assert "process 999999999, which has ended" in capsys.readouterr().err


# -- small files are read defensively ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content",
    [
        ("config.json", DEEP),
        ("status.json", DEEP),
        ("metrics.jsonl", DEEP),
        ("note.json", DEEP),
        ("status.json", '{"status": "finished", "started": 12345}'),
        ("config.json", "not json"),
        ("config.json", '{"config": [], "data_root": 3}'),
    ],
)
def test_runs_lists_every_other_run_and_names_the_broken_one(run_dir, tmp_path, name, content, capsys):
    root = tmp_path / "root"
    shutil.copytree(run_dir, root / "good")
    shutil.copytree(run_dir, root / "broken")
    (root / "broken" / name).write_text(content)
    assert cli("runs", "--root", root, "--json") == 0
    captured = capsys.readouterr()
    listed = [Path(r["path"]).name for r in json.loads(captured.out)]
    assert "good" in listed
    assert "Traceback" not in captured.err and str(root / "broken") in captured.err  # named
    if name != "metrics.jsonl":  # a damaged line of metrics only costs that line
        assert listed == ["good"]
    if name == "config.json":
        assert cli("report", root / "broken", "--device", "cpu") == 1
        one_line_error(capsys, name)


def test_a_huge_pid_and_a_truncated_metrics_line_do_not_hide_a_run(run_copy, tmp_path, capsys):
    status = json.loads((run_copy / "status.json").read_text())
    (run_copy / "status.json").write_text(json.dumps(dict(status, status="running", pid=10**20)))
    good = (run_copy / "metrics.jsonl").read_text()
    (run_copy / "metrics.jsonl").write_text(good + '{"epoch": 2, "train_lo')
    assert cli("runs", "--root", tmp_path, "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "interrupted" and row["epochs_done"] == 1


def test_an_unreadable_config_leaves_the_other_runs_listed(run_dir, tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    shutil.copytree(run_dir, root / "good")
    shutil.copytree(run_dir, root / "locked")
    real_open = Path.open

    def open_denied(self: Path, *args: object, **kwargs: object):
        if self == root / "locked" / "config.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", open_denied)
    assert cli("runs", "--root", root, "--json") == 0
    captured = capsys.readouterr()
    assert [Path(r["path"]).name for r in json.loads(captured.out)] == ["good"]
    assert "locked" in captured.err and "cannot be read" in captured.err


def test_a_deeply_nested_exclusion_list_is_named_by_scan_and_train(data, tmp_path, capsys, monkeypatch):
    from engine.data.exclusions import exclusions_file

    monkeypatch.setenv("TRANSFER_STUDIO_DATA", str(tmp_path / "app"))
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    path = exclusions_file(data)
    path.parent.mkdir(parents=True)
    path.write_text(DEEP)
    assert cli("scan", data, "--json") == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any(str(path) in w and "nested too deeply" in w for w in warnings)
    assert cli("train", data, "--epochs", "1", "--device", "cpu", "--out", tmp_path / "r", "--json") == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nested too deeply" in err
    assert path.read_text() == DEEP  # not overwritten


@pytest.mark.slow
def test_paths_that_are_not_utf8_are_scanned_excluded_trained_and_reported(tmp_path):
    """In real processes: their output, with the path's odd bytes, stays out of this test's report."""
    from engine.data.exclusions import exclude

    env = {
        **os.environ,
        "TRANSFER_STUDIO_DATA": str(tmp_path / "app"),
        "TRANSFER_STUDIO_CACHE": str(tmp_path / "c"),
    }
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/d\xe9j\xe0"))  # Latin-1 bytes: not UTF-8
    make_image_folder(root, {"caf\udce9": 4, "th\udce9": 4}, size=(40, 40))

    def run(*args: str | Path) -> bytes:
        proc = subprocess.run([sys.executable, "-m", "engine.cli", *map(os.fsencode, map(str, args))],
                              capture_output=True, env=env, cwd=Path(__file__).parents[1])  # fmt: skip
        assert b"Traceback" not in proc.stderr and proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    report = json.loads(run("scan", root, "--json"))
    assert sorted(report["classes"]) == ["caf\udce9", "th\udce9"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_STUDIO_DATA", str(tmp_path / "app"))
        exclude(root, [next((root / "train" / "caf\udce9").iterdir())])
    run(
        "train",
        root,
        "--epochs",
        "1",
        "--input-size",
        "64",
        "--device",
        "cpu",
        "--out",
        tmp_path / "run",
        "--json",
    )
    run("report", tmp_path / "run", "--device", "cpu")
    assert (tmp_path / "run" / "report.html").is_file()


# -- every number bounded ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seed", "99999999999999999999999"], ["seed", "9223372036854775807"]),
        (["--head", "mlp", "--head-hidden", "100000000"], ["mlp hidden units", "8192"]),
        (["--lr", "inf"], ["learning rate"]),
        (["--lr", "nan"], ["learning rate"]),
        (["--feature-views", "1000000"], ["feature views", "32"]),
        (["--epochs", "0"], ["epochs"]),
    ],
)
def test_out_of_range_settings_are_one_line(data, tmp_path, args, words, capsys):
    assert cli("train", data, "--out", tmp_path / "r", *args) == 1
    one_line_error(capsys, *words)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "DATA", "--budget-minutes", "nan"],
        ["compare", "DATA", "--budget-minutes", "inf"],
        ["compare", "DATA", "--budget-minutes", "-1"],
        ["scan", "DATA", "--seed", "-1"],
    ],
)
def test_out_of_range_options_of_other_commands_are_usage_errors(data, run_dir, args, capsys):
    swap = {"DATA": str(data), "MODEL": str(run_dir / "model.pt")}
    with pytest.raises(SystemExit) as exit_:
        main([swap.get(a, a) for a in args])
    assert exit_.value.code == 2
    one_line_error(capsys, "error")


def test_more_processes_than_cores_are_refused(data, capsys):
    assert cli("train", data, "--device", "cpu", "--nproc-per-node", "64") == 1
    one_line_error(capsys, "--nproc-per-node 64", f"{os.cpu_count()} CPU core")


def test_a_bundle_asking_for_a_huge_crop_is_refused_at_once(run_dir, tmp_path, data, capsys):
    import torch

    raw = torch.load(run_dir / "model.pt", weights_only=True)
    raw["preprocessing"] = dict(raw["preprocessing"], crop_size=100_000, resize_size=114_286)
    torch.save(raw, tmp_path / "crafted.pt")
    started = time.perf_counter()
    assert cli("predict", tmp_path / "crafted.pt", data / "val" / "bees") == 1
    assert time.perf_counter() - started < 1.0 + 3.0  # the model is never built (3 s: torch's first import)
    one_line_error(capsys, "100000 px crop")


def test_a_bundle_with_weights_far_larger_than_its_model_is_refused(run_dir, tmp_path, capsys):
    import torch

    from engine.models.bundle import load_bundle

    raw = torch.load(run_dir / "model.pt", weights_only=True)
    raw["state_dict"]["extra"] = torch.zeros(50_000_000, dtype=torch.uint8)
    torch.save(raw, tmp_path / "fat.pt")
    with pytest.raises(Exception, match="far more than"):
        load_bundle(tmp_path / "fat.pt")


@pytest.mark.parametrize(
    "args, words", [(["--top-k", "0"], ["--top-k", "1000"]), (["--threshold", "nan"], ["--threshold"])]
)
def test_predict_refuses_a_top_k_or_threshold_out_of_range(run_dir, data, args, words, capsys):
    assert cli("predict", run_dir / "model.pt", data / "val", *args) == 1
    one_line_error(capsys, *words)


def test_predict_of_only_unreadable_files_fails(run_dir, tmp_path, capsys):
    (tmp_path / "x.jpg").write_bytes(b"not a photo")
    assert cli("predict", run_dir / "model.pt", tmp_path) == 1
    assert "1 of 1 image(s) could not be read" in capsys.readouterr().err


def test_a_diverging_run_fails_instead_of_saving_a_broken_model(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    import engine.training.loop as loop

    real = loop._step

    def nan_step(state, forward, inputs, labels, training):  # what an exploding learning rate gives
        loss, correct = real(state, forward, inputs, labels, training)
        return (float("nan") if training else loss), correct

    monkeypatch.setattr(loop, "_step", nan_step)
    assert cli("train", data, "--epochs", "1", "--device", "cpu", "--out", tmp_path / "r") == 1
    error_line(capsys, "diverged", "lower the learning rate")
    assert RunDir(tmp_path / "r").read_status()["status"] == "failed"
    assert not (tmp_path / "r" / "model.pt").exists()


def test_the_audit_counts_what_scan_counts_and_lists_what_it_skips(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    data = make_image_folder(tmp_path / "d", {"ants": 6, "bees": 6}, size=(40, 40))
    (data / "train" / "ants" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (data / "train" / "bees" / "empty.png").write_bytes(b"")
    assert cli("scan", data, "--json") == 0
    scanned = json.loads(capsys.readouterr().out)
    assert cli("audit", data, "--device", "cpu", "--json") == 0
    audited = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert audited["classes"]["counts"] == scanned["counts"]
    skipped = {q["path"] for q in audited["quality"] if q["issue"] == "skipped"}
    assert "train/bees/empty.png" in skipped
