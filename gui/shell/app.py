"""Application start-up: the QApplication (reused if one exists), logging, error hook, the window.

Environment variables:
  ``TRANSFER_STUDIO_SETTINGS``       settings file (see :mod:`gui.core.settings`)
  ``TRANSFER_STUDIO_RUNS``           folder for training runs
  ``TRANSFER_STUDIO_LOG_LEVEL``      e.g. ``DEBUG`` (default ``WARNING``)
  ``TRANSFER_STUDIO_STARTUP_PROBE``  a file: when the window is first on screen, write the Unix time
                                     there and quit (used by ``benchmarks/startup.py``)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from gui.background.gc_policy import collect_on_the_gui_thread
from gui.background.jobs import friendly_error
from gui.shell.icon import app_icon
from gui.shell.main_window import MainWindow

logger = logging.getLogger(__name__)

_windows: list[MainWindow] = []  # windows kept alive when an outer event loop owns the app
_in_hook = False


def _configure_logging() -> None:
    """The console at ``$TRANSFER_STUDIO_LOG_LEVEL`` and the log file (:mod:`engine.core.logs`)."""
    from engine.core.logs import set_up_logging  # standard library only

    level = os.environ.get("TRANSFER_STUDIO_LOG_LEVEL", "WARNING").upper()
    set_up_logging(
        getattr(logging, level, logging.WARNING), "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def show_unexpected_error(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """sys.excepthook: log the traceback and show a readable message (details on request)."""
    global _in_hook
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logger.error("unexpected error", exc_info=(exc_type, exc, tb))
    if _in_hook or QApplication.instance() is None:
        return
    _in_hook = True
    try:
        box = QMessageBox(QMessageBox.Icon.Critical, "Transfer Studio", "Something went wrong.")
        from engine.core.logs import log_file

        box.setInformativeText(
            f"{friendly_error(exc)}\n\nYour work is not lost; you can keep using the app. "
            "If this happens again, please report it with the details below and the log file:\n"
            f"{log_file()}"
        )
        box.setDetailedText("".join(traceback.format_exception(exc_type, exc, tb)))
        box.exec()
    finally:
        _in_hook = False


def _write_probe(path: str) -> None:
    Path(path).write_text(f"{time.time():.6f}\n", encoding="utf-8")


def run(qt_args: list[str] | None = None, dataset: str | None = None) -> int:
    """Open the main window; returns the exit code (0 at once when an outer event loop runs)."""
    _configure_logging()
    from engine.core.allocator import tune_allocator

    tune_allocator()  # before training allocates anything large (see BENCHMARKS.md, "CPU allocator")
    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "transfer-studio", *(qt_args or [])])
    assert isinstance(app, QApplication)
    app.setApplicationName("Transfer Studio")
    app.setOrganizationName("TransferStudio")
    app.setDesktopFileName("transfer-studio")
    app.setWindowIcon(app_icon())
    sys.excepthook = show_unexpected_error

    window = MainWindow()
    _windows.append(window)
    app.aboutToQuit.connect(window.shutdown)
    probe = os.environ.get("TRANSFER_STUDIO_STARTUP_PROBE")
    if probe:

        def probe_and_quit() -> None:
            _write_probe(probe)
            app.quit()

        window.firstShown.connect(lambda: QTimer.singleShot(0, probe_and_quit))
    window.show()
    if dataset:
        window.data_tab.open_dataset(dataset)

    # Let Ctrl+C in the terminal close the window (Python handles signals only between Qt calls).
    signal.signal(signal.SIGINT, lambda *_: window.close())
    # A timer lets Python handle it, and collects garbage on this thread (gui.background.gc_policy).
    collect_on_the_gui_thread(window)

    if app.thread().loopLevel() > 0:
        return 0  # an outer event loop (IPython, a host app) drives the window
    return int(app.exec())
