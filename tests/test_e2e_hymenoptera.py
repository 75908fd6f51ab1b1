"""End to end on the real ants-vs-bees dataset: the issue's acceptance commands, run as a user would."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HYMENOPTERA = ROOT.parent / "shared" / "data" / "hymenoptera"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="hymenoptera dataset not present"),
]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, **env},
    )


def test_feature_extract_lite0_then_predict_bees(tmp_path):
    env = {"TRANSFER_STUDIO_RUNS": str(tmp_path / "runs"), "TRANSFER_STUDIO_CACHE": str(tmp_path / "cache")}
    train = _cli(
        "train", str(HYMENOPTERA), "--model", "efficientnet_lite0", "--strategy", "feature-extract",
        "--epochs", "5", "--device", "cpu", "--json", env=env,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    summary = json.loads(train.stdout.strip().splitlines()[-1])
    assert summary["best_val_acc"] >= 0.90
    assert summary["epochs"] == 5 and summary["device"].startswith("CPU")
    assert "Traceback" not in train.stderr

    out_csv = tmp_path / "bees.csv"
    predict = _cli(
        "predict", summary["bundle"], str(HYMENOPTERA / "val" / "bees"), "--csv", str(out_csv), env=env
    )
    assert predict.returncode == 0, predict.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 83
    bees = sum(row["label"] == "bees" for row in rows)
    assert bees / 83 >= 0.85
