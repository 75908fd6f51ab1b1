"""``transfer-studio evaluate``: a bundle measured on a labelled folder (per-class metrics, errors)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.cli.common import add_shared_option, print_json
from engine.core.commands import COMMANDS
from engine.core.config import TrainConfig
from engine.core.errors import TransferStudioError
from engine.core.progress import CountBar, bars_wanted


def add_parser(sub: Any) -> None:
    evaluate = sub.add_parser("evaluate", help=COMMANDS["evaluate"])
    evaluate.add_argument("bundle", type=Path, metavar="BUNDLE", help="model.pt from a run")
    evaluate.add_argument(
        "data", type=Path, metavar="DATA", help="labelled folder (its val/ split if it has one)"
    )
    evaluate.add_argument(
        "--split",
        choices=("val", "train", "test", "all"),
        help="which images (default: val/ when DATA has one, else all; a flat folder's val is the run's val share)",
    )
    evaluate.add_argument("--top-k", type=int, default=5, metavar="K", help="also report top-K accuracy")
    add_shared_option(evaluate, "device", default=TrainConfig.device)
    evaluate.add_argument("--json", action="store_true", help="print the full report as JSON")


def run(args: argparse.Namespace) -> int:
    from engine.models.bundle_file import bundle_file

    bundle_file(args.bundle)  # a wrong path or a file that is no bundle: answered before torch loads
    from engine.inference.evaluate import evaluate, format_evaluation

    if not 1 <= args.top_k <= 1000:
        raise TransferStudioError(f"--top-k must be from 1 to 1000, got {args.top_k}")
    with CountBar("evaluating", enabled=bars_wanted(json_output=args.json)) as bar:
        report = evaluate(
            args.bundle, args.data, split=args.split, device=args.device, top_k=args.top_k, on_progress=bar
        )
    if args.json:
        print_json(report.to_json())
    else:
        print(format_evaluation(report))
    return 0
