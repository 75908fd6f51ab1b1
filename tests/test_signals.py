"""Ctrl+C and SIGTERM answer within 5 s in every phase of a long command, in one line, with no
traceback: the dataset scan, the feature pass, the epochs, evaluation, the export's parity check, the
dataset doctor, the bake-off, and a run of several processes (torchrun's children end with it).

Each command runs in a real process (tests/helpers_slow_cli.py) with the phase made slow, and gets the
signal once that phase has begun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_images import SMALL_INPUT, make_image_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SLOW_CLI = Path(__file__).with_name("helpers_slow_cli.py")
ANSWER_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("signals") / "data", {"a": 6, "b": 6}, size=(40, 40))


@pytest.fixture(scope="module")
def bundle(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.core.config import TrainConfig
    from engine.training.trainer import train

    config = TrainConfig.for_strategy(
        "feature-extract", epochs=1, batch_size=8, device="cpu", workers=1, input_size=SMALL_INPUT
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path_factory.mktemp("cache")))
        result = train(config, data, run_dir=tmp_path_factory.mktemp("runs") / "run")
    assert result.bundle_path is not None
    return result.bundle_path


def _interrupt(
    command: list[str], sig: int, tmp_path: Path, wait_for: str = "SLOW"
) -> tuple[float, str, int]:
    """Run ``command``; once ``wait_for`` shows on its standard error, send ``sig``. Returns the seconds
    until it ended, its standard error and its exit code."""
    env = {**os.environ, "TRANSFER_STUDIO_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if wait_for in line:
            break
    assert any(wait_for in line for line in seen), "".join(seen)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=60)
    return time.monotonic() - sent, "".join(seen) + rest, proc.returncode


PHASES = [
    ("scan", ["scan", "{data}"], signal.SIGTERM),
    (
        "features",
        ["train", "{data}", "--device", "cpu", "--batch-size", "2", "--input-size", "64", "--out", "{out}"],
        signal.SIGTERM,
    ),
    (
        "epochs",
        [
            "train",
            "{data}",
            "--device",
            "cpu",
            "--strategy",
            "fine-tune",
            "--epochs",
            "3",
            "--batch-size",
            "2",
            "--input-size",
            "64",
            "--out",
            "{out}",
        ],
        signal.SIGINT,
    ),  # fmt: skip
    ("predict", ["evaluate", "{bundle}", "{data}", "--device", "cpu"], signal.SIGINT),
    (
        "predict",
        ["export", "{bundle}", "--format", "onnx", "--out", "{tmp}/m.onnx", "--parity-data", "{data}"],
        signal.SIGTERM,
    ),  # fmt: skip
    ("features", ["audit", "{data}", "--device", "cpu"], signal.SIGINT),
    (
        "features",
        [
            "compare",
            "{data}",
            "--models",
            "efficientnet_lite0",
            "--strategies",
            "feature-extract",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            "{tmp}/bake",
        ],
        signal.SIGTERM,
    ),  # fmt: skip
]


@pytest.mark.parametrize("phase, args, sig", PHASES, ids=lambda v: v if isinstance(v, str) else None)
def test_a_signal_in_each_phase_is_answered_within_five_seconds(data, bundle, tmp_path, phase, args, sig):
    values = {"data": data, "bundle": bundle, "out": tmp_path / "run", "tmp": tmp_path}
    command = [sys.executable, str(SLOW_CLI), phase, *(a.format(**values) for a in args)]
    seconds, err, code = _interrupt(command, sig, tmp_path)
    assert seconds < ANSWER_WITHIN_S, (seconds, err)
    assert "Traceback" not in err, err
    assert code == 130, (code, err)
    if args[0] == "train":  # it stopped cleanly: its folder says so, with nothing half-written
        assert "stopped" in (tmp_path / "run" / "status.json").read_text()
        assert not list((tmp_path / "run").glob(".*.tmp"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_run_of_two_processes_stops_on_a_signal_without_torchruns_traceback(tmp_path, sig):
    data = make_image_folder(tmp_path / "data", {"a": 16, "b": 16}, size=(40, 40))
    command = [sys.executable, "-m", "engine.cli", "train", str(data), "--device", "cpu", "--epochs", "200",
               "--batch-size", "2", "--input-size", "64", "--nproc-per-node", "2",
               "--out", str(tmp_path / "run")]  # fmt: skip
    seconds, err, code = _interrupt(command, sig, tmp_path, wait_for="backbone features ready")
    assert "Traceback" not in err, err
    assert code == 130, (code, err)
    assert seconds < 30, seconds  # every process stops at the same step; rank 0 saves the best epoch


def test_the_ranks_end_when_their_launcher_is_killed(tmp_path):
    data = make_image_folder(tmp_path / "data", {"a": 16, "b": 16}, size=(40, 40))
    command = [sys.executable, "-m", "engine.cli", "train", str(data), "--device", "cpu", "--epochs", "200",
               "--batch-size", "2", "--input-size", "64", "--nproc-per-node", "2",
               "--out", str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, "TRANSFER_STUDIO_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    while "epoch 1/" not in (proc.stdout.readline() or "epoch 1/"):
        pass
    proc.kill()  # the launcher dies at once: no chance to end its children itself
    proc.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _ranks_of(tmp_path):
        time.sleep(0.5)
    assert not _ranks_of(tmp_path), "training processes outlived their launcher"


def _ranks_of(tmp_path: Path) -> list[int]:
    """The processes still running a rank (or torchrun) of the run in ``tmp_path``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(tmp_path).encode() in cmdline and b"engine.cli" in cmdline:
            pids.append(int(entry.name))
    return pids
