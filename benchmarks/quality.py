"""Accuracy of each strategy's default recipe, today's (before issue 15) against the new one.

For each dataset (hymenoptera, and a harder copy of it: 96-px, blurred photos with 10% of the training
labels moved to the wrong class, built deterministically into a temporary folder by
``benchmarks/hard_set.py``), each strategy and each seed, it trains efficientnet_lite0 twice: with the
recipe the engine had before issue 15 (every setting given explicitly, see :data:`TODAY`) and with the
current defaults (``TrainConfig.for_strategy``). The two recipes alternate seed by seed, so a change in
the machine's load hits both alike. Every run starts with an empty feature cache of its own (cold), so
the seconds include the frozen backbone's passes. Prints a Markdown table; ``--write`` puts it into
BENCHMARKS.md as the section "Issue 15: recipes" (replacing an earlier one) and the raw results go
to ``--json``.

    python benchmarks/quality.py ../shared/data/hymenoptera --device cpu --write

Accuracy is the run's best validation accuracy (what the app reports and keeps); "spread" is the
sample standard deviation over the seeds, and the range is the lowest and highest seed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from hard_set import build_hard_set  # noqa: E402

MODEL = "efficientnet_lite0"
SECTION = "## Issue 15: recipes"
#: The committed defaults before issue 15, spelled out so that later default changes cannot move them.
TODAY: dict[str, dict[str, Any]] = {
    "feature-extract": {
        "epochs": 10,
        "lr": 1e-3,
        "optimizer": "adamw",
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "feature_views": 0,
        "input_size": 0,
        "tta": "none",
    },
    "fine-tune": {
        "epochs": 10,
        "lr": 1e-3,
        "optimizer": "adamw",
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "backbone_lr_scale": 0.1,
        "input_size": 0,
        "tta": "none",
        "head_first": False,
        "freeze_bn": False,
        "lr_decay_per_stage": 1.0,
        "warmup_epochs": 0,
    },
}


def run_one(data: Path, strategy: str, recipe: str, seed: int, device: str, workdir: Path) -> dict[str, Any]:
    """One cold run (its own empty feature cache); the run's best val accuracy and wall seconds."""
    from engine.core.config import TrainConfig
    from engine.models.bundle import load_bundle
    from engine.training.trainer import train

    name = f"{data.name}-{strategy}-{recipe}-{seed}"
    os.environ["TRANSFER_STUDIO_CACHE"] = str(workdir / "cache" / name)
    overrides = TODAY[strategy] if recipe == "today" else {}
    config = TrainConfig.for_strategy(strategy, model=MODEL, seed=seed, device=device, **overrides)
    started = time.perf_counter()
    result = train(config, data, run_dir=workdir / "runs" / name)
    seconds = time.perf_counter() - started
    return {
        "dataset": data.name,
        "strategy": strategy,
        "recipe": recipe,
        "seed": seed,
        "best_val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_completed,
        "input_size": load_bundle(result.bundle_path).preprocessing.crop_size if result.bundle_path else None,
        "seconds": round(seconds, 2),
        "config": {k: v for k, v in config.to_dict().items() if k not in ("device", "seed")},
    }


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted(
        {(r["dataset"], r["strategy"], r["recipe"]) for r in results},
        key=lambda k: (k[0] != "hymenoptera", k[1], k[2] != "today"),
    )
    for dataset, strategy, recipe in keys:
        runs = [
            r for r in results if (r["dataset"], r["strategy"], r["recipe"]) == (dataset, strategy, recipe)
        ]
        accs = [r["best_val_acc"] for r in runs]
        rows.append(
            {
                "dataset": dataset,
                "strategy": strategy,
                "recipe": recipe,
                "mean": statistics.mean(accs),
                "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "low": min(accs),
                "high": max(accs),
                "seeds": accs,
                "seconds": statistics.mean(r["seconds"] for r in runs),
                "epochs": runs[0]["epochs"],
                "input_size": runs[0]["input_size"],
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | strategy | recipe | epochs | input px | best val acc: mean ± spread | range | per seed "
        "| seconds (mean) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in rows:
        seeds = ", ".join(f"{a:.3f}" for a in r["seeds"])
        lines.append(
            f"| {r['dataset']} | {r['strategy']} | {r['recipe']} | {r['epochs']} | {r['input_size']} | "
            f"{r['mean']:.3f} ± {r['sd']:.3f} | {r['low']:.3f}–{r['high']:.3f} | {seeds} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """The new recipe against today's, per dataset and strategy: the gain and the seeds' spread."""
    out = []
    by_key = {(r["dataset"], r["strategy"], r["recipe"]): r for r in rows}
    for (dataset, strategy, recipe), new in by_key.items():
        if recipe != "new" or (dataset, strategy, "today") not in by_key:
            continue
        old = by_key[(dataset, strategy, "today")]
        gain = new["mean"] - old["mean"]
        noise = max(old["sd"], new["sd"])
        out.append(
            f"- {dataset}, {strategy}: {gain:+.3f} ({old['mean']:.3f} → {new['mean']:.3f}; spread "
            f"{noise:.3f}; time {old['seconds']:.0f} s → {new['seconds']:.0f} s)"
        )
    return out


def write_section(text: str, path: Path) -> None:
    """Put ``text`` (starting with SECTION) into BENCHMARKS.md, replacing an earlier such section."""
    current = path.read_text(encoding="utf-8")
    start = current.find(SECTION)
    if start < 0:
        path.write_text(current.rstrip("\n") + "\n\n" + text + "\n", encoding="utf-8")
        return
    end = current.find("\n## ", start + len(SECTION))
    rest = "" if end < 0 else current[end:]
    path.write_text(current[:start] + text + "\n" + rest, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="hymenoptera (train/ and val/ folders)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=["feature-extract", "fine-tune"])
    parser.add_argument(
        "--datasets", nargs="+", default=["hymenoptera", "hard"], choices=["hymenoptera", "hard"]
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's result here")
    args = parser.parse_args()

    from engine.core.allocator import tune_allocator

    tune_allocator()  # what the CLI and the window do at start-up
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        workdir = Path(tmp)
        datasets = {"hymenoptera": args.data.resolve()}
        if "hard" in args.datasets:
            datasets["hard"] = build_hard_set(args.data, workdir / "hymenoptera-hard")
        for name in args.datasets:
            for strategy in args.strategies:
                for seed in range(args.seeds):
                    for recipe in ("today", "new"):
                        result = run_one(datasets[name], strategy, recipe, seed, args.device, workdir)
                        result["dataset"] = name
                        results.append(result)
                        print(
                            f"{name:<12} {strategy:<16} {recipe:<6} seed {seed}: "
                            f"{result['best_val_acc']:.4f} (epoch {result['best_epoch']}) "
                            f"in {result['seconds']:.1f} s",
                            flush=True,
                        )
    total = time.perf_counter() - started
    rows = summarise(results)
    new_settings = {s: _changed(s) for s in args.strategies}
    text = "\n".join(
        [
            SECTION,
            "",
            f"Measured {date.today().isoformat()} on {platform.machine()} with {os.cpu_count()} cores "
            f"({args.device}), torch {torch.__version__}, {MODEL}, {args.seeds} seeds per row, in one "
            f"run of `python benchmarks/quality.py {' '.join(sys.argv[1:])}` "
            f"({total / 60:.1f} minutes in all). Every run started with an empty feature cache (cold).",
            "`hard` is hymenoptera with every photo shrunk to 96 px (shorter side) and blurred, and 10% of "
            "each class's training photos moved to the other class (`benchmarks/hard_set.py`); its "
            "validation labels are the true ones.",
            "",
            table(rows),
            "",
            "New recipe against today's (mean gain; spread = the larger seed standard deviation):",
            "",
            *verdicts(rows),
            "",
            "Today's recipe, as explicit settings: "
            + "; ".join(f"{s}: {_settings(TODAY[s])}" for s in args.strategies),
            "",
            "The new defaults that differ from it: "
            + "; ".join(f"{s}: {_settings(v)}" for s, v in new_settings.items()),
        ]
    )
    print()
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "rows": rows}, indent=2) + "\n")
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md")
    return 0


def _changed(strategy: str) -> dict[str, Any]:
    from engine.core.config import TrainConfig

    new = TrainConfig.for_strategy(strategy).to_dict()
    return {k: new[k] for k, v in TODAY[strategy].items() if new[k] != v}


def _settings(values: dict[str, Any]) -> str:
    from engine.core.config import INPUT_SIZE_AUTO

    def shown(key: str, value: Any) -> str:
        if key == "input_size":
            return {0: "0 (the model's own)", INPUT_SIZE_AUTO: f"{INPUT_SIZE_AUTO} (automatic)"}.get(
                value, str(value)
            )
        return str(value)

    return ", ".join(f"{k}={shown(k, v)}" for k, v in values.items())


if __name__ == "__main__":
    raise SystemExit(main())
