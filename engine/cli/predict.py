"""``transfer-studio predict``: classify photos with a bundle; text, CSV or JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import (
    EXIT_FAILURE,
    PROG,
    add_force_option,
    add_shared_option,
    print_json,
)
from engine.core.commands import COMMANDS
from engine.core.config import TrainConfig
from engine.core.errors import TransferStudioError
from engine.core.progress import CountBar, bars_wanted

#: The most classes --top-k lists.
MAX_TOP_K = 1000


def add_parser(sub: Any) -> None:
    predict = sub.add_parser("predict", help=COMMANDS["predict"])
    predict.add_argument("bundle", type=Path, metavar="BUNDLE", help="model.pt from a run")
    predict.add_argument("target", type=Path, metavar="IMAGE_OR_DIR")
    predict.add_argument(
        "--top-k", type=int, default=3, metavar="K", help="the K most likely classes (default 3)"
    )
    predict.add_argument("--csv", type=Path, metavar="OUT", help="write one row per image")
    add_force_option(predict, "CSV file")
    add_shared_option(predict, "device", default=TrainConfig.device)
    predict.add_argument(
        "--json", action="store_true",
        help='end with one JSON line: {"predictions": [{"path", "top", "unknown", "ood_score", ...}, ...]}',
    )  # fmt: skip
    predict.add_argument(
        "--no-unknown", action="store_true",
        help='never answer "unknown" (none of these) for a photo unlike the training photos',
    )  # fmt: skip
    predict.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="label an image 'unsure' when its top probability is below P",
    )


def run(args: argparse.Namespace) -> int:
    from engine.data.outputs import check_output_file, run_dataset
    from engine.models.bundle_file import bundle_file

    bundle_file(args.bundle)  # a wrong path or a file that is no bundle: answered before torch loads
    from engine.inference.predict import Predictor, list_images, write_predictions_csv

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise TransferStudioError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if not 1 <= args.top_k <= MAX_TOP_K:
        raise TransferStudioError(f"--top-k must be from 1 to {MAX_TOP_K}, got {args.top_k}")
    if args.csv is not None:  # before anything runs: never over a photo, a model or the photos classified
        target = args.target if args.target.is_dir() else args.target.parent
        check_output_file(args.csv, what="the CSV", datasets=[target, *run_dataset(args.bundle)],
                          force=args.force, replaceable=(".csv", ".txt", ".tsv"))  # fmt: skip
    predictor = Predictor.from_bundle(args.bundle, device=args.device)
    if args.no_unknown:
        predictor.unknown_threshold = None
    if not predictor.calibrated:
        print(f"{PROG}: this model is uncalibrated (trained before calibration): its probabilities are as "
              "trained, and it never answers unknown", file=sys.stderr)  # fmt: skip
    paths = list_images(args.target)
    if not paths:
        raise TransferStudioError(f"{args.target} holds no image files")
    with CountBar("classifying", enabled=bars_wanted(json_output=args.json)) as bar:
        predictions = predictor.predict_paths(paths, top_k=args.top_k, on_progress=bar)
    if args.csv:
        write_predictions_csv(predictions, args.csv, top_k=args.top_k, threshold=args.threshold)
    if args.json:
        rows = [
            {"path": str(p.path), "top": [list(t) for t in p.top], "unknown": p.unknown, "ood_score": p.ood_score,
             "label": p.label_at(args.threshold), "error": p.error}
            for p in predictions
        ]  # fmt: skip
        print_json({"predictions": rows, "calibrated": predictor.calibrated})
    else:
        for p in predictions:
            if p.error:
                print(f"{p.path}\tunreadable: {p.error}")
            else:
                ranked = ", ".join(f"{label} {prob:.3f}" for label, prob in p.top)
                if p.unknown:
                    ranked = f"none of these (unlike the training photos, score {p.ood_score:.3f}); best guess {ranked}"
                unsure = (
                    f"{p.label_at(args.threshold)}: "
                    if p.label_at(args.threshold) not in (p.label, "unknown")
                    else ""
                )
                print(f"{p.path}\t{unsure}{ranked}")
    failed = sum(1 for p in predictions if p.error)
    if failed:
        print(f"{PROG}: {failed} of {len(predictions)} image(s) could not be read", file=sys.stderr)
    if args.csv:
        print(f"wrote {len(predictions)} rows to {args.csv}", file=sys.stderr)
    return EXIT_FAILURE if failed == len(predictions) else 0
