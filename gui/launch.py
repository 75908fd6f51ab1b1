"""The ``transfer-studio`` entry point: opens the window, or hands a subcommand to the CLI.

``transfer-studio`` (optionally with Qt options such as ``-platform offscreen``, or a dataset folder)
opens the window. ``transfer-studio COMMAND …`` (any of :data:`engine.core.commands.COMMANDS`), ``-h``/``--help``
and ``--version`` run :func:`engine.cli.main` and return its exit code without ever importing Qt;
``--self-test`` runs :mod:`gui.selftest`. This module imports nothing heavy at import time.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from engine.core.commands import is_cli_call

#: Qt's own command-line options that take a value (``-platform offscreen``).
QT_VALUE_OPTIONS = frozenset({
    "-platform", "-platformpluginpath", "-platformtheme", "-plugin", "-style", "-stylesheet",
    "-display", "-geometry", "-qwindowgeometry", "-qwindowtitle", "-qwindowicon", "-name",
    "-title", "-session", "-qmljsdebugger", "-graphicssystem",
})  # fmt: skip
QT_FLAG_OPTIONS = frozenset({"-reverse", "-widgetcount", "-nograb", "-dograb", "-sync"})


def split_arguments(argv: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """``(qt_args, positional)`` when ``argv`` means "open the window", else None (a CLI call)."""
    qt_args: list[str] = []
    positional: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if is_cli_call([arg]):  # sub-commands win over a folder of the same name
            return None
        option = arg.split("=", 1)[0]
        if option in QT_VALUE_OPTIONS or option.lstrip("-") in {o.lstrip("-") for o in QT_VALUE_OPTIONS}:
            qt_args.append(arg)
            if "=" not in arg and i + 1 < len(args):
                qt_args.append(args[i + 1])
                i += 1
        elif arg in QT_FLAG_OPTIONS:
            qt_args.append(arg)
        elif not arg.startswith("-") and Path(arg).expanduser().is_dir() and not positional:
            positional.append(arg)  # a dataset folder to open
        else:
            return None  # unknown: let the CLI explain the usage
        i += 1
    return qt_args, positional


def main(argv: Sequence[str] | None = None) -> int:
    """Run Transfer Studio; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    from gui import selftest  # standard library only; Qt is imported when the self-test runs

    if selftest.requested(args):
        return selftest.main(args)
    split = split_arguments(args)
    if split is None:
        from engine.cli import main as cli_main  # no Qt on this path

        return int(cli_main(args) or 0)
    from gui.app import run  # Qt only when the window opens

    qt_args, positional = split
    return run(qt_args, dataset=positional[0] if positional else None)


if __name__ == "__main__":
    sys.exit(main())
