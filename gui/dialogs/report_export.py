"""File → Export report…: the HTML report of a run or a bake-off, written off the GUI thread.

:class:`ReportExporter` asks for the run folder (unless it is given, as the Runs tab does) and for the
file, runs :func:`engine.reports.report.write_report` on a :class:`~gui.background.jobs.Job`
with a progress dialog whose Cancel stops the evaluation, then says where the report went, with an
"Open" button that opens it in the browser. Nothing here imports torch (the worker does).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressDialog, QWidget

from engine.core.rundir import CONFIG_FILE, LEADERBOARD_FILE
from gui.background.jobs import FunctionWorker, Job, ThreadRunner
from gui.core.settings import Settings

logger = logging.getLogger(__name__)

REPORT_FILTER = "HTML files (*.html *.htm)"
#: A folder with one of these is something write_report understands (a run, a bake-off).
_REPORTABLE = (CONFIG_FILE, LEADERBOARD_FILE)


def run_folder_of(bundle_path: str | Path | None) -> Path | None:
    """The run folder a model.pt was loaded from, or None when it does not sit in one."""
    if not bundle_path:
        return None
    folder = Path(bundle_path).parent
    return folder if (folder / CONFIG_FILE).is_file() else None


class ReportExporter(QObject):
    """Asks, writes and tells; ``written(path)`` after a report was written, ``failed(message)`` if not."""

    written = Signal(str)
    failed = Signal(str)

    def __init__(self, settings: Settings, runner: ThreadRunner, parent: QWidget) -> None:
        super().__init__(parent)
        self.settings = settings
        self.runner = runner
        self.window = parent
        self.job = Job(
            runner,
            "write-report",
            self,
            on_progress=self._on_progress,
            on_returned=self._on_written,
            on_errored=self._on_failed,
            on_aborted=self._on_aborted,
            on_done=self._on_done,
        )
        self.progress: QProgressDialog | None = None
        self.done_box: QMessageBox | None = None
        self.output: Path | None = None

    def is_busy(self) -> bool:
        return self.job.is_busy()

    def export(self, run_dir: str | Path | None = None, start: str | Path | None = None) -> None:
        """Ask for the run folder (starting at ``start``) unless ``run_dir`` is given, then the file."""
        if self.job.is_busy():
            if self.progress is not None:
                self.progress.raise_()
            return
        if run_dir is None:
            chosen = QFileDialog.getExistingDirectory(
                self.window,
                "Export the report of which run or bake-off?",
                str(start or self.settings.runs_root()),
            )
            if not chosen:
                return
            run_dir = chosen
        folder = Path(run_dir)
        if not any((folder / name).is_file() for name in _REPORTABLE):
            QMessageBox.warning(
                self.window,
                "Not a run folder",
                f"{folder} holds no run (config.json) and no bake-off (leaderboard.json).",
            )
            return
        suggested = str(folder / "report.html")
        out, _ = QFileDialog.getSaveFileName(self.window, "Save the report as", suggested, REPORT_FILTER)
        if not out:
            return
        target = Path(out) if Path(out).suffix.lower() in (".html", ".htm") else Path(out + ".html")
        self._start(folder, target)

    def _start(self, folder: Path, target: Path) -> None:
        def work(worker: FunctionWorker) -> Path:
            from engine.reports.report import write_report

            return write_report(  # the save dialog asked before replacing; a bundle, photo or dataset file is refused
                folder,
                target,
                should_stop=lambda: worker.abort_requested,
                on_progress=worker.report_progress,
                force=True,
            )

        self.output = target
        progress = QProgressDialog(f"Writing the report of {folder.name}…", "Cancel", 0, 0, self.window)
        progress.setObjectName("reportProgress")
        progress.setWindowTitle("Export report")
        progress.setMinimumDuration(300)
        progress.setAutoClose(False)
        progress.setAutoReset(False)
        progress.canceled.connect(self.cancel)
        self.progress = progress
        if not self.job.start(work):
            self._on_done()

    @Slot()
    def cancel(self) -> None:
        if self.job.is_busy():
            self.job.stop()
            if self.progress is not None:
                self.progress.setLabelText("Cancelling…")

    def _on_progress(self, done: int, total: int) -> None:
        if self.progress is not None and not self.progress.wasCanceled():
            self.progress.setLabelText(f"Evaluating the model: {done} of {total} images…")
            self.progress.setMaximum(total)
            self.progress.setValue(done)

    def _on_written(self, path: Path) -> None:
        self._close_progress()
        self.written.emit(str(path))
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Report written",
            f"The report was written to\n{path}",
            QMessageBox.StandardButton.NoButton,
            self.window,
        )
        box.setObjectName("reportWrittenBox")
        open_button = box.addButton("Open", QMessageBox.ButtonRole.AcceptRole)
        open_button.setObjectName("openReportButton")
        box.addButton(QMessageBox.StandardButton.Close)
        open_button.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))))
        self.done_box = box
        box.open()

    def _on_failed(self, message: str) -> None:
        self._close_progress()
        self.failed.emit(message)
        QMessageBox.warning(self.window, "Report not written", message)

    def _on_aborted(self) -> None:
        self._close_progress()
        self.failed.emit("cancelled")

    def _on_done(self) -> None:
        self._close_progress()

    def _close_progress(self) -> None:
        if self.progress is not None:
            self.progress.canceled.disconnect(self.cancel)
            self.progress.close()
            self.progress.deleteLater()
            self.progress = None

    def shutdown(self) -> None:
        self.cancel()
        self._close_progress()
        if self.done_box is not None:
            self.done_box.close()
