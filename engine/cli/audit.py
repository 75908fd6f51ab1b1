"""``transfer-studio audit``: the dataset doctor's findings (duplicates, leaks, likely wrong labels,
poor photos, balance), as text or JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.cli.common import StopFlag, add_shared_option, ensure_weights, print_json
from engine.core.commands import COMMANDS
from engine.core.config import TrainConfig
from engine.core.progress import CountBar, bars_wanted


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help=COMMANDS["audit"])
    audit.add_argument("data", type=Path, metavar="DATA")
    audit.add_argument(
        "--model", default=TrainConfig.model, help="backbone for the embeddings (see `models`)"
    )
    add_shared_option(audit, "device", default=TrainConfig.device)
    add_shared_option(audit, "seed", default=TrainConfig.seed, help="the automatic split's seed (as `train`)")
    add_shared_option(audit, "val_fraction", default=TrainConfig.val_fraction)
    audit.add_argument("--json", action="store_true", help="end with one JSON line of findings")


def run(args: argparse.Namespace) -> int:
    from engine.audit.run import run_audit
    from engine.core.device import resolve_device
    from engine.models.registry import get_model_info

    info = get_model_info(args.model)  # fail fast on an unknown name
    if not info.offline:
        ensure_weights(args.model)
    bars = bars_wanted(json_output=args.json)
    stage_bar: dict[str, CountBar] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in stage_bar:
            for bar in stage_bar.values():
                bar.close()
            stage_bar[stage] = CountBar(stage, enabled=bars)
        stage_bar[stage](done, total)

    device = resolve_device(args.device).type
    try:
        report = run_audit(
            args.data,
            model=args.model,
            device=device,
            seed=args.seed,
            val_fraction=args.val_fraction,
            on_progress=progress,
            should_stop=StopFlag(),
        )
    finally:
        for bar in stage_bar.values():
            bar.close()
    if args.json:
        print_json(report.to_json())
    else:
        print(format_audit(report))
    return 0


def format_audit(report: Any, limit: int = 20) -> str:
    """The audit's findings as text, each list cut at ``limit`` lines."""
    findings = report.to_json()
    lines = [
        f"Audit of {report.root} ({report.model}, {len(report.images)} photos, {report.seconds:.1f} s; "
        f"{report.features_computed} backbone view(s) computed, {report.features_reused} from the cache)"
    ]

    def section(title: str, rows: list[str]) -> None:
        lines.append(f"{title} ({len(rows)})" + (":" if rows else ": none"))
        lines.extend(f"  {row}" for row in rows[:limit])
        if len(rows) > limit:
            lines.append(f"  ... and {len(rows) - limit} more (--json lists all)")

    section("Leaks: the same photo in more than one split", [" = ".join(g) for g in findings["cross_split"]])
    section("The same photo under two labels", [" = ".join(g) for g in findings["conflicting_labels"]])
    section("Duplicates", [" = ".join(g) for g in findings["duplicates"]])
    section(
        "Likely wrong labels, most likely first",
        [f"{i['path']}: labelled {i['given']}, looks like {i['suggested']} ({i['confidence']:.2f})"
         for i in findings["label_issues"]],
    )  # fmt: skip
    section(
        "Photo quality",
        [f"{q['path']}: {q['issue']}" + (f" ({q['value']:.3g})" if isinstance(q["value"], float) else f" ({q['value']})")
         for q in findings["quality"]],
    )  # fmt: skip
    counts = ", ".join(
        f"{name} " + "/".join(str(n) for n in per_split.values()) for name, per_split in report.counts.items()
    )
    ratio = f"{report.imbalance:.2f}" if report.imbalance is not None else "a class has no training photos"
    lines.append(f"Classes ({'/'.join(next(iter(report.counts.values()), {}))}): {counts}; imbalance {ratio}")
    return "\n".join(lines)
