"""How long sorting 10,000 photos takes: proposals cold and warm, and the photo map (issue 23).

Builds a dataset whose labelled photos are hymenoptera's (train/ and val/ linked) and whose
``unlabeled/`` holds ``--photos`` variants of them (benchmarks/audit_speed.py's variants: crops,
resizes, colour jitter, flips, JPEG quality; in sub-folders named by their true class, which the
sorting never reads). Then, each in a fresh process, timed from launch to exit with its peak RSS:

1. ``transfer-studio sort DATA --json`` with ``TRANSFER_STUDIO_CACHE`` at an empty folder (cold: the
   backbone runs on every photo);
2. the same again (warm: features from the cache);
3. the photo map of every photo (warm features): openTSNE after PCA, and k-means groups; against
   scikit-learn's Barnes-Hut t-SNE on the same PCA features (the naive baseline).

    .venv/bin/python benchmarks/sort_speed.py ../shared/data/hymenoptera [--photos 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds from launch to exit, this child's peak RSS in GB, and its standard output."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=env, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            raise SystemExit(f"{command} failed with {child.returncode}")
        out.seek(0)
        return seconds, usage.ru_maxrss / 1e6, out.read()  # ru_maxrss: KiB on Linux


def map_child(data: Path) -> dict:
    """In a fresh process: the map of every photo from warm features, openTSNE and the baseline."""
    import torch

    from engine.data.datasets import scan_dataset
    from engine.sorting.features import photo_features
    from engine.sorting.photo_map import _reduced, project, suggest_groups

    report = scan_dataset(data, list_unlabeled=True, verify=False)
    features = photo_features(report, device="cpu")
    everything = torch.cat([features.labeled, features.unlabeled])
    out: dict = {"photos": int(everything.shape[0])}
    start = time.perf_counter()
    project(everything)
    out["opentsne_seconds"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    suggest_groups(everything, 8)
    out["kmeans_seconds"] = round(time.perf_counter() - start, 2)
    from sklearn.manifold import TSNE

    start = time.perf_counter()
    TSNE(2, random_state=0, init="pca").fit_transform(_reduced(everything, 0))
    out["sklearn_tsne_seconds"] = round(time.perf_counter() - start, 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="hymenoptera (train/ and val/ class folders)")
    parser.add_argument("--photos", type=int, default=10000)
    parser.add_argument("--keep", type=Path, default=None, help="build (or reuse) the dataset here")
    parser.add_argument("--map-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.map_child is not None:
        print(json.dumps(map_child(args.map_child)))
        return 0
    from audit_speed import build_dataset

    with tempfile.TemporaryDirectory() as tmp:
        data = args.keep or Path(tmp) / "photos"
        if not (data / "unlabeled").exists():
            data.mkdir(parents=True, exist_ok=True)
            for split in ("train", "val"):
                os.symlink(args.source.resolve() / split, data / split)
            started = time.perf_counter()
            build_dataset(args.source, data / "unlabeled", args.photos)
            print(f"built {args.photos} photos in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        env = dict(
            os.environ,
            TRANSFER_STUDIO_CACHE=str(Path(tmp) / "cache"),
            TRANSFER_STUDIO_DATA=str(Path(tmp) / "appdata"),
        )
        command = [sys.executable, "-m", "engine.cli", "sort", str(data), "--json", "--device", "cpu"]
        result: dict = {"cores": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2)}
        cold, cold_peak, out = timed(command, env)
        payload = json.loads(out.strip().splitlines()[-1])
        right = sum(p["suggested"] == Path(p["path"]).parent.name for p in payload["proposals"])
        warm, warm_peak, _ = timed(command, env)
        result.update({
            "unlabeled": payload["unlabeled"], "labeled": payload["labeled"],
            "suggestions_right": round(right / max(1, payload["unlabeled"]), 4),
            "cold_seconds": round(cold, 1), "cold_peak_rss_gb": round(cold_peak, 2),
            "warm_seconds": round(warm, 1), "warm_peak_rss_gb": round(warm_peak, 2),
            "cold_over_warm": round(cold / warm, 1),
        })  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, str(args.source), "--map-child", str(data)],
                              check=True, capture_output=True, text=True, env=env)  # fmt: skip
        result["map_process_seconds"] = round(time.perf_counter() - start, 1)
        result.update(json.loads(done.stdout.strip().splitlines()[-1]))
        result["sklearn_over_opentsne"] = round(
            result["sklearn_tsne_seconds"] / result["opentsne_seconds"], 1
        )
        result["load_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
