"""Is fine-tuning's default learning rate right? Validation loss and accuracy per epoch at three rates.

For hymenoptera and the hard set (``benchmarks/hard_set.py``: 96-px blurred photos, 10% of the training
labels wrong), it fine-tunes efficientnet_lite0 with the strategy's defaults (``TrainConfig.for_strategy``)
at the default learning rate, a third of it and three times it (the backbone's rates scale with it),
for each seed, and records each epoch's validation loss and accuracy. A first row per dataset and seed
is the head-first fit alone (one epoch at a learning rate of 1e-12: the backbone does not move), the
point every rate starts from. ``--write`` puts the table into BENCHMARKS.md as
the section "Issue 22: fine-tuning's learning rate" (replacing an earlier one).

    python benchmarks/fine_tune_lr.py ../shared/data/hymenoptera --device cpu --write

The runs of one dataset share a feature cache (the head-first fit's frozen pass is the same for every
rate): the seconds are not a benchmark here, the losses and accuracies are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from hard_set import build_hard_set  # noqa: E402

MODEL = "efficientnet_lite0"
SECTION = "## Issue 22: fine-tuning's learning rate"
FACTORS = (1 / 3, 1.0, 3.0)
#: A learning rate at which nothing moves: the run's validation is the head-first fit's.
STILL = 1e-12


def run_one(
    data: Path, lr: float, seed: int, device: str, workdir: Path, epochs: int | None = None
) -> dict[str, Any]:
    """One fine-tune run at ``lr``: each epoch's validation loss and accuracy."""
    from engine.core.config import TrainConfig
    from engine.training import events as ev
    from engine.training.trainer import train

    os.environ["TRANSFER_STUDIO_CACHE"] = str(workdir / "cache" / data.name)
    config = TrainConfig.for_strategy(
        "fine-tune",
        model=MODEL,
        seed=seed,
        device=device,
        lr=lr,
        epochs=epochs,
        warmup_epochs=0 if epochs else None,
    )
    epochs: list[dict[str, float]] = []

    def on_event(event: object) -> None:
        if isinstance(event, ev.EpochEnd):
            epochs.append(
                {
                    "epoch": event.epoch,
                    "val_loss": event.val_loss,
                    "val_acc": event.val_acc,
                    "train_loss": event.train_loss,
                }
            )

    result = train(config, data, run_dir=workdir / "runs" / f"{data.name}-{lr:g}-{seed}", on_event=on_event)
    return {
        "dataset": data.name,
        "lr": lr,
        "seed": seed,
        "epochs": epochs,
        "best_val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
    }


def table(results: list[dict[str, Any]], default_lr: float) -> str:
    epochs = max(len(r["epochs"]) for r in results)
    head = (
        "| dataset | seed | lr | " + " | ".join(f"epoch {e + 1}" for e in range(epochs)) + " | best (epoch) |"
    )
    lines = [head, "| --- | ---: | ---: | " + " | ".join("---:" for _ in range(epochs)) + " | ---: |"]
    for r in results:
        cells = [f"{e['val_loss']:.3f} / {e['val_acc']:.3f}" for e in r["epochs"]]
        cells += [""] * (epochs - len(cells))
        if r["lr"] == STILL:
            lr = "head fit only"
        else:
            lr = f"**{r['lr']:g}** (default)" if r["lr"] == default_lr else f"{r['lr']:.2g}"
        lines.append(
            f"| {r['dataset']} | {r['seed']} | {lr} | "
            + " | ".join(cells)
            + f" | {r['best_val_acc']:.3f} ({r['best_epoch']}) |"
        )
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    current = path.read_text(encoding="utf-8")
    start = current.find(SECTION)
    if start < 0:
        path.write_text(current.rstrip("\n") + "\n\n" + text + "\n", encoding="utf-8")
        return
    end = current.find("\n## ", start + len(SECTION))
    rest = "" if end < 0 else current[end:]
    path.write_text(current[:start] + text + "\n" + rest, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--from-json", type=Path, help="results of earlier runs to include (--json's file)")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from engine.core.allocator import tune_allocator

    tune_allocator()
    import torch

    from engine.core.config import TrainConfig

    default_lr = TrainConfig.for_strategy("fine-tune").lr
    seeds = [int(s) for s in args.seeds.split(",")]
    results: list[dict[str, Any]] = json.loads(args.from_json.read_text()) if args.from_json else []
    done = {(r["dataset"], r["lr"], r["seed"]) for r in results}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        hard = build_hard_set(args.data, workdir / "hard")
        for data in (args.data, hard):
            for seed in seeds:
                runs = [(STILL, 1)] + [(default_lr * factor, None) for factor in FACTORS]
                for lr, epochs in runs:
                    if (data.name, lr, seed) in done:
                        continue
                    result = run_one(data, lr, seed, args.device, workdir, epochs)
                    print(json.dumps(result), flush=True)
                    results.append(result)
    results.sort(key=lambda r: (r["dataset"] != args.data.name, r["seed"], r["lr"] != STILL, r["lr"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    text = "\n".join(
        [
            SECTION,
            "",
            f"Measured {date.today().isoformat()} on {platform.machine()} with {os.cpu_count()} cores ({args.device}), "
            f"torch {torch.__version__}, {MODEL}, fine-tune defaults, seeds {args.seeds}, with "
            f"`python benchmarks/fine_tune_lr.py {args.data} --device {args.device} --write`. "
            "Each cell: validation loss / accuracy after that epoch (153 photos; one photo is 0.0065).",
            "",
            table(results, default_lr),
        ]
    )
    print(text)
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
