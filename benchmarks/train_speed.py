"""Side-by-side training benchmark: the PyTorch tutorial's loop versus Transfer Studio's engine.

Each variant runs in its own subprocess (so peak RSS and GPU memory are its own), on the same data,
model, strategy and epoch count, end to end from the dataset path to a finished run. Prints a
Markdown table and, with ``--write``, appends it to BENCHMARKS.md.

    python benchmarks/train_speed.py ../shared/data/hymenoptera --model efficientnet_lite0 \\
        --strategies feature-extract --epochs 10 --device cpu --write

The tutorial loop is the one from "Transfer Learning for Computer Vision" (pytorch.org tutorials):
ImageFolder + DataLoader workers decoding and transforming every image every epoch, batch 4, fp32,
SGD(lr=0.001, momentum=0.9), StepLR(7, 0.1), ``model.train()`` on the whole model, the full network
run forward every epoch, best weights kept by deepcopy. Only the model construction is shared with the
engine (the same pretrained weights and the same new head), so the comparison is about the loop.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tutorial(data: Path, model_name: str, strategy: str, epochs: int, device_name: str) -> dict:
    import torch
    from torch import nn
    from torchvision import datasets, transforms

    from engine.core.device import resolve_device
    from engine.models.build import build_model
    from engine.models.registry import get_model_info

    start = time.perf_counter()
    device = resolve_device(device_name)
    pre = get_model_info(model_name).preprocessing
    normalize = transforms.Normalize(pre.mean, pre.std)
    data_transforms = {
        "train": transforms.Compose(
            [
                transforms.RandomResizedCrop(pre.crop_size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]
        ),
        "val": transforms.Compose(
            [
                transforms.Resize(pre.resize_size),
                transforms.CenterCrop(pre.crop_size),
                transforms.ToTensor(),
                normalize,
            ]
        ),
    }
    image_datasets = {x: datasets.ImageFolder(data / x, data_transforms[x]) for x in ["train", "val"]}
    workers = min(4, os.cpu_count() or 1)
    loaders = {
        x: torch.utils.data.DataLoader(image_datasets[x], batch_size=4, shuffle=True, num_workers=workers)
        for x in ["train", "val"]
    }
    sizes = {x: len(image_datasets[x]) for x in ["train", "val"]}
    torch.manual_seed(0)
    model, heads = build_model(model_name, len(image_datasets["train"].classes), pretrained=True)
    if strategy == "feature-extract":
        head_params = {f"{h}." for h in heads}
        for name, param in model.named_parameters():
            param.requires_grad = any(name.startswith(h) for h in head_params)
    model = model.to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)

    best_wts, best_acc, best_epoch = copy.deepcopy(model.state_dict()), 0.0, 0
    for epoch in range(1, epochs + 1):
        for phase in ["train", "val"]:
            model.train() if phase == "train" else model.eval()
            running_corrects = 0
            for inputs, labels in loaders[phase]:
                inputs, labels = inputs.to(device), labels.to(device)
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(inputs)
                    if isinstance(outputs, tuple):
                        outputs = outputs[0]
                    loss = criterion(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                running_corrects += int((outputs.argmax(1) == labels).sum())
            if phase == "train":
                scheduler.step()
            acc = running_corrects / sizes[phase]
            if phase == "val" and acc > best_acc:
                best_acc, best_epoch, best_wts = acc, epoch, copy.deepcopy(model.state_dict())
        print(f"tutorial epoch {epoch}/{epochs} val acc {acc:.4f}", file=sys.stderr, flush=True)
    model.load_state_dict(best_wts)
    seconds = time.perf_counter() - start
    return _result("tutorial loop", seconds, best_acc, best_epoch, epochs, sizes, device)


def run_engine(data: Path, model_name: str, strategy: str, epochs: int, device_name: str) -> dict:
    from engine.core.allocator import tune_allocator

    tune_allocator()  # what the CLI and the window do at start-up
    from engine.core.config import TrainConfig
    from engine.core.device import resolve_device
    from engine.data.datasets import scan_dataset
    from engine.training.trainer import train

    start = time.perf_counter()
    device = resolve_device(device_name)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFER_STUDIO_CACHE"] = str(Path(tmp) / "cache")  # cold cache: nothing reused
        config = TrainConfig.for_strategy(strategy, model=model_name, epochs=epochs, device=device_name)
        result = train(config, data, run_dir=Path(tmp) / "run")
    seconds = time.perf_counter() - start
    report = scan_dataset(data)
    sizes = {s: len(report.splits[s]) for s in ("train", "val")}
    return _result("Transfer Studio", seconds, result.best_val_acc, result.best_epoch, epochs, sizes, device)


def run_engine_warm(data: Path, model_name: str, strategy: str, epochs: int, device_name: str) -> dict:
    """The engine's second run on the same data and model: the feature cache is warm."""
    from engine.core.allocator import tune_allocator

    tune_allocator()
    from engine.core.config import TrainConfig
    from engine.core.device import resolve_device
    from engine.data.datasets import scan_dataset
    from engine.training.trainer import train

    device = resolve_device(device_name)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFER_STUDIO_CACHE"] = str(Path(tmp) / "cache")
        config = TrainConfig.for_strategy(strategy, model=model_name, epochs=epochs, device=device_name)
        train(config, data, run_dir=Path(tmp) / "first")  # fills the feature cache
        start = time.perf_counter()
        result = train(config, data, run_dir=Path(tmp) / "second")
        seconds = time.perf_counter() - start
    report = scan_dataset(data)
    sizes = {s: len(report.splits[s]) for s in ("train", "val")}
    return _result(
        "Transfer Studio, warm cache", seconds, result.best_val_acc, result.best_epoch, epochs, sizes, device
    )


def run_floor(data: Path, model_name: str, strategy: str, epochs: int, device_name: str) -> dict:
    """The backbone's forward pass alone over every view a cold feature-extract run computes, with the
    engine's best settings (allocator, channels_last, its batch size), on ready-made tensors: no
    decoding, no head training. What a cold run can at best approach."""
    from engine.core.allocator import tune_allocator

    tune_allocator()
    import torch

    from engine.core.config import TrainConfig
    from engine.core.device import resolve_device
    from engine.data.datasets import scan_dataset
    from engine.models.build import build_model
    from engine.models.registry import get_model_info
    from engine.training.data_path import feature_views
    from engine.training.features import FeatureExtractor
    from engine.training.recipe import inference_batch_size

    device = resolve_device(device_name)
    config = TrainConfig.for_strategy(strategy, model=model_name, epochs=epochs, device=device_name)
    report = scan_dataset(data)
    sizes = {s: len(report.splits[s]) for s in ("train", "val")}
    views = sizes["train"] * feature_views(config.augment, config.feature_views, device) + sizes["val"]
    crop = get_model_info(model_name).preprocessing.crop_size
    batch = inference_batch_size(config.batch_size, device)
    model, heads = build_model(model_name, 2, pretrained=True)
    model.to(device)
    model.to(memory_format=torch.channels_last)
    model.eval()
    extractor = FeatureExtractor(model, heads[0])
    images = torch.rand(batch, 3, crop, crop, device=device).contiguous(memory_format=torch.channels_last)
    extractor(images[:2])  # warm-up
    start = time.perf_counter()
    for first in range(0, views, batch):
        extractor(images[: min(batch, views - first)])
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return _result(f"floor: backbone over {views} views", seconds, float("nan"), 0, epochs, sizes, device)


def _result(name, seconds, best_acc, best_epoch, epochs, sizes, device) -> dict:
    import torch

    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    images = epochs * (sizes["train"] + sizes["val"])
    return {
        "variant": name,
        "seconds": round(seconds, 2),
        "images_per_s": round(images / seconds, 1),
        "best_val_acc": round(best_acc, 4),
        "best_epoch": best_epoch,
        "peak_gpu_mb": round(peak_gpu, 1) if peak_gpu is not None else None,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def _one(args: argparse.Namespace) -> None:
    if args.random_weights:  # speed only: where the pretrained file cannot be had (an offline GPU box)
        from engine.models import build

        build._build_pretrained = build._build_scratch  # type: ignore[assignment]  # benchmark-only switch
    runner = {"tutorial": run_tutorial, "engine": run_engine, "warm": run_engine_warm, "floor": run_floor}[
        args.one
    ]
    result = runner(args.data, args.model, args.strategy, args.epochs, args.device)
    print(json.dumps(result))


def _machine(device: str) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores (no GPU used)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--strategies", default="feature-extract,fine-tune")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--write", action="store_true", help="append the table to BENCHMARKS.md")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="speed only: start from random weights instead of the ImageNet ones (same network)",
    )
    parser.add_argument("--one", choices=["tutorial", "engine", "warm", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--strategy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args)
        return

    import torch

    lines = [
        f"### {args.model}, {args.epochs} epochs, {args.data.name} — {_machine(args.device)}",
        "",
        f"torch {torch.__version__}, measured {time.strftime('%Y-%m-%d')}, "
        f"`python benchmarks/train_speed.py {args.data} --model {args.model} --strategies {args.strategies} "
        f"--epochs {args.epochs} --device {args.device}{' --random-weights' if args.random_weights else ''}`"
        + (" (random weights: speed only, accuracy meaningless)" if args.random_weights else ""),
        "",
        "| strategy | variant | seconds | images/s | best val acc | peak GPU MB | peak RSS MB | speed-up |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for strategy in args.strategies.split(","):
        rows = []
        feature_variants = ("tutorial", "engine", "warm", "floor")
        variants = feature_variants if strategy == "feature-extract" else ("tutorial", "engine")
        for variant in variants:
            cmd = [
                sys.executable, __file__, str(args.data), "--one", variant, "--strategy", strategy,
                "--model", args.model, "--epochs", str(args.epochs), "--device", args.device,
                *(["--random-weights"] if args.random_weights else []),
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                sys.exit(f"{variant} {strategy} failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{strategy} {variant}: {rows[-1]}", file=sys.stderr)
        for row in rows:
            ratio = rows[0]["seconds"] / row["seconds"]
            speedup = f"**{ratio:.1f}x**" if row is rows[1] else f"{ratio:.1f}x"
            if row is rows[-1] and len(rows) == 4:  # the floor: how far the engine's cold run is from it
                speedup += f" (engine run = {rows[1]['seconds'] / row['seconds']:.2f}x the floor)"
            gpu = row["peak_gpu_mb"] if row["peak_gpu_mb"] is not None else "-"
            acc = f"{row['best_val_acc']:.4f}" if row["best_val_acc"] == row["best_val_acc"] else "-"
            lines.append(
                f"| {strategy} | {row['variant']} | {row['seconds']} | {row['images_per_s']} | "
                f"{acc} | {gpu} | {row['peak_rss_mb']} | {speedup} |"
            )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.write:
        with (ROOT / "BENCHMARKS.md").open("a", encoding="utf-8") as handle:
            handle.write("\n" + table)


if __name__ == "__main__":
    main()
