"""Speed and memory at today's defaults (issue 26), every figure a whole process from launch to exit.

Two tables, each from one invocation:

``DATA`` (hymenoptera): a 10-epoch feature-extract run with every default, against the PyTorch
tutorial's loop (``benchmarks/train_speed.py --one tutorial``), as processes timed from launch to exit
with their own peak RSS (``os.wait4``):

- the tutorial's loop;
- ``transfer-studio train DATA --epochs 10`` cold (``TRANSFER_STUDIO_CACHE`` an empty folder: no
  features, no machine measurements), in the precision ``auto`` picks here;
- the same in ``--precision fp32`` (cold), for the accuracy within one photo;
- the same as the first, warm (its features cached);
- the floor: the backbone alone over the same views at the run's input size and precision, on
  ready-made tensors (a span inside one process: compute only).

``--photos N[,N...]`` adds a memory table: a cold default feature-extract run on N small photos
(96-160 px on their shorter side, five classes, variants of ``DATA``'s photos), its wall time and peak
RSS.

    .venv/bin/python benchmarks/defaults_speed.py ../shared/data/hymenoptera [--photos 4000,20000] [--write]
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
EPOCHS = 10


def timed_process(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``cmd`` from launch to exit: (seconds, peak RSS in MB of it and its children, stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env={**os.environ, **(env or {})})
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, text


def train_cli(data: Path, out: Path, cache: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "engine.cli", "train", str(data), "--epochs", str(EPOCHS)]
    seconds, rss, text = timed_process(
        [*cmd, "--out", str(out), "--json", *extra], {"TRANSFER_STUDIO_CACHE": str(cache)}
    )
    result = json.loads(text.strip().splitlines()[-1])
    return {
        "seconds": seconds,
        "rss_mb": rss,
        "acc": result.get("best_val_acc"),
        "bundle": result.get("bundle"),
    }


def floor(bundle: str, views: int) -> dict:
    """The backbone alone over ``views`` images at the bundle's crop size and precision (one process)."""
    code = f"""
import json, time, torch
from engine.core.allocator import tune_allocator
tune_allocator()
from engine.core.config import TrainConfig
from engine.inference.predict import Predictor
from engine.training.features import FeatureExtractor
p = Predictor.from_bundle({bundle!r}, "cpu")
crop = p.bundle.preprocessing.crop_size
batch = TrainConfig.for_strategy("feature-extract").batch_size
head = [n for n, m in p.model.named_modules() if m is p._feature_head][0]
extract = FeatureExtractor(p.model, head)
images = torch.rand(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)
with p.precision.autocast(p.device):
    extract(images[:2])
    start = time.perf_counter()
    for first in range(0, {views}, batch):
        extract(images[: min(batch, {views} - first)])
print(json.dumps({{"seconds": time.perf_counter() - start, "precision": p.precision.name, "crop": crop}}))
"""
    _seconds, rss, text = timed_process([sys.executable, "-c", code])
    return json.loads(text.strip().splitlines()[-1]) | {"rss_mb": rss}


def hymenoptera_table(data: Path) -> list[str]:
    from engine.data.datasets import scan_dataset

    rows: list[tuple[str, float, float | None, float]] = []
    tutorial_cmd = [sys.executable, "benchmarks/train_speed.py", str(data), "--one", "tutorial"]
    tutorial_cmd += ["--strategy", "feature-extract", "--epochs", str(EPOCHS), "--device", "cpu"]
    seconds, rss, text = timed_process(tutorial_cmd)
    rows.append(
        ("tutorial loop (fp32)", seconds, json.loads(text.strip().splitlines()[-1])["best_val_acc"], rss)
    )
    print(f"tutorial: {rows[-1]}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cold = train_cli(data, base / "cold", base / "cache-auto")
        precision = _bundle_precision(cold["bundle"])
        rows.append(
            (
                f"Transfer Studio, cold ({precision}, the default here)",
                cold["seconds"],
                cold["acc"],
                cold["rss_mb"],
            )
        )
        print(f"cold: {rows[-1]}", file=sys.stderr)
        fp32 = train_cli(data, base / "fp32", base / "cache-fp32", "--precision", "fp32")
        rows.append(("Transfer Studio, cold, --precision fp32", fp32["seconds"], fp32["acc"], fp32["rss_mb"]))
        warm = train_cli(data, base / "warm", base / "cache-auto")
        rows.append(
            (
                f"Transfer Studio, warm ({precision}: features cached)",
                warm["seconds"],
                warm["acc"],
                warm["rss_mb"],
            )
        )
        report = scan_dataset(data)
        views = 2 * len(report.splits["train"]) + 2 * len(report.splits["val"])  # 2 train views; val + mirror
        low = floor(cold["bundle"], views)
        rows.append(
            (
                f"floor: the backbone alone over {views} views, {low['crop']} px, {low['precision']}",
                low["seconds"],
                None,
                low["rss_mb"],
            )
        )
    tutorial = rows[0][1]
    lines = [
        "| variant | seconds, launch to exit | best val acc | peak RSS MB | speed-up |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, seconds, acc, rss in rows:
        ratio = f"{tutorial / seconds:.1f}x"
        lines.append(
            f"| {name} | {seconds:.2f} | {'-' if acc is None else f'{acc:.4f}'} | {rss:.0f} | {ratio} |"
        )
    return lines


def _bundle_precision(bundle: str) -> str:
    from engine.models.bundle import load_bundle

    return load_bundle(bundle).precision


def _small_variant(job: tuple[str, str, int]) -> None:
    from PIL import Image, ImageOps

    source, target, seed = job
    rng = random.Random(seed)
    with Image.open(source) as im:
        image = im.convert("RGB")
    side = rng.randint(96, 160)
    image = ImageOps.fit(
        image,
        (side * image.width // max(1, image.height), side)
        if image.width >= image.height
        else (side, side * image.height // max(1, image.width)),
    )
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image.save(target, quality=rng.randint(70, 95))


def build_small_photos(source: Path, target: Path, photos: int) -> Path:
    """``photos`` JPEGs of 96-160 px in five class folders (``target/class_<k>/``)."""
    originals = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    jobs = []
    for k in range(photos):
        folder = target / f"class_{k % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((str(originals[k % len(originals)]), str(folder / f"{k:05d}.jpg"), k))
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_small_variant, jobs, chunksize=64))
    return target


def memory_table(data: Path, counts: list[int]) -> list[str]:
    lines = [
        "| photos | seconds, launch to exit | peak RSS MB | best val acc (labels arbitrary) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for count in counts:
        with tempfile.TemporaryDirectory() as tmp:
            photos = build_small_photos(data, Path(tmp) / "photos", count)
            run = train_cli(photos, Path(tmp) / "run", Path(tmp) / "cache")
        lines.append(f"| {count:,} | {run['seconds']:.1f} | {run['rss_mb']:.0f} | {run['acc']:.4f} |")
        print(lines[-1], file=sys.stderr)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--photos", default="", help="comma-separated photo counts for the memory table")
    parser.add_argument("--skip-speed", action="store_true", help="only the memory table")
    parser.add_argument("--write", action="store_true", help="append the tables to BENCHMARKS.md")
    args = parser.parse_args()
    import torch

    from engine.core.machine import cpu_name

    lines = [
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, measured {time.strftime('%Y-%m-%d')}:",
        f"`python benchmarks/defaults_speed.py {args.data}"
        + (f" --photos {args.photos}" if args.photos else "")
        + (" --skip-speed" if args.skip_speed else "")
        + "`",
        "",
    ]
    if not args.skip_speed:
        lines += hymenoptera_table(args.data) + [""]
    if args.photos:
        lines += memory_table(args.data, [int(n) for n in args.photos.split(",")]) + [""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with (ROOT / "BENCHMARKS.md").open("a", encoding="utf-8") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    main()
