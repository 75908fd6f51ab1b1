"""Issue 27's export table: every format of one real run, as ``transfer-studio export --json`` reports it.

Trains the built-in model with every default on DATA (``train DATA --epochs 10``, or takes ``--bundle``),
then exports it to each format with ``export BUNDLE --format F --out ... --json`` (a process each) and
collects each report's summary line: size, top-1 accuracy on the validation photos against the app's
own model on the same photos, top-1 agreement, largest probability difference, and the median time
per photo at batch 1 on this CPU (for onnx-int8 also the float32 ONNX's, timed in the same report).

    .venv/bin/python benchmarks/export_formats.py ../shared/data/hymenoptera [--bundle model.pt]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_NAMES = {
    "onnx": "model.onnx",
    "onnx-int8": "model-int8.onnx",
    "openvino": "model.xml",
    "coreml": "model.mlpackage",
    "torchscript": "model.pt",
    "tflite": "model.tflite",
}


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"transfer-studio {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--bundle", type=Path, help="a run's model.pt (default: train one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        bundle = args.bundle
        if bundle is None:
            out = cli("train", str(args.data), "--epochs", "10", "--out", str(base / "run"), "--json",
                      env={"TRANSFER_STUDIO_CACHE": str(base / "cache")})  # fmt: skip
            bundle = Path(json.loads(out.strip().splitlines()[-1])["bundle"])
        rows = []
        for fmt, name in OUT_NAMES.items():
            line = cli("export", str(bundle), "--format", fmt, "--out", str(base / name), "--data", str(args.data),
                       "--json").strip().splitlines()[-1]  # fmt: skip
            rows.append(json.loads(line))
            print(rows[-1], file=sys.stderr)

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"`python benchmarks/export_formats.py {args.data}`\n")  # fmt: skip
    print("| format | size MB | val top-1 | the app's top-1 | agreement | largest prob. diff | ms/photo (batch 1) "
          "| the app's ms/photo | float32 ONNX ms/photo |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        diff = "-" if row["max_prob_diff"] is None else f"{row['max_prob_diff']:.4f}"
        print(f"| {row['format']} | {row['size_bytes'] / 2**20:.1f} | {pct(row['val_accuracy'])} "
              f"| {pct(row['reference_val_accuracy'])} | {pct(row['top1_agreement'])} | {diff} "
              f"| {ms(row['latency_ms'])} | {ms(row['reference_latency_ms'])} "
              f"| {ms(row.get('fp32_onnx_latency_ms'))} |")  # fmt: skip


if __name__ == "__main__":
    main()
