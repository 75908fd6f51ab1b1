"""``transfer-studio export``: a bundle to ONNX, TorchScript, int8 ONNX, OpenVINO or Core ML, checked on
the validation photos against the app's own model (the export report), and optionally a deploy folder
that runs without the app."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_FAILURE, PROG, add_force_option, print_json
from engine.core.commands import COMMANDS
from engine.core.errors import TransferStudioError
from engine.core.progress import CountBar, bars_wanted

#: The export formats (engine.inference.formats.FORMAT_NAMES; listed here so ``--help`` needs no torch).
FORMATS = ("onnx", "torchscript", "onnx-int8", "openvino", "coreml", "tflite")


def add_parser(sub: Any) -> None:
    export = sub.add_parser("export", help=COMMANDS["export"])
    export.add_argument("bundle", type=Path, metavar="BUNDLE", help="model.pt from a run")
    export.add_argument(
        "--format",
        dest="fmt",
        choices=FORMATS,
        required=True,
        help="onnx and torchscript need nothing more; onnx-int8, openvino and coreml need the export "
        "extra (pip install 'transfer-studio[export]'), tflite the tflite extra; a Core ML package "
        "runs only on macOS",
    )
    export.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="the exported model (.onnx, .pt, .xml with its .bin, .tflite, or a .mlpackage folder); "
        "default: beside the bundle, or model.onnx inside --deploy",
    )
    export.add_argument(
        "--data",
        "--parity-data",
        dest="data",
        type=Path,
        metavar="DATA",
        help="the dataset whose validation photos check the export (and whose training photos "
        "calibrate onnx-int8); default: the run's",
    )
    export.add_argument(
        "--deploy",
        type=Path,
        metavar="DIR",
        help="also write a folder that runs the model without the app or torch (onnx and onnx-int8)",
    )
    export.add_argument("--no-parity", action="store_true", help="skip the checks on the validation photos")
    add_force_option(export, "exported model")
    export.add_argument(
        "--json",
        action="store_true",
        help="end with the export report as one JSON line (README: Using your model elsewhere)",
    )


def run(args: argparse.Namespace) -> int:
    from engine.models.bundle_file import bundle_file

    bundle_file(args.bundle)  # a wrong path or a file that is no bundle: answered before torch loads
    if args.deploy is not None and args.fmt not in ("onnx", "onnx-int8"):
        raise TransferStudioError("--deploy writes an ONNX model: use it with --format onnx or onnx-int8")
    data = args.data
    if data is not None and not data.exists():
        raise TransferStudioError(f"--data {data}: no such file or folder")
    from engine.inference.formats import SUFFIXES, require

    require(args.fmt)  # a missing converter: said before anything is written
    out = args.out
    if out is None:
        if args.deploy is None:
            raise TransferStudioError("give --out FILE for the exported model (or --deploy DIR)")
        out = args.deploy.parent / f".{args.deploy.name}.{SUFFIXES[args.fmt].lstrip('.')}"
    return _export(args, out, data)


def _export(args: argparse.Namespace, out: Path, data: Path | None) -> int:
    import tempfile

    from engine.core.rundir import CONFIG_FILE, RunDir
    from engine.data.datasets import scan_dataset
    from engine.data.outputs import run_dataset
    from engine.inference.export import export_bundle, parity_check, parity_images, sidecar_path
    from engine.inference.export_report import export_report
    from engine.inference.formats import calibration_photos
    from engine.models.bundle import load_bundle

    run_dir = args.bundle if args.bundle.is_dir() else args.bundle.parent
    if data is None and (run_dir / CONFIG_FILE).is_file():
        data = Path(RunDir(run_dir).read_config()[1])  # the run's dataset
    report = scan_dataset(data) if data is not None and Path(data).is_dir() else None
    calibration: list[Path] = []
    if args.fmt == "onnx-int8":
        if report is None:
            raise TransferStudioError("onnx-int8 is calibrated on training photos: give --data DATA")
        calibration = calibration_photos(report.splits["train"])
    # The datasets in use (the one checked on, and the run's): nothing is written inside them.
    protect = ([data] if data is not None else []) + run_dataset(args.bundle)
    bundle = load_bundle(args.bundle)
    temporary = out.name.startswith(".") and args.deploy is not None and args.out is None
    if args.deploy is not None:
        from engine.inference.deploy import check_deploy_folder

        check_deploy_folder(args.deploy, datasets=protect)  # before anything is written
    result = export_bundle(bundle, args.fmt, out, force=args.force or temporary, protect=protect,
                           calibration_photos=calibration)  # fmt: skip
    try:
        if args.deploy is not None:
            from engine.inference.deploy import write_deploy_folder

            folder = write_deploy_folder(bundle, result.path, args.deploy, datasets=protect)
            _say(args, f"deploy folder written: {folder} (run: python {folder / 'predict.py'} PHOTO)")
        if not temporary:
            _say(args, f"exported {bundle.architecture} to {result.path} ({result.exporter}); "
                       f"metadata in {result.sidecar}")  # fmt: skip
        payload: dict[str, Any] = {"export": result.to_json(), "parity": None, "report": None}
        if args.no_parity or report is None:
            reason = "skipped" if args.no_parity else "skipped: no validation photos (give --data DATA)"
            payload["parity"] = {"available": False, "reason": reason}
            _say(args, f"checks {reason}")
            if args.json:
                print_json(payload)
            return 0
        failed = False
        if args.fmt in ("onnx", "torchscript"):  # the file must give the app's very answers
            with CountBar("checking parity", enabled=bars_wanted(json_output=args.json)) as bar:
                parity = parity_check(
                    bundle, result.path, parity_images(report), fmt=args.fmt, on_progress=bar
                )
            payload["parity"] = parity.to_json()
            failed = parity.available and not parity.passed()
            if not parity.available:
                _say(args, f"parity check unavailable: {parity.reason}")
            else:
                _say(args, f"parity on {parity.n_images} images: label agreement {parity.label_agreement:.4f}, "
                           f"largest probability difference {parity.max_prob_diff:.2e}")  # fmt: skip
        with tempfile.TemporaryDirectory() as scratch:
            fp32 = None
            if args.fmt == "onnx-int8":  # its latency beside the int8 model's
                fp32 = export_bundle(bundle, "onnx", Path(scratch) / "float32.onnx").path
            with CountBar("checking the export", enabled=bars_wanted(json_output=args.json)) as bar:
                figures = export_report(bundle, args.fmt, result.path, report.splits["val"], report.classes,
                                        fp32_onnx=fp32, on_progress=bar)  # fmt: skip
        payload["report"] = figures.details()
        if args.json:
            print_json(payload)
            print_json(figures.to_json())
        else:
            _print_report(figures)
        if failed:
            print(f"{PROG}: error: the exported model does not match the in-app model", file=sys.stderr)
            return EXIT_FAILURE
        return 0
    finally:
        if temporary:  # only the deploy folder was asked for
            result.path.unlink(missing_ok=True)
            sidecar_path(result.path).unlink(missing_ok=True)


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text)


def _print_report(figures: Any) -> None:
    if not figures.available:
        print(f"{figures.format}: {figures.reason}; file size {figures.rows()[0][1]}")
        return
    rows = [("", figures.format, "the app's model"), *figures.rows()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if figures.warning:
        print(f"{PROG}: warning: {figures.warning}:", file=sys.stderr)
        for photo, app, other in figures.changed[:20]:
            print(f"  {photo}: {app} -> {other}", file=sys.stderr)
