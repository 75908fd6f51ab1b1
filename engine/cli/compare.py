"""``transfer-studio compare``: a bake-off of model x strategy candidates on one split, ranked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILURE,
    PROG,
    StopFlag,
    add_shared_option,
    bounded_number,
    print_json,
    split_names,
)
from engine.cli.train_progress import TrainingProgress
from engine.core.commands import COMMANDS
from engine.core.config import STRATEGIES, TrainConfig
from engine.core.errors import TransferStudioError

#: The longest time budget: a week.
MAX_BUDGET_MINUTES = 7 * 24 * 60.0


def add_parser(sub: Any) -> None:
    compare = sub.add_parser("compare", help=COMMANDS["compare"])
    compare.add_argument("data", type=Path, metavar="DATA", help="dataset folder")
    compare.add_argument("--models", metavar="A,B,...", help="models to try (default: what runs here now)")
    compare.add_argument(
        "--strategies", metavar="X,Y,...", help=f"strategies to try (default: {','.join(STRATEGIES)})"
    )
    add_shared_option(compare, "epochs", help="epochs per candidate (default: each strategy's)")
    compare.add_argument(
        "--budget-minutes",
        type=bounded_number(float, 0.0, MAX_BUDGET_MINUTES, above_low=True),
        metavar="M",
        help="plan the epochs to fit in M minutes; skip what would not fit",
    )
    compare.add_argument(
        "--download",
        action="store_true",
        help="download the pretrained weights the candidates need (default: skip those candidates)",
    )
    add_shared_option(compare, "device", default=TrainConfig.device)
    add_shared_option(compare, "seed", default=TrainConfig.seed)
    compare.add_argument(
        "--out", type=Path, metavar="DIR", help="bake-off folder (one run folder per candidate)"
    )
    compare.add_argument("--json", action="store_true", help="end with one JSON line: the leaderboard")


def run(args: argparse.Namespace) -> int:
    from engine.experiments import bakeoff

    for option, value in (("--models", args.models), ("--strategies", args.strategies)):
        if value is not None and not split_names(value):
            raise TransferStudioError(f"{option} names nothing: give a comma-separated list, or leave it out")
    candidates: list[bakeoff.Candidate] | None = None  # the default set, chosen for the dataset
    if args.models is not None or args.strategies is not None:
        models = split_names(args.models) or sorted(
            {c.model for c in bakeoff.default_candidates(args.device)}
        )
        strategies = split_names(args.strategies) or list(STRATEGIES)
        candidates = bakeoff.candidates_from(models, strategies)
    progress = TrainingProgress(sys.stderr, json_output=args.json)
    stop = StopFlag()

    def on_event(event: Any) -> None:
        if isinstance(event, bakeoff.CandidateStarted):
            progress.say(
                f"[{event.index + 1}/{event.total}] {event.candidate.label}: run folder {event.run_dir}"
            )
        elif isinstance(event, bakeoff.CandidateEnded):
            entry = event.entry
            if entry.status == "finished":
                line = f"best val accuracy {entry.best_val_acc:.4f} at epoch {entry.best_epoch} ({entry.seconds:.1f}s)"
            else:
                line = f"{entry.status}: {entry.reason}"
            progress.say(f"  {entry.model} · {entry.strategy}: {line}")
        elif isinstance(event, bakeoff.BakeoffStarted):
            progress.say(f"candidates: {', '.join(c.label for c in event.candidates)}")
        elif isinstance(event, bakeoff.DownloadStarted):
            progress.say(f"downloading the weights of {bakeoff.describe_candidate_download(event.model)}")
        elif isinstance(event, bakeoff.DownloadEnded):
            progress.say(f"  {event.model}: {event.error or 'downloaded'}")
        elif not isinstance(
            event, (bakeoff.BakeoffProgress, bakeoff.BakeoffFinished, bakeoff.DownloadProgress)
        ):
            progress(event)

    with progress:
        result = bakeoff.run_bakeoff(
            args.data,
            candidates,
            epochs=args.epochs,
            budget_minutes=args.budget_minutes,
            device=args.device,
            seed=args.seed,
            out=args.out,
            on_event=on_event,
            should_stop=stop,
            allow_downloads=args.download,
        )
    if args.json:
        payload = result.to_json()
        print_json(
            {"leaderboard": payload["leaderboard"], "best": payload["best"], "skipped": payload["skipped"]}
        )
    else:
        print(
            f"{'rank':>4}  {'model':<24} {'strategy':<15} {'best val':>8} {'epoch':>5} {'seconds':>8}  bundle"
        )
        for n, e in enumerate(result.leaderboard, start=1):
            mark = "  <- best" if n == 1 else ""
            print(
                f"{n:>4}  {e.model:<24} {e.strategy:<15} {e.best_val_acc:>8.4f} {e.best_epoch:>5} "
                f"{e.seconds:>8.1f}  {e.bundle}{mark}"
            )
        for e in result.entries:
            if e.status != "finished":
                print(f"   -  {e.model:<24} {e.strategy:<15} {e.status}: {e.reason}")
        print(f"bake-off folder: {result.out}")
    if result.cancelled:
        return EXIT_CANCELLED
    if not result.leaderboard:
        print(f"{PROG}: error: no candidate finished (see the reasons above)", file=sys.stderr)
        return EXIT_FAILURE
    return 0
