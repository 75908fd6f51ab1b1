"""Help → Environment: the environment doctor's report (``engine.doctor``) in a dialog, with Copy,
the log folder and the choice of the cache folder (where backbone features are kept between runs).

The report (Python, torch, torchvision, CUDA build vs driver, GPUs, why CUDA is not usable, cache
folders and sizes, whether the runs folder is writable) imports torch and walks cache folders, so it
is computed on a worker thread; the dialog shows "Checking…" until it arrives.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QUrl, Slot
from PySide6.QtGui import QDesktopServices, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.core.logs import log_file
from gui.background.jobs import FunctionWorker, Job, ThreadRunner
from gui.core.settings import Settings

logger = logging.getLogger(__name__)


def environment_text(_worker: FunctionWorker) -> str:
    """The doctor's report as text (runs on a worker thread)."""
    from engine.doctor import environment_report, format_environment

    return format_environment(environment_report())


class EnvironmentDialog(QDialog):
    """Shows the environment report; ``refresh()`` computes it again."""

    def __init__(
        self, runner: ThreadRunner, settings: Settings | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.settings = settings or Settings()
        self._notes: list[str] = []  # shown before the report's own status line
        self.setObjectName("environmentDialog")
        self.setAccessibleName("Environment")
        self.setWindowTitle("Environment")
        self.resize(720, 480)
        self.runner = runner
        self.job = Job(runner, "environment-report", self, on_returned=self._on_report,
                       on_errored=self._on_failed, on_done=self._on_done)  # fmt: skip
        self.status = QLabel()
        self.status.setObjectName("environmentStatus")
        self.status.setAccessibleName("Environment status")
        self.status.setWordWrap(True)
        self.text = QPlainTextEdit()
        self.text.setObjectName("environmentText")
        self.text.setAccessibleName("Environment report")
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.copy_button = QPushButton("Copy")
        self.copy_button.setObjectName("environmentCopyButton")
        self.copy_button.setAccessibleName("Copy the report")
        self.copy_button.clicked.connect(self.copy)
        self.refresh_button = QPushButton("Check again")
        self.refresh_button.setObjectName("environmentRefreshButton")
        self.refresh_button.setAccessibleName("Check the environment again")
        self.refresh_button.clicked.connect(self.refresh)
        self.log_button = QPushButton("Open log folder")
        self.log_button.setObjectName("environmentLogButton")
        self.log_button.setAccessibleName("Open the folder of the log file")
        self.log_button.setToolTip(str(log_file()))
        self.log_button.clicked.connect(self.open_log_folder)
        self.cache_button = QPushButton("Cache folder…")
        self.cache_button.setObjectName("environmentCacheButton")
        self.cache_button.setAccessibleName("Change the cache folder")
        self.cache_button.clicked.connect(self.choose_cache_folder)
        self._show_cache_folder()
        close = QPushButton("Close")
        close.setObjectName("environmentCloseButton")
        close.setAccessibleName("Close")
        close.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.log_button)
        buttons.addWidget(self.cache_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.text, 1)
        layout.addLayout(buttons)
        self.refresh()

    def is_busy(self) -> bool:
        return self.job.is_busy()

    @Slot()
    def refresh(self) -> None:
        if self.is_busy():
            return
        self.status.setText("Checking the environment…")
        self.copy_button.setEnabled(False)
        self.refresh_button.setEnabled(False)
        if not self.job.start(environment_text):
            self._on_failed("the app is shutting down")

    def _on_report(self, text: str) -> None:
        self.text.setPlainText(text)
        self.status.setText(
            " ".join(
                [*self._notes, f"Include this report, and the log file {log_file()}, when you ask for help."]
            )
        )
        self.copy_button.setEnabled(True)

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"The environment could not be checked: {message}")

    def _on_done(self) -> None:
        self.refresh_button.setEnabled(True)

    @Slot()
    def copy(self) -> None:
        """Put the report on the clipboard."""
        QGuiApplication.clipboard().setText(self.text.toPlainText())
        self.status.setText("Copied to the clipboard.")

    @Slot()
    def open_log_folder(self) -> None:
        """Show the log file's folder in the file manager."""
        folder = log_file().parent
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _show_cache_folder(self) -> None:
        folder = self.settings.feature_cache_root()
        if self.settings.feature_cache_root_is_fixed():
            self.cache_button.setEnabled(False)
            self.cache_button.setToolTip(f"{folder}\n(set by TRANSFER_STUDIO_CACHE; unset it to choose here)")
        else:
            self.cache_button.setToolTip(f"Backbone features are kept between runs in {folder}")

    @Slot()
    def choose_cache_folder(self) -> None:
        """Ask for the folder where backbone features are cached; later runs and audits use it."""
        old = self.settings.feature_cache_root()
        folder = QFileDialog.getExistingDirectory(self, "Folder for the feature cache", str(old))
        if not folder or Path(folder) == old:
            return
        self.settings.set_feature_cache_root(folder)
        self._show_cache_folder()
        self._notes = [
            f"Features are now cached in {folder}. Those cached in {old} stay there; delete that "
            "folder to free its space."
        ]
        self.refresh()
