"""``transfer-studio scan``: the dataset's classes, counts, split and problems (the Data tab's scan)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.cli.common import add_shared_option, print_json
from engine.core.commands import COMMANDS
from engine.core.config import TrainConfig
from engine.core.progress import CountBar, bars_wanted


def add_parser(sub: Any) -> None:
    scan = sub.add_parser("scan", help=COMMANDS["scan"])
    scan.add_argument("data", type=Path, metavar="DATA")
    add_shared_option(scan, "val_fraction", default=TrainConfig.val_fraction)
    add_shared_option(scan, "seed", default=TrainConfig.seed)
    scan.add_argument(
        "--unlabeled", type=Path, metavar="DIR", help="photos to sort (default: DATA/unlabeled/)"
    )
    scan.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from engine.data.datasets import format_report, scan_dataset

    with CountBar("checking photos", unit="file", enabled=bars_wanted(json_output=args.json)) as bar:
        report = scan_dataset(
            args.data,
            val_fraction=args.val_fraction,
            seed=args.seed,
            on_progress=bar,
            unlabeled=args.unlabeled,
            list_unlabeled=True,
        )
    if args.json:
        print_json(report.summary())
    else:
        print(format_report(report))
    return 0
