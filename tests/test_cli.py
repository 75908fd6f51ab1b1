"""The headless CLI: every command, JSON output, CSV output, and one-line errors for bad input.

The bad-input cases run in-process and again in a real ``python -m engine.cli`` process (``slow``).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_images import make_image_folder

from engine.cli import build_parser, main
from engine.core.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("cli") / "data", {"red": 8, "green": 8})


def test_scan_json(dataset, capsys):
    assert main(["scan", str(dataset), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["green", "red"]
    assert report["counts"]["red"]["train"] == 8


def test_scan_text(dataset, capsys):
    assert main(["scan", str(dataset)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Dataset: {dataset.resolve()}"
    for name in ("green", "red"):  # one table row per class: name, train count, val count
        assert any(re.fullmatch(rf"\s+{name}\s+8\s+8", line) for line in lines), lines


def test_the_parser_has_exactly_the_commands_of_the_table():
    """engine.core.commands.COMMANDS is the one list of sub-commands (the launcher relies on it)."""
    parser = build_parser()
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subparsers) == 1
    assert sorted(subparsers[0].choices) == sorted(COMMANDS)
    assert {a.dest: a.help for a in subparsers[0]._choices_actions} == COMMANDS


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"]: r for r in rows}
    assert names["efficientnet_lite0"]["weights"] == "offline"
    assert {"resnet18", "alexnet", "vgg16", "squeezenet1_0", "densenet121", "inception_v3"} <= set(names)


def test_train_then_predict_csv(dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(
        [
            "train", str(dataset), "--model", "efficientnet_lite0", "--strategy", "feature-extract",
            "--epochs", "2", "--batch-size", "8", "--lr", "0.01", "--device", "cpu", "--out", str(run_dir), "--json",
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert sum(line.startswith("epoch ") for line in out) == 2
    summary = json.loads(out[-1])
    for key in ("best_val_acc", "best_epoch", "epochs", "seconds", "device", "bundle"):
        assert key in summary
    assert summary["epochs"] == 2 and summary["best_val_acc"] >= 0.9
    assert Path(summary["bundle"]).is_file()

    csv_path = tmp_path / "preds.csv"
    target = dataset / "val" / "red"
    assert main(["predict", summary["bundle"], str(target), "--top-k", "2", "--csv", str(csv_path)]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == len(list(target.iterdir()))
    # a photo the model finds unlike its training photos is "unknown", its best guess kept
    assert all(
        row["label"] == "red" or (row["unknown"] == "1" and row["best_guess"] == "red") for row in rows
    )
    assert sum(row["unknown"] == "1" for row in rows) <= 1  # 95% of validation photos pass
    assert all(0.5 <= float(row["probability"]) <= 1.0 and float(row["ood_score"]) >= 0 for row in rows)


def test_resume_finished_run_adds_epochs(dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--batch-size", "8", "--device", "cpu", "--strategy", "scratch", "--model", "mobilenet_v3_small"]
    assert main(["train", str(dataset), "--epochs", "1", "--out", str(run_dir), "--json", *args]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 2


# (arguments, exit code, what the one line on stderr says); {name} is a path made by _bad_input_args.
BAD_INPUT = [
    (["scan", "/no/such/folder"], 1, "does not exist"),
    (["train", "{empty}", "--epochs", "1"], 1, "no class"),
    (["train", "{single}", "--epochs", "1"], 1, "only one class"),
    (["train", "{data}", "--model", "resnet9000"], 1, "unknown model"),
    (["train", "{data}", "--strategy", "yolo"], 2, "invalid choice"),
    (["predict", "{notbundle}", "{data}"], 1, "not a Transfer Studio model bundle"),
    (["train", "{data}", "--device", "cuda", "--epochs", "1"], 1, "cuda"),
]


def _bad_input_args(args: list[str], tmp_path: Path, dataset: Path) -> list[str]:
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    (tmp_path / "empty").mkdir()
    make_image_folder(tmp_path / "single", {"only": 3}, splits=None)
    not_bundle = tmp_path / "not_a_bundle.pt"
    not_bundle.write_text("definitely not a model")
    paths = {
        "empty": tmp_path / "empty",
        "single": tmp_path / "single",
        "data": dataset,
        "notbundle": not_bundle,
    }
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]


@pytest.mark.parametrize("args, code, message", BAD_INPUT)
def test_bad_input_is_one_line(args, code, message, tmp_path, dataset, capsys):
    args = _bad_input_args(args, tmp_path, dataset)
    try:
        returned = main(args)
    except SystemExit as exc:  # argparse's usage errors
        returned = exc.code
    assert returned == code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("transfer-studio")
    assert message.lower() in lines[0].lower()


@pytest.mark.slow
@pytest.mark.parametrize("args, code, message", BAD_INPUT)
def test_bad_input_is_one_line_without_traceback(args, code, message, tmp_path, dataset):
    proc = _cli(*_bad_input_args(args, tmp_path, dataset))
    assert proc.returncode == code
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert message.lower() in lines[0].lower()


def _without_torch(*argv: str) -> tuple[list[str], str]:
    """``transfer-studio ARGV`` in a fresh interpreter: its exit code and whether torch was imported,
    as words (``["1", "False"]``), and its standard error."""
    code = f"import sys\nfrom engine.cli import main\nprint(main({list(argv)!r}), 'torch' in sys.modules)\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return proc.stdout.split(), proc.stderr


@pytest.mark.parametrize("classes", [{}, {"only": 3}])
def test_a_folder_that_is_no_dataset_is_answered_before_torch_loads(classes, tmp_path):
    """train on an empty folder or a single class: the one-line error comes in a fraction of a second,
    without importing torch (issue 22: the window of a typo should not cost seconds)."""
    folder = make_image_folder(tmp_path / "d", classes, splits=None) if classes else tmp_path / "d"
    folder.mkdir(exist_ok=True)
    answer, err = _without_torch("train", str(folder), "--epochs", "1")
    assert answer == ["1", "False"], err
    assert len(err.strip().splitlines()) == 1 and "class" in err


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_a_file_that_is_no_bundle_is_answered_before_torch_loads(command, tmp_path):
    """predict, evaluate or export with a photo as the model: one line at once."""
    photo = tmp_path / "photo.pt"
    make_image_folder(tmp_path / "d", {"a": 1, "b": 1}, splits=None)
    photo.write_bytes(next((tmp_path / "d" / "a").iterdir()).read_bytes())
    rest = (
        ["--format", "onnx", "--out", str(tmp_path / "m.onnx")]
        if command == "export"
        else [str(tmp_path / "d")]
    )
    answer, err = _without_torch(command, str(photo), *rest)
    assert answer == ["1", "False"], err
    assert (
        err.strip()
        == "transfer-studio: error: photo.pt is not a Transfer Studio model bundle (not a PyTorch file)"
    )
