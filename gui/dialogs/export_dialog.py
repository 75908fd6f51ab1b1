"""File → Export…: export the current model to ONNX or TorchScript and check the exported file.

The dialog (``exportDialog``) offers the format (``exportFormat``), the output file (``exportPath`` with
a **Browse…** button using ``QFileDialog.getSaveFileName``) and **Export** (``exportButton``). On a
worker thread it runs ``engine.inference.export.export_bundle`` and then ``engine.inference.export.parity_check`` on the
current dataset's validation images; ``exportResult`` shows where the file went, the label agreement
and the largest probability difference, or why the parity check could not run (e.g. onnxruntime not
installed). Errors are shown in the dialog, never as tracebacks.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.background.jobs import FunctionWorker, Job, ThreadRunner
from gui.core.settings import Settings

if TYPE_CHECKING:
    from engine.data.datasets import DatasetReport
    from engine.inference.export import ExportResult, ParityReport
    from engine.models.bundle import Bundle

logger = logging.getLogger(__name__)

FORMATS = {"onnx": ("ONNX (.onnx)", ".onnx"), "torchscript": ("TorchScript (.pt)", ".pt")}
#: At most this many validation images go through the parity check (keeps it to seconds).
PARITY_MAX_IMAGES = 256


def val_images(dataset: DatasetReport | None, limit: int = PARITY_MAX_IMAGES) -> list[Path]:
    """The parity-check images of a scanned ``DatasetReport`` (``engine.inference.export.parity_images``)."""
    if dataset is None:
        return []
    from engine.inference.export import parity_images  # imports torch: only once a model is loaded

    return parity_images(dataset, limit)


def describe_parity(parity: ParityReport) -> str:
    """One line for a ``ParityReport``: agreement and largest difference, or why it is unavailable."""
    if not parity.available:
        return f"parity unavailable: {parity.reason}"
    verdict = "passed" if parity.passed() else "check the differences"
    text = (
        f"label agreement {parity.label_agreement:.1%} on {parity.n_images} validation image(s), "
        f"largest probability difference {parity.max_prob_diff:.2e} ({verdict})"
    )
    if parity.unreadable:
        text += f"; {parity.unreadable} unreadable image(s) skipped"
    return text


class ExportDialog(QDialog):
    """Export the loaded model and show the parity check's result."""

    def __init__(
        self,
        bundle: Bundle,
        images: list[Path],
        runner: ThreadRunner,
        settings: Settings,
        parent: QWidget | None = None,
        protect: list[Path] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.protect = list(protect or [])  # the datasets in use: nothing is written inside them
        self.setAccessibleName("Export the model")
        self.setWindowTitle("Export model")
        self.bundle = bundle
        self.images = list(images)
        self.runner = runner
        self.settings = settings
        self.export_result: ExportResult | None = None
        self.parity: ParityReport | None = None
        self.job = Job(
            runner,
            "export",
            self,
            on_progress=self._on_progress,
            on_returned=self._on_exported,
            on_errored=self._on_failed,
            on_aborted=self._on_aborted,
            on_done=self._on_done,
        )

        self.format_box = QComboBox()
        self.format_box.setObjectName("exportFormat")
        self.format_box.setAccessibleName("Export format")
        for key, (label, _suffix) in FORMATS.items():
            self.format_box.addItem(label, key)
        self.format_box.currentIndexChanged.connect(self._on_format_changed)
        self.path_edit = QLineEdit()
        self.path_edit.setObjectName("exportPath")
        self.path_edit.setAccessibleName("Exported file")
        self.path_edit.textChanged.connect(self._update_buttons)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.setObjectName("exportBrowseButton")
        self.browse_button.setAccessibleName("Choose the exported file")
        self.browse_button.clicked.connect(self.choose_path)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse_button)
        form = QFormLayout()
        form.addRow("Format:", self.format_box)
        form.addRow("File:", path_row)
        self.info = QLabel(
            f"{bundle.architecture}, {len(bundle.class_names)} classes. Class names and preprocessing go "
            "into a .json file next to the model. "
            + (
                f"The parity check runs {len(self.images)} validation image(s) through both models."
                if self.images
                else "No dataset is open, so no parity check will run."
            )
        )
        self.info.setObjectName("exportInfo")
        self.info.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setObjectName("exportProgress")
        self.progress.setAccessibleName("Export progress")
        self.progress.hide()
        self.result_label = QLabel()
        self.result_label.setObjectName("exportResult")
        self.result_label.setAccessibleName("Export result")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("exportButton")
        self.export_button.setAccessibleName("Export the model")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.export_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.info)
        layout.addWidget(self.progress)
        layout.addWidget(self.result_label)
        layout.addWidget(buttons)
        self.resize(560, 260)
        self._on_format_changed()

    def fmt(self) -> str:
        return str(self.format_box.currentData())

    def _default_path(self) -> str:
        folder = Path(self.settings.get_str("export/last_folder") or Path.home())
        return str(folder / f"{self.bundle.architecture}{FORMATS[self.fmt()][1]}")

    @Slot()
    def _on_format_changed(self) -> None:
        text = self.path_edit.text().strip()
        suffix = FORMATS[self.fmt()][1]
        if not text:
            self.path_edit.setText(self._default_path())
        else:
            path = Path(text)
            if path.suffix.lower() in {s for _label, s in FORMATS.values()}:
                self.path_edit.setText(str(path.with_suffix(suffix)))
        self._update_buttons()

    @Slot()
    def choose_path(self) -> None:
        label, suffix = FORMATS[self.fmt()]
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export the model as",
            self.path_edit.text(),
            f"{label.split(' ')[0]} (*{suffix});;All files (*)",
        )
        if path:
            self.path_edit.setText(path)

    @Slot()
    def _update_buttons(self) -> None:
        running = self.job.is_busy()
        self.export_button.setEnabled(bool(self.path_edit.text().strip()) and not running)
        for widget in (self.format_box, self.path_edit, self.browse_button):
            widget.setEnabled(not running)

    def is_busy(self) -> bool:
        return self.job.is_busy()

    @Slot()
    def start(self) -> None:
        """Export and check parity on a worker thread."""
        if self.job.is_busy() or not self.path_edit.text().strip():
            return
        out = Path(self.path_edit.text().strip()).expanduser()
        fmt, bundle, images, protect = self.fmt(), self.bundle, self.images, self.protect
        if not self._may_write(out):
            return

        def run(worker: FunctionWorker) -> tuple[ExportResult, ParityReport | None]:
            from engine.inference.export import export_bundle, parity_check

            result = export_bundle(bundle, fmt, out, force=True, protect=protect)
            worker.check_abort()
            if not images:
                return result, None
            parity = parity_check(
                bundle,
                result.path,
                images,
                fmt=fmt,
                on_progress=worker.report_progress,
                should_stop=lambda: worker.abort_requested,
            )
            return result, parity

        self.export_result = None
        self.parity = None
        self.progress.setRange(0, 0)
        self.progress.show()
        self.result_label.setText(f"Exporting to {out.name}…")
        self.settings.set("export/last_folder", str(out.parent))
        self.job.start(run)
        self._update_buttons()

    def _may_write(self, out: Path) -> bool:
        """Whether ``out`` (and its metadata file) may be written: never a model bundle, a photo, a run's
        file or anything in a dataset in use; an earlier export only after the user says Replace."""
        from engine.data.outputs import OutputRefused, check_output_file
        from engine.inference.export import EXPORT_SUFFIXES, sidecar_path

        try:
            for path, suffixes in ((out, EXPORT_SUFFIXES), (sidecar_path(out), (".json",))):
                check_output_file(
                    path, what="the export", datasets=self.protect, force=True, replaceable=suffixes
                )
        except OutputRefused as exc:
            self.result_label.setText(f"<b>Not exported:</b> {html.escape(str(exc))}")
            return False
        if out.exists():
            answer = QMessageBox.question(
                self, "Replace the file?", f"{out} already exists. Replace it with this export?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                self.result_label.setText("Not exported: choose another file name.")
                return False
        return True

    def _on_progress(self, done: int, total: int) -> None:
        self.result_label.setText(f"Exported. Checking parity: {done} of {total} image(s)…")
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_exported(self, answer: tuple[ExportResult, ParityReport | None]) -> None:
        self.export_result, self.parity = answer
        lines = [f"<b>Exported</b> to {self.export_result.path} (+ {self.export_result.sidecar.name})."]
        if self.parity is None:
            lines.append("Parity check skipped: open a dataset on the Data tab to check the file.")
        else:
            lines.append("Parity: " + describe_parity(self.parity) + ".")
        self.result_label.setText("<br>".join(lines))

    def _on_failed(self, message: str) -> None:
        self.result_label.setText(f"<b>Export failed:</b> {message}")

    def _on_aborted(self) -> None:  # stopped from elsewhere (the window shutting down)
        self.result_label.setText("Export stopped.")

    def _on_done(self) -> None:
        self.progress.hide()
        self._update_buttons()

    def done(self, code: int) -> None:  # noqa: D401 - Qt override: closing stops a running export
        self.job.cancel()
        super().done(code)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.job.cancel()
        super().closeEvent(event)
