"""``transfer-studio doctor``: versions, devices, folders and what is wrong."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.cli.common import EXIT_FAILURE, PROG, print_json
from engine.core.commands import COMMANDS


def add_parser(sub: Any) -> None:
    doctor = sub.add_parser("doctor", help=COMMANDS["doctor"])
    doctor.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from engine.doctor import environment_report, format_environment

    report = environment_report()
    if args.json:
        print_json(report)
    else:
        print(format_environment(report))
    problems = []
    if not report["runs"].get("writable"):
        problems.append("the runs folder is not writable")
    if not report["offline_model"].get("present"):
        problems.append("the built-in offline model is missing")
    if problems:
        print(f"{PROG}: problem: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0
