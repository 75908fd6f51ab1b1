"""Measured cost of each catalog entry on this machine: the built-in model and every curated timm model.

For each model (random weights: the cost does not depend on their values) at its own input size, with
batch 16 on the CPU and ``torch.set_num_threads(2)``:

- ``forward_ms``: milliseconds per photo of a forward pass (eval mode, ``torch.inference_mode``);
- ``train_ms``: milliseconds per photo of a training step (train mode, forward + backward + an AdamW
  step over every parameter, what fine-tuning does);
- ``probe_ms``: the built-in model's forward on a small batch, as engine.models.costs times it on a
  user's machine to scale these figures (its speed factor).

The process first warms up on the built-in model (untimed); each model then gets one warm-up batch
and the best of ``--reps`` timed batches. The built-in model is measured in
the same run, so the ratios between models hold on any machine (engine.models.costs scales them by a
factor measured there). Writes ``engine/models/measured_costs.json`` and prints a Markdown table for
BENCHMARKS.md::

    .venv/bin/python benchmarks/model_costs.py [--reps 2] [--threads 2] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.models import timm_models  # noqa: E402
from engine.models.build import build_model  # noqa: E402
from engine.models.registry import get_model_info  # noqa: E402

OUT = ROOT / "engine" / "models" / "measured_costs.json"
BUILT_IN = "efficientnet_lite0"
BATCH = 16
NUM_CLASSES = 10


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(name: str, reps: int) -> dict[str, float | int]:
    info = get_model_info(name)
    px = info.input_size
    torch.manual_seed(0)
    model, _heads = build_model(name, NUM_CLASSES, pretrained=False)
    x = torch.rand(BATCH, 3, px, px)
    y = torch.randint(0, NUM_CLASSES, (BATCH,))

    model.eval()
    with torch.inference_mode():
        model(x)  # warm-up
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - t0)
    forward_ms = best * 1000 / BATCH

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), targets).backward()
        optimizer.step()

    step(x, y)  # warm-up (and the optimizer's state)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        step(x, y)
        best = min(best, time.perf_counter() - t0)
    train_ms = best * 1000 / BATCH
    return {"input_size": px, "forward_ms": round(forward_ms, 2), "train_ms": round(train_ms, 2)}


def probe(reps: int = 3) -> float:
    """What engine.models.costs times on a user's machine: the built-in model's forward on a batch of
    PROBE_BATCH photos, in ms per photo (best of ``reps`` after a warm-up)."""
    from engine.models.costs import probe_ms_per_photo

    return round(min(probe_ms_per_photo(torch.device("cpu")) for _ in range(reps)), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="measure only these (the built-in model always)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [BUILT_IN, *(e.name for e in timm_models.CURATED)]
    if args.only:
        names = [BUILT_IN, *(n for n in args.only if n != BUILT_IN)]
    started = time.perf_counter()
    measure(BUILT_IN, 1)  # the process's first passes are slow (allocator, kernels): not counted
    models: dict[str, dict[str, float | int]] = {}
    for name in names:
        t0 = time.perf_counter()
        models[name] = measure(name, args.reps)
        print(f"{name}: {models[name]} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    import timm

    payload = {
        "about": "ms per photo at each model's input size, batch 16, CPU: forward (eval, inference_mode) "
        "and a training step (forward + backward + AdamW); benchmarks/model_costs.py",
        "machine": f"{cpu_name()}, {args.threads} torch threads, {platform.system()} {platform.machine()}",
        "torch": torch.__version__,
        "timm": timm.__version__,
        "date": datetime.date.today().isoformat(),
        "batch": BATCH,
        "threads": args.threads,
        "reference": BUILT_IN,
        "probe_ms": probe(),
        "models": models,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    ref = models[BUILT_IN]
    print("| model | params | input | forward ms/photo | training step ms/photo | x built-in (train) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in models.items():
        params = get_model_info(name).num_params / 1e6
        ratio = float(m["train_ms"]) / float(ref["train_ms"])
        print(
            f"| `{name}` | {params:.1f} M | {m['input_size']} | {m['forward_ms']:.1f} | "
            f"{m['train_ms']:.1f} | {ratio:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
