"""The app's log file: one rotating file in the platform's log folder, written by the window and the CLI.

:func:`set_up_logging` is called once at start-up by each front end. It keeps the front end's own
console output (the CLI's ``transfer-studio: warning: …`` lines) and adds a file handler that records
INFO and above, with times and thread names, to ``<log folder>/transfer-studio.log`` (rotated at
2 MB, three old files kept). Crashes of the interpreter itself (a segfault in a native library) are
written by :mod:`faulthandler` to ``crash.log`` beside it. A log folder that cannot be written never
stops the app: the file handler is then left out and a warning says why.
"""

from __future__ import annotations

import faulthandler
import logging
import logging.handlers
import os
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

from engine.core.locations import log_dir

LOG_FILE_NAME = "transfer-studio.log"
CRASH_FILE_NAME = "crash.log"
MAX_BYTES = 2_000_000
BACKUP_COUNT = 3
FILE_FORMAT = "%(asctime)s %(levelname)s [%(process)d %(threadName)s] %(name)s: %(message)s"

log = logging.getLogger(__name__)

_crash_file: IO[str] | None = None


def log_file() -> Path:
    """The current log file's path (it may not exist yet)."""
    return log_dir() / LOG_FILE_NAME


class _AppFileHandler(logging.handlers.RotatingFileHandler):
    """The app's file handler (a distinct type, so setting up twice never adds a second one)."""


class _AppConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The app's console handler (standard error)."""


def set_up_logging(console_level: int = logging.WARNING, console_format: str | None = None) -> Path | None:
    """Console logging at ``console_level`` plus the rotating log file; returns the file's path, or
    None when the log folder cannot be written. Safe to call more than once (tests, a second window)."""
    root = logging.getLogger()
    console = next((h for h in root.handlers if isinstance(h, _AppConsoleHandler)), None)
    if console is None and all(isinstance(h, _AppFileHandler) for h in root.handlers):
        console = _AppConsoleHandler()  # like logging.basicConfig: only when nobody else set up logging
        root.addHandler(console)
    if console is not None:
        console.setLevel(console_level)
        console.setFormatter(logging.Formatter(console_format or "%(levelname)s %(name)s: %(message)s"))
    root.setLevel(min(console_level, logging.INFO))
    path = log_file()
    existing = [h for h in root.handlers if isinstance(h, _AppFileHandler)]
    if existing and Path(existing[0].baseFilename) == path.absolute():
        return path
    for handler in existing:  # the log folder changed (tests point it elsewhere)
        root.removeHandler(handler)
        handler.close()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _AppFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8", errors="backslashreplace"
        )
    except OSError as exc:
        log.warning("cannot write the log file %s (%s); logging to the console only", path, exc)
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    root.addHandler(handler)
    _log_crashes(path.parent / CRASH_FILE_NAME)
    threading.excepthook = _log_thread_exception
    log.info("%s started (pid %d): %s", Path(sys.argv[0]).name if sys.argv else "python", os.getpid(),
             " ".join(sys.argv[1:]))  # fmt: skip
    return path


def _log_crashes(path: Path) -> None:
    """Let :mod:`faulthandler` write a native crash's Python stack to ``path`` (kept open)."""
    global _crash_file
    if _crash_file is not None or faulthandler.is_enabled():  # already on (python -X faulthandler, pytest)
        return
    try:
        _crash_file = open(path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115 - for the process's life
    except OSError as exc:
        log.warning("cannot open %s for crash reports: %s", path, exc)
        return
    faulthandler.enable(file=_crash_file, all_threads=True)


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """threading.excepthook: an exception that ends a thread goes to the log with its traceback."""
    if args.exc_type is SystemExit:
        return
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | None = (
        (args.exc_type, args.exc_value, args.exc_traceback) if args.exc_value is not None else None
    )
    name = args.thread.name if args.thread is not None else "?"
    log.error("unhandled exception in thread %s", name, exc_info=exc_info)
