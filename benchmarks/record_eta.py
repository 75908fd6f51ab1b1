"""Record the batch timings of a real cold run, for the ETA test (tests/test_eta_replay.py).

    .venv/bin/python benchmarks/record_eta.py ../shared/data/hymenoptera \\
        --out tests/data/eta_cold_feature_extract.json

Trains efficientnet_lite0 with feature extraction for 10 epochs on the CPU with an empty feature
cache, and writes when the run's batches started and finished, what the trainer planned, and when
the run ended. The test replays those times through engine.training.eta.Eta.

With ``--bakeoff`` it runs the default bake-off (efficientnet_lite0 with each strategy, ``--epochs`` per
candidate, cold) and writes, for each batch, the running candidate's own elapsed time and estimate,
when each candidate ended, and what each candidate was counted to compute (``CandidateWork``): the test
(tests/test_eta_replay.py) replays them through engine.experiments.bakeoff_eta.BakeoffEta.

    .venv/bin/python benchmarks/record_eta.py ../shared/data/hymenoptera --bakeoff --epochs 2 \\
        --out tests/data/eta_bakeoff.json
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
    parser.add_argument("--bakeoff", action="store_true", help="record the default bake-off instead")
    args = parser.parse_args()
    from engine.core.allocator import tune_allocator

    tune_allocator()
    if args.bakeoff:
        return record_bakeoff(args.data, args.epochs, args.out)
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
    def plan(self, **work):  # type: ignore[no-untyped-def]
        planned.update({k: int(v) for k, v in work.items()})
        real_plan(self, **work)

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


def record_bakeoff(data: Path, epochs: int, out: Path) -> int:
    from dataclasses import asdict

    from engine.experiments import bakeoff
    from engine.training import events as ev

    works: list[dict[str, object]] = []
    real_eta = bakeoff.BakeoffEta

    class RecordingEta(real_eta):  # type: ignore[misc, valid-type]
        def __init__(self, candidate_works):  # type: ignore[no-untyped-def]
            works.extend(asdict(w) for w in candidate_works)
            super().__init__(candidate_works)

    bakeoff.BakeoffEta = RecordingEta  # type: ignore[misc]
    rows: list[dict[str, object]] = []
    start = time.perf_counter()

    def on_event(event: object) -> None:
        t = round(time.perf_counter() - start, 4)
        if isinstance(event, bakeoff.CandidateStarted):
            rows.append({"kind": "started", "t": t, "index": event.index})
            current[0] = event.index
        elif isinstance(event, bakeoff.CandidateEnded):
            e = event.entry
            rows.append({"kind": "ended", "t": t, "index": event.index, "seconds": round(e.seconds, 4)})
        elif isinstance(event, ev.BatchProgress):
            rows.append(
                {
                    "kind": "batch",
                    "t": t,
                    "index": current[0],
                    "elapsed": round(event.elapsed_s, 4),
                    "eta": round(event.eta_s, 4),
                }
            )

    current = [-1]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFER_STUDIO_CACHE"] = str(Path(tmp) / "cache")  # cold: every feature computed
        candidates = [bakeoff.Candidate(bakeoff.BUILT_IN_MODEL, s) for s in bakeoff.STRATEGIES]
        result = bakeoff.run_bakeoff(
            data, candidates, epochs=epochs, device="cpu", out=Path(tmp) / "bakeoff", on_event=on_event
        )
    end = time.perf_counter() - start
    payload = {
        "what": f"bake-off of efficientnet_lite0 x {', '.join(bakeoff.STRATEGIES)}, {epochs} epochs each, "
        f"CPU, cold feature cache, {data.name}",
        "recorded": time.strftime("%Y-%m-%d"),
        "cpu_cores": os.cpu_count(),
        "works": works,
        "end": round(end, 4),
        "statuses": [e.status for e in result.entries],
        "events": rows,
    }
    out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} events over {end:.1f} s written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
