"""The ``transfer-studio`` and ``transfer-studio-gui`` entry points: open the window, or hand a subcommand to the CLI.

``transfer-studio`` (optionally with Qt options such as ``-platform offscreen``, or a dataset folder)
opens the window. ``transfer-studio COMMAND …`` (any of :data:`engine.core.commands.COMMANDS`), ``-h``/``--help``
and ``--version`` run :func:`engine.cli.main` and return its exit code without ever importing Qt;
``--self-test`` runs :mod:`gui.shell.selftest`. ``transfer-studio-gui`` (:func:`main_window`, a gui-script:
no console window on Windows; what the ``.desktop`` file runs) only ever opens the window.

Before the window opens, :func:`gui.shell.qt_platform.check` makes sure Qt's platform plugin can load on Linux;
if system libraries are missing, the launcher says which packages to install and exits with
:data:`gui.shell.qt_platform.EXIT_MISSING_LIBRARIES` instead of letting Qt abort. This module imports nothing
heavy at import time.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.core.commands import is_cli_call

logger = logging.getLogger(__name__)

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


def _window_ready(qt_args: Sequence[str]) -> int | None:
    """None when the window can try to open; else the exit code, after telling the user why not."""
    from gui.shell import qt_platform  # standard library only

    problem = qt_platform.check(qt_args)
    if problem is None:
        return None
    from engine.core.logs import set_up_logging  # standard library and platformdirs only

    set_up_logging()  # so the message also reaches the log file
    qt_platform.report(problem)
    return qt_platform.EXIT_MISSING_LIBRARIES


def _open_window(qt_args: list[str], positional: list[str]) -> int:
    refused = _window_ready(qt_args)
    if refused is not None:
        return refused
    from gui.shell.app import run  # Qt only when the window opens

    return run(qt_args, dataset=positional[0] if positional else None)


def _run_self_test(args: list[str]) -> int:
    from gui.shell import selftest

    refused = _window_ready([arg for arg in args if arg != selftest.FLAG])
    return refused if refused is not None else selftest.main(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run Transfer Studio (the ``transfer-studio`` console script); returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    from gui.shell import selftest  # standard library only; Qt is imported when the self-test runs

    if selftest.requested(args):
        return _run_self_test(args)
    split = split_arguments(args)
    if split is None:
        from engine.cli import main as cli_main  # no Qt on this path

        return int(cli_main(args) or 0)
    return _open_window(*split)


def _ensure_standard_streams() -> None:
    """A gui-script on Windows (pythonw) has no stdout/stderr: send them to the null device."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - lives as long as the process


def main_window(argv: Sequence[str] | None = None) -> int:
    """The ``transfer-studio-gui`` gui-script: always opens the window (or the self-test), never the CLI.

    Qt options and a dataset folder are honoured as for ``transfer-studio``; any other argument is
    logged and ignored, since a windowed process has no console to print a usage message to.
    """
    _ensure_standard_streams()
    args = list(sys.argv[1:] if argv is None else argv)
    from gui.shell import selftest

    if selftest.requested(args):
        return _run_self_test(args)
    split = split_arguments(args)
    if split is None:
        logger.warning("transfer-studio-gui: ignoring the arguments %s (the CLI is transfer-studio)", args)
        split = ([], [])
    return _open_window(*split)


if __name__ == "__main__":
    sys.exit(main())
