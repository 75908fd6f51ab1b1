"""``transfer-studio models`` and ``transfer-studio weights``: the catalog, and the pretrained weights
files (list, download, import)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.cli.common import ensure_weights, print_json
from engine.core.commands import COMMANDS


def add_parsers(sub: Any) -> None:
    models = sub.add_parser("models", help=COMMANDS["models"])
    models.add_argument("--json", action="store_true")
    weights = sub.add_parser("weights", help=COMMANDS["weights"])
    actions = weights.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="each model's weights: offline (built in), cached or download")
    listing.add_argument("--json", action="store_true")
    download = actions.add_parser("download", help="download models' weights into the cache")
    download.add_argument("models", nargs="+", metavar="NAME")
    imports = actions.add_parser("import", help="verify a weights file from elsewhere; put it in the cache")
    imports.add_argument("file", type=Path, metavar="FILE")
    imports.add_argument(
        "--model",
        metavar="NAME",
        help="the model it is for (default: found from the file; needed for a timm model's model.safetensors)",
    )


def run_models(args: argparse.Namespace) -> int:
    from engine.models.costs import model_cost
    from engine.models.registry import list_models
    from engine.models.weights import weights_status

    rows: list[dict[str, Any]] = []
    for info in list_models():
        rows.append(
            {
                "name": info.name,
                "family": info.family,
                "params": info.num_params,
                "input_size": info.input_size,
                "weights": weights_status(info.name),
                "source": info.source,
                "licence": info.licence,
                "published_top1": info.published_top1,
                "published_source": info.published_source,
                "download_bytes": info.download_bytes,
                # ms per photo on the machine of engine/models/measured_costs.json (measured, or
                # priced from the parameter count when "measured" is false)
                "cost": model_cost(info.name).to_json(),
            }
        )
    if args.json:
        print_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    print(
        f"{'model':<{width}} {'family':<22} {'params':>9} {'input':>5} {'top-1':>6} {'ms/photo':>8}  "
        f"{'licence':<13} weights"
    )
    for r in rows:
        top1 = f"{r['published_top1']:.1f}" if r["published_top1"] is not None else "-"
        cost = r["cost"]
        ms = f"{cost['forward_ms_per_photo']:.0f}{'' if cost['measured'] else '~'}"
        print(
            f"{r['name']:<{width}} {r['family']:<22} {r['params'] / 1e6:>8.1f}M {r['input_size']:>5} "
            f"{top1:>6} {ms:>8}  {r['licence']:<13} {r['weights']}"
        )
    print(
        "top-1: published ImageNet-1k accuracy (models --json names each source); ms/photo: the forward "
        "pass measured on a 2-core CPU (~: priced from the parameter count)"
    )
    return 0


_WEIGHTS_TEXT = {"offline": "offline (built in)", "cached": "cached", "download": "needs download"}


def run_weights(args: argparse.Namespace) -> int:
    from engine.core.sizes import format_size
    from engine.models import weights

    if args.weights_command == "import":
        path = weights.import_weights(args.file, args.model)
        print(f"imported {args.file} as {path}")
        return 0
    if args.weights_command == "download":
        for name in args.models:
            print(f"{name}: {ensure_weights(name)}")
        return 0
    rows = weights.weights_table()
    if args.json:
        print_json(rows)
        return 0
    width = max([28, *(len(r["name"]) for r in rows)])  # timm names are long
    print(f"{'model':<{width}} {'weights':<19} {'size':>9}  file")
    for r in rows:
        size = format_size(r["size"]) if r["size"] is not None else ""
        status = _WEIGHTS_TEXT.get(r["status"], r["status"])
        print(f"{r['name']:<{width}} {status:<19} {size:>9}  {r['file'] or ''}")
    print(f"cache folder: {weights.weights_cache_dir()}")
    return 0
