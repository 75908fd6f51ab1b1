"""How long the dataset audit (engine.audit.run.run_audit) takes on 4,000 photos, cold.

Builds a flat class-folder dataset (automatic 80/20 split) of ``--photos`` photos from hymenoptera's
398: each original plus variants (random crop of 80-100% per side, resize to 50-100%, brightness and
colour jitter, horizontal flip, JPEG quality 60-95), so the set has realistic sizes and many
near-duplicates. Then runs the audit in a fresh process with ``TRANSFER_STUDIO_CACHE`` pointing at an
empty folder (nothing cached: the backbone runs on every photo) and prints the wall time, the time per
stage and the findings' sizes.

    .venv/bin/python benchmarks/audit_speed.py ../shared/data/hymenoptera [--photos 4000] \\
        [--views N] [--keep DIR]

``--views`` is the audit's ``training_views`` (default 1: the plain view, all the audit needs; the
training run after it computes only its augmented views. 2 on a CPU: what a feature-extract run uses,
so that the run computes no feature at all).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _variant(job: tuple[str, str, int]) -> None:
    from PIL import Image, ImageEnhance, ImageOps

    source, target, seed = job
    rng = random.Random(seed)
    with Image.open(source) as im:
        image = im.convert("RGB")
    if seed % 10:  # variant 0 is the original, re-encoded
        w, h = image.size
        left, top = int(w * rng.uniform(0, 0.1)), int(h * rng.uniform(0, 0.1))
        right, bottom = w - int(w * rng.uniform(0, 0.1)), h - int(h * rng.uniform(0, 0.1))
        image = image.crop((left, top, right, bottom))
        scale = rng.uniform(0.5, 1.0)
        image = image.resize((max(32, int(image.width * scale)), max(32, int(image.height * scale))))
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
        image = ImageEnhance.Color(image).enhance(rng.uniform(0.8, 1.2))
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
    image.save(target, quality=rng.randint(60, 95))


def build_dataset(source: Path, target: Path, photos: int) -> Path:
    """``photos`` JPEGs in ``target/<class>/``, from every photo under ``source`` (any layout)."""
    originals = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    jobs = []
    for k in range(photos):
        original = originals[k % len(originals)]
        label = original.parent.name
        (target / label).mkdir(parents=True, exist_ok=True)
        jobs.append((str(original), str(target / label / f"{k:05d}_{original.stem}.jpg"), k))
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_variant, jobs, chunksize=32))
    return target


def audit_once(data: Path, views: int | None) -> dict:
    """Run in a fresh process: one cold audit, timed."""
    from engine.core.allocator import tune_allocator

    tune_allocator()  # what the CLI and the window do at start-up
    from engine.audit.run import run_audit

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFER_STUDIO_CACHE"] = str(Path(tmp) / "cache")  # cold: nothing reused
        load = os.getloadavg()[0]
        cpu = time.process_time()
        start = time.perf_counter()
        report = run_audit(data, device="cpu", training_views=views)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    found = report.to_json()
    return {
        "photos": len(report.images),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 1),  # user + system, all threads: what a shared CPU cannot hide
        "cores": os.cpu_count(),
        "load_before": round(load, 2),  # 1-minute load average: other work on the machine
        "load_after": round(os.getloadavg()[0], 2),
        "timings": report.timings,
        "training_views": report.training_views,
        "features_computed": report.features_computed,
        "duplicate_groups": len(report.duplicates),
        "label_issues": len(found["label_issues"]),
        "quality_flags": len(found["quality"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="a folder of photos in class folders (e.g. hymenoptera)")
    parser.add_argument("--photos", type=int, default=4000)
    parser.add_argument("--views", type=int, default=None, help="training views to cache (default 1)")
    parser.add_argument("--keep", type=Path, default=None, help="build (or reuse) the dataset here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(audit_once(args.child, args.views)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = args.keep or Path(tmp) / "photos"
        if not data.exists():
            started = time.perf_counter()
            build_dataset(args.source, data, args.photos)
            print(f"built {args.photos} photos in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        command = [sys.executable, __file__, str(args.source), "--child", str(data)]
        if args.views is not None:
            command += ["--views", str(args.views)]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    print(json.dumps(result, indent=2))
    print(f"audit of {result['photos']} photos, cold: {result['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
