"""``transfer-studio predict``: classify photos with a bundle; text, CSV or JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import PROG, add_shared_option, print_json
from engine.core.commands import COMMANDS
from engine.core.config import TrainConfig
from engine.core.errors import TransferStudioError
from engine.core.progress import CountBar, bars_wanted


def add_parser(sub: Any) -> None:
    predict = sub.add_parser("predict", help=COMMANDS["predict"])
    predict.add_argument("bundle", type=Path, metavar="BUNDLE", help="model.pt from a run")
    predict.add_argument("target", type=Path, metavar="IMAGE_OR_DIR")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--csv", type=Path, metavar="OUT", help="write one row per image")
    add_shared_option(predict, "device", default=TrainConfig.device)
    predict.add_argument("--json", action="store_true")
    predict.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="label an image 'unsure' when its top probability is below P",
    )


def run(args: argparse.Namespace) -> int:
    from engine.inference.predict import Predictor, list_images, write_predictions_csv

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise TransferStudioError(f"--threshold must be between 0 and 1, got {args.threshold}")
    predictor = Predictor.from_bundle(args.bundle, device=args.device)
    paths = list_images(args.target)
    if not paths:
        raise TransferStudioError(f"{args.target} holds no image files")
    with CountBar("classifying", enabled=bars_wanted(json_output=args.json)) as bar:
        predictions = predictor.predict_paths(paths, top_k=args.top_k, on_progress=bar)
    if args.csv:
        write_predictions_csv(predictions, args.csv, top_k=args.top_k, threshold=args.threshold)
    if args.json:
        rows = [
            {"path": str(p.path), "label": p.label_at(args.threshold), "top": [list(t) for t in p.top]}
            | {"error": p.error}
            for p in predictions
        ]
        print_json(rows)
    else:
        for p in predictions:
            if p.error:
                print(f"{p.path}\tunreadable: {p.error}")
            else:
                ranked = ", ".join(f"{label} {prob:.3f}" for label, prob in p.top)
                unsure = f"{p.label_at(args.threshold)}: " if p.label_at(args.threshold) != p.label else ""
                print(f"{p.path}\t{unsure}{ranked}")
    failed = sum(1 for p in predictions if p.error)
    if failed:
        print(f"{PROG}: {failed} of {len(predictions)} image(s) could not be read", file=sys.stderr)
    if args.csv:
        print(f"wrote {len(predictions)} rows to {args.csv}", file=sys.stderr)
    return 0
