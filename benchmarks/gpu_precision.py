"""Training-step speed on one device by precision, memory format and ``torch.compile`` (issue 26's GPU lines).

For efficientnet_lite0 (random weights: speed only) at 224 px, batch 64 on a GPU (8 on a CPU): the
milliseconds per fine-tuning step (forward, backward, SGD) in float32, under bfloat16 autocast and under
float16 autocast with a gradient scaler, each contiguous and channels_last; then channels_last bfloat16
with ``torch.compile``: its compile time and the steps after which it has paid that back. Prints a
Markdown table (ratios against float32 contiguous, the naive baseline, in the same run).

    python benchmarks/gpu_precision.py [--device cuda] [--steps 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    import torch
    from torch import nn

    from engine.models.build import build_model

    device = torch.device(args.device)
    batch = 64 if device.type == "cuda" else 8

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step_ms(
        dtype: torch.dtype | None, channels_last: bool, compiled: bool = False
    ) -> tuple[float, float]:
        torch.manual_seed(0)
        model, _ = build_model("efficientnet_lite0", 10, pretrained=False)
        model.to(device).train()
        layout = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=layout)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        runner: nn.Module = torch.compile(model) if compiled else model  # type: ignore[assignment]
        x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=layout)
        y = torch.randint(0, 10, (batch,), device=device)

        def one() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = nn.functional.cross_entropy(runner(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        sync()
        started = time.perf_counter()
        one()  # warm-up (and compilation)
        sync()
        first = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(args.steps):
            one()
        sync()
        return (time.perf_counter() - started) / args.steps * 1000, first * 1000

    rows: list[tuple[str, float, float]] = []
    dtypes: list[tuple[str, torch.dtype | None]] = [("float32", None), ("bfloat16", torch.bfloat16)]
    if device.type == "cuda":
        dtypes.append(("float16", torch.float16))
    for name, dtype in dtypes:
        for channels_last in (False, True):
            ms, first = step_ms(dtype, channels_last)
            rows.append((f"{name}, {'channels_last' if channels_last else 'contiguous'}", ms, first))
            print(rows[-1], file=sys.stderr)
    if not args.no_compile:
        ms, first = step_ms(torch.bfloat16, True, compiled=True)
        rows.append(("bfloat16, channels_last, torch.compile", ms, first))
    base = rows[0][1]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"efficientnet_lite0 fine-tune step, batch {batch}, 224 px, {name}, torch {torch.__version__}\n")
    print("| variant | ms per step | first step ms | speed-up | compile pays back after |")
    print("| --- | ---: | ---: | ---: | ---: |")
    plain = next(ms for label, ms, _ in rows if label == "bfloat16, channels_last")
    for label, ms, first in rows:
        payback = "-"
        if "compile" in label:
            saved = plain - ms
            payback = f"{(first - plain) / saved:.0f} steps" if saved > 0 else "never"
        print(f"| {label} | {ms:.1f} | {first:.0f} | {base / ms:.2f}x | {payback} |")


if __name__ == "__main__":
    main()
