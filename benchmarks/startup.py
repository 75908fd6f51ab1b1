"""Window start-up time: from launching the process to the main window being on screen.

Each run starts a fresh ``python -m gui.shell.launch`` (or ``--command``) with
``TRANSFER_STUDIO_STARTUP_PROBE`` set, so the app writes the Unix time at which its window was
first shown (after the first event-loop turn following the show) and quits. The difference to the
moment just before the process was spawned is the launch-to-window time. Settings and runs go to a
temporary folder, so no last dataset is reopened.

    .venv/bin/python benchmarks/startup.py            # 5 runs, offscreen, Markdown on stdout
    .venv/bin/python benchmarks/startup.py --runs 10 --platform xcb --output startup.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 3.0


def launch_once(command: list[str], qpa: str | None, workdir: Path, index: int) -> tuple[float, float]:
    """(seconds to window shown, seconds until the process exited)."""
    probe = workdir / f"shown-{index}.txt"
    env = {
        **os.environ,
        "TRANSFER_STUDIO_STARTUP_PROBE": str(probe),
        "TRANSFER_STUDIO_SETTINGS": str(workdir / f"settings-{index}.ini"),
        "TRANSFER_STUDIO_RUNS": str(workdir / "runs"),
    }
    if qpa:
        env["QT_QPA_PLATFORM"] = qpa
    started = time.time()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    ended = time.time()
    if proc.returncode != 0 or not probe.exists():
        raise SystemExit(f"launch {index} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return float(probe.read_text()) - started, ended - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--platform",
        default=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
        help="Qt platform plugin (offscreen, xcb under Xvfb, ...)",
    )
    parser.add_argument("--command", default=f"{sys.executable} -m gui.shell.launch", help="what to launch")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    args = parser.parse_args(argv)

    command = shlex.split(args.command)
    shown: list[float] = []
    exited: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ts-startup-") as tmp:
        for i in range(args.runs):
            to_window, to_exit = launch_once(command, args.platform, Path(tmp), i)
            shown.append(to_window)
            exited.append(to_exit)
            print(f"run {i + 1}: window shown after {to_window:.2f} s (process exited after {to_exit:.2f} s)")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    verdict = "PASS" if statistics.median(shown) < LIMIT_S else "FAIL"
    table = "\n".join(
        [
            "| measure | min | median | max |",
            "| --- | --- | --- | --- |",
            f"| launch → window shown (s) | {min(shown):.2f} | {statistics.median(shown):.2f} | "
            f"{max(shown):.2f} |",
            f"| launch → process exit (s) | {min(exited):.2f} | {statistics.median(exited):.2f} | "
            f"{max(exited):.2f} |",
            "",
            f"{args.runs} runs of `{args.command}` with QT_QPA_PLATFORM={args.platform}, "
            f"{os.cpu_count()} cores, load average {load:.1f}, Python {platform.python_version()}. "
            f"Target: window shown in under {LIMIT_S:.0f} s ({verdict}).",
        ]
    )
    print()
    print(table)
    if args.output:
        args.output.write_text(table + "\n", encoding="utf-8")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
