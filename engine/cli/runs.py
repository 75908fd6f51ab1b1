"""``transfer-studio runs`` and ``transfer-studio report``: the runs under a folder, and a run's or a
bake-off's HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import PROG, StopFlag, add_force_option, add_shared_option, print_json
from engine.core.commands import COMMANDS
from engine.core.config import TrainConfig
from engine.core.errors import TransferStudioError


def add_parsers(sub: Any) -> None:
    runs = sub.add_parser("runs", help=COMMANDS["runs"])
    runs.add_argument("--root", type=Path, metavar="DIR", help="runs folder (default: where new runs go)")
    runs.add_argument("--json", action="store_true", help="print one JSON list of runs")
    report = sub.add_parser("report", help=COMMANDS["report"])
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder or a bake-off folder")
    report.add_argument("--out", type=Path, metavar="FILE", help="HTML file (default: RUN_DIR/report.html)")
    add_force_option(report, "report file")
    add_shared_option(report, "device", default=TrainConfig.device, help="where the model is evaluated")


def run_runs(args: argparse.Namespace) -> int:
    from engine.core.locations import runs_roots
    from engine.core.runs import list_runs_and_problems

    if args.root is not None and not args.root.is_dir():
        raise TransferStudioError(f"{args.root}: no such folder")
    roots = [args.root] if args.root is not None else runs_roots()  # the default: old runs' folder too
    listing = list_runs_and_problems(*(root for root in roots if root.is_dir()))
    runs = listing.runs
    for folder, why in listing.broken:  # named, and left out: one damaged run never hides the others
        print(f"{PROG}: warning: left out {folder}: {why}", file=sys.stderr)
    for r in runs:
        for problem in r.problems:
            print(f"{PROG}: warning: {r.path}: {problem}", file=sys.stderr)
    if args.json:
        print_json([r.to_json() for r in runs])
        return 0
    if not runs:
        print(f"no runs under {' or '.join(str(root) for root in roots)}")
        return 0
    print(f"{'started':<19} {'model':<22} {'strategy':<15} {'epochs':>7} {'best val':>9}  {'status':<11} run")
    for r in runs:
        best = f"{r.best_val_acc:.4f}" if r.best_val_acc is not None else "-"
        started = (r.started or "")[:19].replace("T", " ")
        epochs = f"{r.epochs_done}/{r.epochs_planned}"
        status = r.status + ("*" if r.resumable else "")
        print(f"{started:<19} {r.model:<22} {r.strategy:<15} {epochs:>7} {best:>9}  {status:<11} {r.path}")
    if any(r.resumable for r in runs):
        print("* resumable: transfer-studio train --resume RUN_DIR")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from engine.reports.report import write_report

    path = write_report(args.run_dir, args.out, device=args.device, force=args.force, should_stop=StopFlag())
    print(path)
    return 0
