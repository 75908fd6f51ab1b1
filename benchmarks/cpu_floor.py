"""The CPU feature pass's floor: efficientnet_lite0's frozen backbone over 642 image views (what a
cold 10-epoch hymenoptera feature-extract run computes), batch 32, in three settings, each in a fresh
process (the allocator setting lasts for a process):

- ``default``: contiguous tensors, glibc's default allocator thresholds (the engine before tuning);
- ``allocator``: engine.core.allocator.tune_allocator() (raised mmap/trim thresholds);
- ``allocator+channels_last``: the same with channels_last model and inputs.

    .venv/bin/python benchmarks/cpu_floor.py [--views 642] [--batch 32]

Prints wall and CPU (user/system) seconds per setting; numbers go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
tune, channels_last, views, batch = {tune}, {channels_last}, {views}, {batch}
if tune:
    from engine.core.allocator import tune_allocator
    assert tune_allocator()
import torch
from engine.models.build import build_model
from engine.training.features import FeatureExtractor
torch.manual_seed(0)
model, heads = build_model("efficientnet_lite0", 2, pretrained=True)
model.eval()
if channels_last:
    model = model.to(memory_format=torch.channels_last)
extractor = FeatureExtractor(model, heads[0])
images = torch.rand(batch, 3, 224, 224)
extractor(images[:2])  # warm-up: first-call overheads are not the pass
start, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
done = 0
while done < views:
    n = min(batch, views - done)
    x = images[:n]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    extractor(x)
    done += n
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"wall": time.perf_counter() - start, "user": r1.ru_utime - r0.ru_utime,
                  "system": r1.ru_stime - r0.ru_stime, "threads": torch.get_num_threads()}}))
"""

SETTINGS = {
    "default": (False, False),
    "allocator": (True, False),
    "allocator+channels_last": (True, True),
}


def run(tune: bool, channels_last: bool, views: int, batch: int) -> dict[str, float]:
    code = CHILD.format(root=str(ROOT), tune=tune, channels_last=channels_last, views=views, batch=batch)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--views", type=int, default=642)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    results = {name: run(*flags, args.views, args.batch) for name, flags in SETTINGS.items()}
    base = results["default"]["wall"]
    for name, r in results.items():
        print(
            f"{name:<26} wall {r['wall']:6.1f} s  user {r['user']:6.1f} s  system {r['system']:6.1f} s  "
            f"x{base / r['wall']:.2f} vs default  ({r['threads']} threads)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
