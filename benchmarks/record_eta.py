"""Record the batch timings of a real cold run, for the ETA test (tests/test_eta_replay.py).

    .venv/bin/python benchmarks/record_eta.py ../shared/data/hymenoptera \\
        --out tests/data/eta_cold_feature_extract.json

Trains efficientnet_lite0 with feature extraction for 10 epochs on the CPU with an empty feature
cache, and writes when the run's batches started and finished, what the trainer planned, and when
the run ended. The test replays those times through engine.training.eta.Eta.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--strategy", default="feature-extract")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    from engine.core.allocator import tune_allocator

    tune_allocator()
    from engine.core.config import TrainConfig
    from engine.training import eta as eta_module
    from engine.training.trainer import train

    rows: list[dict[str, object]] = []
    marks: dict[str, float] = {}
    planned: dict[str, int] = {}
    start = time.perf_counter()
    real_plan, real_restart, real_record = (
        eta_module.Eta.plan,
        eta_module.Eta.restart_clock,
        eta_module.Eta.record,
    )

    # What the estimator sees, recorded exactly: its plan, when batches start, each batch with its weight.
    def plan(self, *, features, train, val, cached_features):  # type: ignore[no-untyped-def]
        planned.update(features=features, train=train, val=val, cached_features=int(cached_features))
        real_plan(self, features=features, train=train, val=val, cached_features=cached_features)

    def restart_clock(self):  # type: ignore[no-untyped-def]
        now = round(time.perf_counter() - start, 4)
        if "batches_start" in marks:  # later restarts (after the feature pass) replay as rows
            rows.append({"kind": "restart", "t": now})
        else:
            marks["batches_start"] = now
        real_restart(self)

    def record(self, kind, now, weight=1):  # type: ignore[no-untyped-def]
        rows.append({"kind": kind, "t": round(now - start, 4), "weight": weight})
        real_record(self, kind, now, weight)

    eta_module.Eta.plan, eta_module.Eta.restart_clock, eta_module.Eta.record = plan, restart_clock, record  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFER_STUDIO_CACHE"] = str(Path(tmp) / "cache")  # cold: every feature computed
        config = TrainConfig.for_strategy(args.strategy, epochs=args.epochs, device="cpu")
        result = train(config, args.data, run_dir=Path(tmp) / "run")
    end = time.perf_counter() - start
    payload = {
        "what": f"efficientnet_lite0 {args.strategy}, {args.epochs} epochs, CPU, cold feature cache, {args.data.name}",
        "recorded": time.strftime("%Y-%m-%d"),
        "cpu_cores": os.cpu_count(),
        "planned": planned,
        "batches_start": round(marks["batches_start"], 4),
        "end": round(end, 4),
        "best_val_acc": result.best_val_acc,
        "batches": rows,
    }
    args.out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} batches over {end:.1f} s written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
