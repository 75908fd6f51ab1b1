"""Quick start of the command line: launch to the first training batch, and a one-photo ``predict``.

Each measurement is a whole process, timed from just before it is spawned:

- ``python -m engine.cli train DATA --epochs 1 --out RUN --device cpu`` (the default strategy) with
  ``TRANSFER_STUDIO_CACHE`` pointed at an empty folder (a cold feature cache): launch to the first
  finished batch, and launch to exit. The command prints no line per batch when its output is piped,
  so its standard error is a pseudo-terminal here: the trainer's first ``BatchProgress`` event opens
  the first per-batch bar (``features: ...`` or ``epoch 1 training: ...``), and the moment that bar's
  text arrives is the first batch's. Its standard output says where the bundle went
  (``model saved to ...``).
- ``python -m engine.cli predict BUNDLE PHOTO --device cpu``: launch to exit, with the bundle of the
  first training run and the dataset's first photo.

The runs, the log and the app's data folder (``TRANSFER_STUDIO_DATA``, where the CPU's one-time
measurements are kept in ``machine.json``) are a temporary folder shared by all the runs: the first
``train`` also measures the machine, as the very first launch on a computer does, and the median is a
launch with a cold feature cache on a machine already measured.

Each is repeated ``--runs`` times (default 3) and the medians make a Markdown table, followed by the
15 largest cumulative imports of ``python -X importtime -m engine.cli --help``. The commands run in
``--root`` (default: this checkout; another copy of the source tree compares two versions on the same
machine at the same time). Unix only (a pty).

    .venv/bin/python benchmarks/quick_start.py ../shared/data/hymenoptera
    .venv/bin/python benchmarks/quick_start.py ../shared/data/hymenoptera --runs 5 --output quick.md
    .venv/bin/python benchmarks/quick_start.py ../shared/data/hymenoptera --root /tmp/before
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import pty
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_BATCH_LIMIT_S = 2.5
PREDICT_LIMIT_S = 2.0
#: The text of the first per-batch bar (engine/cli/train_progress.py names it after the phase).
FIRST_BATCH_BAR = re.compile(r"(features|epoch \d+ training): ")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class TrainTiming:
    first_batch_s: float
    exit_s: float
    bundle: Path


def _environment(workdir: Path, index: int) -> dict[str, str]:
    """The process's environment: an empty feature cache of its own; runs, logs and the app's data folder
    (the machine's measurements) in ``workdir``, shared by every run."""
    cache = workdir / f"cache-{index}"
    cache.mkdir()
    return {
        **os.environ,
        "TRANSFER_STUDIO_CACHE": str(cache),
        "TRANSFER_STUDIO_DATA": str(workdir / "data"),
        "TRANSFER_STUDIO_RUNS": str(workdir / "runs"),
        "TRANSFER_STUDIO_LOGS": str(workdir / "logs"),
        "PYTHONUNBUFFERED": "1",
    }


def _read_until_closed(fd: int, chunks: list[tuple[float, bytes]]) -> None:
    """Append (arrival time, bytes) for everything read from ``fd`` until its other end closes."""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the pty's last writer went away
            return
        if not data:
            return
        chunks.append((time.perf_counter(), data))


def train_once(python: str, root: Path, data: Path, workdir: Path, index: int) -> TrainTiming:
    """One cold ``train`` run: seconds to the first batch, seconds to exit, and the bundle it wrote."""
    command = [python, "-m", "engine.cli", "train", str(data), "--epochs", "1",
               "--out", str(workdir / f"run-{index}"), "--device", "cpu"]  # fmt: skip
    env = _environment(workdir, index)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks: list[tuple[float, bytes]] = []
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave)  # fmt: skip
    os.close(slave)
    reader = threading.Thread(target=_read_until_closed, args=(master, chunks), daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=900)
    ended = time.perf_counter()
    reader.join(timeout=10)
    os.close(master)
    stderr = b"".join(data for _, data in chunks).decode("utf-8", "replace")
    if proc.returncode != 0:
        raise SystemExit(f"train run {index} failed (exit {proc.returncode}):\n{stderr[-2000:]}")
    first = _first_match_time(chunks, FIRST_BATCH_BAR)
    if first is None:
        raise SystemExit(f"train run {index}: no per-batch bar on its standard error:\n{stderr[-2000:]}")
    saved = re.search(r"^model saved to (.+)$", stdout.decode("utf-8", "replace"), re.MULTILINE)
    if saved is None:
        raise SystemExit(f"train run {index} saved no bundle:\n{stdout.decode(errors='replace')[-2000:]}")
    return TrainTiming(first - started, ended - started, Path(saved.group(1).strip()))


def _first_match_time(chunks: list[tuple[float, bytes]], pattern: re.Pattern[str]) -> float | None:
    """When the text so far first matched ``pattern`` (the arrival time of the chunk that completed it)."""
    text = ""
    for arrived, data in chunks:
        text += data.decode("utf-8", "replace")
        if pattern.search(text):
            return arrived
    return None


def predict_once(python: str, root: Path, bundle: Path, photo: Path, workdir: Path, index: int) -> float:
    """Seconds from launch to exit of ``predict BUNDLE PHOTO --device cpu``."""
    command = [python, "-m", "engine.cli", "predict", str(bundle), str(photo), "--device", "cpu"]
    env = _environment(workdir, 100 + index)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    ended = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(f"predict run {index} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return ended - started


def top_imports(python: str, root: Path, count: int = 15) -> list[tuple[int, int, str]]:
    """The ``count`` largest cumulative imports of ``engine.cli --help``: (self µs, cumulative µs, name)."""
    proc = subprocess.run([python, "-X", "importtime", "-m", "engine.cli", "--help"], cwd=root,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    rows: list[tuple[int, int, str]] = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(.*)$", line)
        if match:
            rows.append((int(match.group(1)), int(match.group(2)), match.group(3).rstrip()))
    return sorted(rows, key=lambda row: row[1], reverse=True)[:count]


def first_photo(data: Path) -> Path:
    photos = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not photos:
        raise SystemExit(f"{data} holds no photos")
    return photos[0]


def _row(label: str, values: list[float], limit: float | None) -> str:
    target = f"≤ {limit:g} ({'PASS' if statistics.median(values) <= limit else 'FAIL'})" if limit else "-"
    return (f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} | "
            f"{target} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, help="dataset folder (e.g. ../shared/data/hymenoptera)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default=sys.executable, help="the interpreter to launch")
    parser.add_argument("--root", type=Path, default=ROOT, help="the source tree to run the commands in")
    parser.add_argument("--output", type=Path, help="also write the Markdown to this file")
    args = parser.parse_args(argv)

    data = args.data.resolve()
    photo = first_photo(data)
    trains: list[TrainTiming] = []
    predicts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ts-quick-start-") as tmp:
        workdir = Path(tmp)
        for i in range(args.runs):
            timing = train_once(args.python, args.root, data, workdir, i)
            trains.append(timing)
            print(f"train {i + 1}: first batch after {timing.first_batch_s:.2f} s, exit after "
                  f"{timing.exit_s:.2f} s", file=sys.stderr)  # fmt: skip
        for i in range(args.runs):
            predicts.append(predict_once(args.python, args.root, trains[0].bundle, photo, workdir, i))
            print(f"predict {i + 1}: exit after {predicts[-1]:.2f} s", file=sys.stderr)

    first_batch = [t.first_batch_s for t in trains]
    train_exit = [t.exit_s for t in trains]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "| measure (s) | median | min | max | target |",
        "| --- | --- | --- | --- | --- |",
        _row("train: launch → first batch (cold cache)", first_batch, FIRST_BATCH_LIMIT_S),
        _row("train: launch → exit (1 epoch)", train_exit, None),
        _row("predict 1 photo: launch → exit", predicts, PREDICT_LIMIT_S),
        "",
        f"{args.runs} runs each, `--device cpu`, {os.cpu_count()} cores, load average {load:.1f}, "
        f"Python {platform.python_version()}; dataset {data}; source tree {args.root}.",
        "",
        "Top 15 cumulative imports of `python -X importtime -m engine.cli --help`:",
        "",
        "| module | cumulative (ms) | self (ms) |",
        "| --- | --- | --- |",
        *(
            f"| `{name.strip()}` | {cumulative / 1000:.1f} | {own / 1000:.1f} |"
            for own, cumulative, name in top_imports(args.python, args.root)
        ),
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    met = (
        statistics.median(first_batch) <= FIRST_BATCH_LIMIT_S
        and statistics.median(predicts) <= PREDICT_LIMIT_S
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
