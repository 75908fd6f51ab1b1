"""``transfer-studio export``: a bundle to ONNX or TorchScript, checked against the app's own model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_FAILURE, PROG, add_force_option, print_json
from engine.core.commands import COMMANDS
from engine.core.errors import TransferStudioError
from engine.core.progress import CountBar, bars_wanted


def add_parser(sub: Any) -> None:
    export = sub.add_parser("export", help=COMMANDS["export"])
    export.add_argument("bundle", type=Path, metavar="BUNDLE", help="model.pt from a run")
    export.add_argument("--format", dest="fmt", choices=("onnx", "torchscript"), required=True)
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="the exported model file")
    export.add_argument(
        "--parity-data",
        type=Path,
        metavar="DATA",
        help="images for the parity check (default: the run's val)",
    )
    export.add_argument("--no-parity", action="store_true", help="skip the parity check")
    add_force_option(export, "exported model")
    export.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from engine.models.bundle_file import bundle_file

    bundle_file(args.bundle)  # a wrong path or a file that is no bundle: answered before torch loads
    from engine.core.rundir import CONFIG_FILE, RunDir
    from engine.inference.export import export_bundle, parity_check, parity_images
    from engine.models.bundle import load_bundle

    data = args.parity_data
    if data is not None and not data.exists():
        raise TransferStudioError(f"--parity-data {data}: no such file or folder")
    protect = [data] if data is not None else []
    result = export_bundle(args.bundle, args.fmt, args.out, force=args.force, protect=protect)
    bundle = load_bundle(args.bundle)
    payload: dict[str, Any] = {"export": result.to_json(), "parity": None}
    if not args.json:
        print(
            f"exported {bundle.architecture} to {result.path} ({result.exporter}); metadata in {result.sidecar}"
        )
    run_dir = args.bundle if args.bundle.is_dir() else args.bundle.parent
    if data is None and not args.no_parity and (run_dir / CONFIG_FILE).is_file():
        data = RunDir(run_dir).read_config()[1]  # the run's dataset; its val/ images
    if args.no_parity or data is None or not Path(data).exists():
        reason = (
            "skipped" if args.no_parity else "skipped: no validation images found (give --parity-data DATA)"
        )
        payload["parity"] = {"available": False, "reason": reason}
        if args.json:
            print_json(payload)
        else:
            print(f"parity check {reason}")
        return 0
    with CountBar("checking parity", enabled=bars_wanted(json_output=args.json)) as bar:
        parity = parity_check(bundle, result.path, parity_images(data), fmt=args.fmt, on_progress=bar)
    payload["parity"] = parity.to_json()
    if args.json:
        print_json(payload)
    elif not parity.available:
        print(f"parity check unavailable: {parity.reason}")
    else:
        print(
            f"parity on {parity.n_images} images: label agreement {parity.label_agreement:.4f}, "
            f"largest probability difference {parity.max_prob_diff:.2e}"
        )
    if parity.available and not parity.passed():
        print(f"{PROG}: error: the exported model does not match the in-app model", file=sys.stderr)
        return EXIT_FAILURE
    return 0
