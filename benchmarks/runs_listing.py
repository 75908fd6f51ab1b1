"""How long `transfer-studio runs` takes to summarise 500 run folders (cold and warm file cache).

.venv/bin/python benchmarks/runs_listing.py [--runs 500]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_runs(root: Path, count: int) -> None:
    from engine.core.config import TrainConfig
    from engine.core.rundir import RunDir

    config = TrainConfig(epochs=10).to_dict()
    for i in range(count):
        run = RunDir(root / f"run-{i:04d}")
        run.path.mkdir(parents=True)
        run.write_config(config, root / "data")
        run.write_metrics([{"epoch": e, "val_acc": 0.5 + e / 40, "seconds": 2.0} for e in range(1, 11)])
        run.write_status("finished", started=f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}")
        run.checkpoint_path.write_bytes(b"x")
        run.bundle_path.write_bytes(b"x")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_runs(root, args.runs)
        from engine.core.runs import list_runs

        started = time.perf_counter()
        listed = list_runs(root)
        in_process = time.perf_counter() - started
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "engine.cli", "runs", "--root", str(root), "--json"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        command = time.perf_counter() - started
        assert len(listed) == len(json.loads(proc.stdout)) == args.runs
    print(
        f"{args.runs} runs: list_runs {in_process:.3f} s; `transfer-studio runs --json` {command:.3f} s end to end"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
