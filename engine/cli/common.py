"""What every command of the command line shares: the parser class, exit codes, JSON output, Ctrl+C,
the weights download with a bar, and options declared once in :mod:`engine.core.config`."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

from engine.core.config import STRATEGY_NAMES, TrainConfig
from engine.core.progress import DownloadBar, bars_wanted
from engine.core.setting import Declared, check_value, help_text, parse_word

PROG = "transfer-studio"
EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_CANCELLED = 130


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def print_json(payload: Any) -> None:
    """One line of standard JSON on standard output (what ``--json`` promises as the last line):
    NaN and infinities, which JSON has no words for, become null."""
    print(json.dumps(_finite(payload), default=str, allow_nan=False))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def say(text: str) -> None:
    """A line for the user on standard error, prefixed with the program's name."""
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def split_names(text: str | None) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


# -- options declared once ---------------------------------------------------------------------------


def setting(name: str) -> Declared:
    """The declaration of the TrainConfig field ``name``."""
    return next(item for item in TrainConfig.settings() if item.name == name)


def value_parser(item: Declared, *, check_range: bool = True) -> Any:
    """argparse ``type=`` for a number: words (``auto``), then (``check_range``) the declared range.

    ``train`` leaves the range to TrainConfig, whose ConfigError names the setting the same way.
    """

    def parse(text: str) -> Any:
        try:
            value = parse_word(item, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        problem = check_value(item, value) if check_range else None
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = item.name  # argparse names the type in some messages
    return parse


def metavar(item: Declared) -> str:
    words = "|".join(item.setting.words)
    number = "N" if item.kind is int else "X"
    return f"{words}|{number}" if words else number


def add_setting_option(
    parser: argparse.ArgumentParser | Any,
    item: Declared,
    *,
    default: Any = None,
    help: str | None = None,
    check_range: bool = True,
) -> None:
    """The option of one declared setting, named after its field (``--early-stopping-patience``) with
    its earlier spellings as aliases, and its help word for word (``%`` escaped for argparse)."""
    text = (help if help is not None else help_text(item, STRATEGY_NAMES)).replace("%", "%%")
    names = [item.option, *item.setting.aliases]
    if item.kind is bool:
        parser.add_argument(*names, dest=item.name, action=argparse.BooleanOptionalAction, default=default,
                            help=text)  # fmt: skip
    elif item.choices:
        parser.add_argument(*names, dest=item.name, choices=list(item.choices), default=default, help=text)
    elif item.kind in (int, float):
        parser.add_argument(*names, dest=item.name, type=value_parser(item, check_range=check_range), default=default,
                            metavar=metavar(item), help=text)  # fmt: skip
    else:
        parser.add_argument(*names, dest=item.name, default=default, help=text)


def add_shared_option(parser: argparse.ArgumentParser, name: str, **options: Any) -> None:
    """A TrainConfig setting that another command takes too (``--seed`` of ``scan``), with the same
    name, help and range."""
    add_setting_option(parser, setting(name), **options)


def add_force_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace an existing {what} (never a dataset's file, a photo or a model)",
    )


def bounded_number(kind: type[Any], low: float, high: float, *, above_low: bool = False) -> Any:
    """argparse ``type=`` for a number within [low, high] (above ``low`` with ``above_low``), finite."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
        if not math.isfinite(value) or value < low or value > high or (above_low and value == low):
            edge = f"greater than {low:g}" if above_low else f"from {low:g}"
            raise argparse.ArgumentTypeError(f"must be {edge} to {high:g}, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


# -- weights and stopping -----------------------------------------------------------------------------


def ensure_weights(name: str) -> Path:
    """The model's weights file, downloaded first (with a progress bar on a terminal) if needed."""
    from engine.models.weights import download_weights

    with DownloadBar(name, enabled=bars_wanted()) as bar:
        return download_weights(name, on_progress=bar)


class StopFlag:
    """``should_stop`` for long work; Ctrl+C sets it so the work ends cleanly after the current batch,
    and a second Ctrl+C aborts at once."""

    def __init__(self) -> None:
        self.stop = False
        import signal

        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread (tests calling main() from a worker thread)
            pass

    def _on_sigint(self, _signum: int, _frame: object) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        print(f"\n{PROG}: stopping after this batch (Ctrl+C again to abort)", file=sys.stderr)

    def __call__(self) -> bool:
        return self.stop
