"""Training with several processes (DistributedDataParallel through torchrun), two gloo processes on CPU.

The building blocks (sharding, agreed stops, gathered rows, dead peers) have their own tests in
tests/test_distributed.py; these drive whole runs through ``transfer-studio train --nproc-per-node 2``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers_images import SMALL_INPUT, make_image_folder

from engine.core.config import TrainConfig
from engine.core.rundir import RunDir
from engine.training.trainer import resume, train

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="torchrun's gloo on Linux/macOS"),
]


def _cli(*args: str, cache: Path, **popen: object) -> subprocess.Popen[str]:
    env = os.environ | {"TRANSFER_STUDIO_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[arg-type]
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    # 32 training images: a whole number of global batches (2 processes x 8), so one process with
    # batch 16 takes exactly the same steps.
    return make_image_folder(tmp_path / "data", {"a": 16, "b": 16})


def test_two_processes_match_one_with_the_same_global_batch(data: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = [str(data), "--model", "efficientnet_lite0", "--strategy", "feature-extract", "--epochs", "3",
            "--input-size", str(SMALL_INPUT), "--precision", "fp32"]  # fmt: skip
    proc = _cli(*args, "--batch-size", "8", "--device", "cpu", "--nproc-per-node", "2",
                "--out", str(tmp_path / "runs" / "two"), "--json", cache=cache)  # fmt: skip
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    two = json.loads(out.strip().splitlines()[-1])
    assert two["world_size"] == 2 and two["epochs"] == 3
    assert len(out.strip().splitlines()) == 1 + 3  # one line per epoch and the JSON line: rank 0 alone prints

    config = TrainConfig.for_strategy(  # float32: the claim is about exact sums, not bfloat16's rounding
        "feature-extract", epochs=3, batch_size=16, device="cpu", input_size=SMALL_INPUT, precision="fp32"
    )
    with pytest.MonkeyPatch.context() as patch:  # the session's cache comes back after it
        patch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache-one"))  # computes its own features
        one = train(config, data, run_dir=tmp_path / "one")
    # The feature pass was shared out and gathered: rank 0 saved every image's features (each rank
    # computed a half), under the right keys, equal to one process's.
    shared, alone = (_feature_entries(c) for c in (cache, tmp_path / "cache-one"))
    assert len({key.split("|")[0] for key in alone}) == 64  # 32 training and 32 validation photos
    assert shared.keys() == alone.keys()
    assert all(torch.allclose(shared[k], alone[k], atol=1e-4) for k in alone)
    rows = RunDir(tmp_path / "runs" / "two").read_metrics()
    assert len(rows) == 3
    for a, b in zip(rows, one.history, strict=True):
        assert a["val_acc"] == b["val_acc"]  # exact: every validation image counted once
        assert a["train_acc"] == b["train_acc"]
        assert abs(a["val_loss"] - b["val_loss"]) < 1e-4
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4
    # Exactly one run folder, written by rank 0 alone.
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["two"]
    assert sorted(p.name for p in (tmp_path / "runs" / "two").iterdir()) == [
        ".lock",
        "checkpoint.pt",
        "config.json",
        "metrics.jsonl",
        "model.pt",
        "status.json",
    ]  # fmt: skip  (.lock: the one writer's lock, issue 21)
    # ... which a single process resumes (a different number of processes).
    resumed = resume(tmp_path / "runs" / "two", epochs=4)
    assert resumed.epochs_completed == 4 and resumed.world_size == 1


def _feature_entries(cache: Path) -> dict[str, torch.Tensor]:
    (store,) = cache.rglob("*.pt")
    return dict(torch.load(store, weights_only=True))


def _rank_pids(run: Path) -> dict[int, int]:
    """{RANK: pid} of the training processes writing ``run`` (read from /proc)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        values = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        cmdline = (entry / "cmdline").read_bytes() if b"RANK" in values else b""
        if (
            b"engine.cli" in cmdline
            and str(run).encode() in cmdline
            and b"torch.distributed.run" not in cmdline
        ):
            found[int(values[b"RANK"])] = int(entry.name)
    return found


def _wait_for_first_epoch(run: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (run / "metrics.jsonl").is_file() and RunDir(run).read_metrics():
            return
        time.sleep(0.2)
    raise AssertionError("no epoch finished")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc")
def test_a_killed_rank_ends_the_other_with_an_error_within_a_minute(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _cli(str(data), "--strategy", "feature-extract", "--epochs", "500", "--batch-size", "4",
                "--input-size", str(SMALL_INPUT), "--device", "cpu", "--nproc-per-node", "2",
                "--out", str(run), cache=tmp_path / "cache")  # fmt: skip
    try:
        _wait_for_first_epoch(run)
        ranks = _rank_pids(run)
        assert set(ranks) == {0, 1}, ranks
        os.kill(ranks[1], signal.SIGKILL)
        started = time.monotonic()
        _out, err = proc.communicate(timeout=60)
        assert time.monotonic() - started < 60
        assert proc.returncode not in (0, 130)
        assert "exit code" in err or "failed" in err
        assert (
            not Path(f"/proc/{ranks[0]}").exists()
            or b"zombie" in Path(f"/proc/{ranks[0]}/status").read_bytes()
        )
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_stop_request_stops_both_processes_at_the_same_step(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _cli(str(data), "--strategy", "feature-extract", "--epochs", "500", "--batch-size", "4",
                "--input-size", str(SMALL_INPUT), "--device", "cpu", "--nproc-per-node", "2",
                "--out", str(run), "--json",
                cache=tmp_path / "cache", start_new_session=True)  # fmt: skip
    try:
        _wait_for_first_epoch(run)
        proc.send_signal(signal.SIGINT)  # Ctrl+C in the terminal: the launcher asks every rank to stop
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Both stopped at one agreed step: neither waited for the other (that would have failed the run).
    assert proc.returncode == 130, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["cancelled"] and result["world_size"] == 2 and result["epochs"] >= 1
    assert RunDir(run).read_status()["status"] == "stopped"
    assert RunDir(run).bundle_path.is_file()
