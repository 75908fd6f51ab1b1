"""The headless command line: the sub-commands of :data:`engine.core.commands.COMMANDS`, one module each.
Never imports Qt.

Every failure the user can cause ends in one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from engine import __version__
from engine.cli import audit, compare, doctor, evaluate, export, models, predict, runs, scan, sort, train
from engine.cli.common import EXIT_CANCELLED, EXIT_FAILURE, PROG, Parser
from engine.core.commands import COMMANDS
from engine.core.errors import Cancelled, TransferStudioError

#: Each sub-command's handler.
HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "scan": scan.run,
    "audit": audit.run,
    "sort": sort.run,
    "models": models.run_models,
    "train": train.run,
    "predict": predict.run,
    "weights": models.run_weights,
    "doctor": doctor.run,
    "evaluate": evaluate.run,
    "export": export.run,
    "compare": compare.run,
    "runs": runs.run_runs,
    "report": runs.run_report,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Train image classifiers by transfer learning. Run with no arguments to open the app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    scan.add_parser(sub)
    audit.add_parser(sub)
    sort.add_parser(sub)
    models.add_parsers(sub)  # models, weights
    train.add_parser(sub)
    predict.add_parser(sub)
    compare.add_parser(sub)
    runs.add_parsers(sub)  # runs, report
    doctor.add_parser(sub)
    evaluate.add_parser(sub)
    export.add_parser(sub)
    return parser


def _answer_signals() -> Callable[[], object]:
    """SIGTERM ends a command as Ctrl+C does (cleanly, one line, exit 130; a training run saves its best
    epoch first; torchrun's ranks excepted), and standard output writes paths whose bytes are not UTF-8
    as they are. Returns what puts the previous SIGTERM handler back."""
    import signal
    import threading

    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="surrogateescape" if stream is sys.stdout else "backslashreplace")
            except (ValueError, OSError):
                pass
    from engine.core.launch import under_torchrun

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return lambda: None
    if under_torchrun():  # a rank: SIGTERM is the launcher's hard stop, and ends it at once
        return lambda: None
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: signal.raise_signal(signal.SIGINT))
    return lambda: signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a multi-process launch
    if args.command is None:
        parser.print_help()
        return 0
    restore_signals = _answer_signals()
    try:
        return _run_command(args)
    finally:
        restore_signals()


def skip_final_collection() -> None:
    """Spare a command's process the full garbage collection of its exit (a third of a second once torch
    is loaded: longer than classifying a photo): every object is moved out of the collector's reach
    (``gc.freeze``), after the standard streams are flushed. Exit handlers still run and files are
    still closed; only cycles of objects that die with the process are left to the system. Call it
    only when the process is about to exit; never in a torchrun rank (its process-group objects are
    left to the usual shutdown)."""
    import gc

    from engine.core.launch import under_torchrun

    if under_torchrun():
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    gc.freeze()


def _run_command(args: argparse.Namespace) -> int:
    from engine.core.logs import set_up_logging

    set_up_logging(logging.WARNING, f"{PROG}: %(levelname)s: %(message)s")
    from engine.core.allocator import tune_allocator

    tune_allocator()  # before torch allocates anything large (see BENCHMARKS.md, "CPU allocator")
    assert HANDLERS.keys() == COMMANDS.keys(), "engine.core.commands.COMMANDS and the handlers differ"
    try:
        return HANDLERS[args.command](args)
    except TransferStudioError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Cancelled as exc:  # a stop request that reached a step with nothing to save
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
