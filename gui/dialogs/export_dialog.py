"""File → Export…: export the current model and check the exported file where it will run.

The dialog (``exportDialog``) offers the format (``exportFormat``: ONNX, TorchScript, int8 ONNX,
OpenVINO, Core ML, TFLite; ``exportNeeds`` names the package to install for a format whose converter is
missing, and says that a Core ML model runs only on macOS), the output file (``exportPath`` with a
**Browse…** button using ``QFileDialog.getSaveFileName``), a deploy folder for the ONNX formats
(``exportDeploy``: a folder that runs without the app or torch) and **Export** (``exportButton``). On a
worker thread it runs ``engine.inference.export.export_bundle``, the strict parity check for ONNX and
TorchScript, and ``engine.inference.export_report.export_report`` on the open dataset's validation
photos; ``exportResult`` shows where the file went and the report's table (size, accuracy against the
app's model, agreement, largest probability difference, time per photo), with a warning and the photos
that changed answer when the export lost more than a point. Errors are shown in the dialog, never as
tracebacks.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
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

from engine.core.errors import TransferStudioError
from gui.background.jobs import FunctionWorker, Job, ThreadRunner
from gui.core.settings import Settings

if TYPE_CHECKING:
    from engine.data.datasets import DatasetReport
    from engine.inference.export import ExportResult, ParityReport
    from engine.inference.export_report import ExportReport
    from engine.models.bundle import Bundle

logger = logging.getLogger(__name__)

FORMATS = {
    "onnx": ("ONNX (.onnx)", ".onnx"),
    "onnx-int8": ("ONNX int8, smaller and faster (.onnx)", ".onnx"),
    "openvino": ("OpenVINO IR (.xml + .bin)", ".xml"),
    "coreml": ("Core ML for Apple devices (.mlpackage)", ".mlpackage"),
    "tflite": ("TFLite / LiteRT (.tflite)", ".tflite"),
    "torchscript": ("TorchScript (.pt)", ".pt"),
}
DEPLOYABLE = ("onnx", "onnx-int8")
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
        dataset: DatasetReport | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.protect = list(protect or [])  # the datasets in use: nothing is written inside them
        self.setAccessibleName("Export the model")
        self.setWindowTitle("Export model")
        self.bundle = bundle
        self.images = list(images)
        self.dataset = dataset  # the open dataset: its validation photos check the export
        self.runner = runner
        self.settings = settings
        self.export_result: ExportResult | None = None
        self.parity: ParityReport | None = None
        self.report: ExportReport | None = None
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
        self.needs_label = QLabel()
        self.needs_label.setObjectName("exportNeeds")
        self.needs_label.setWordWrap(True)
        self.needs_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.deploy_box = QCheckBox(
            "Also write a folder that runs without this app (needs only Python, onnxruntime, numpy and Pillow)"
        )
        self.deploy_box.setObjectName("exportDeploy")
        self.deploy_box.setAccessibleName("Also write a deploy folder")
        self.deploy_box.toggled.connect(self._update_buttons)
        form = QFormLayout()
        form.addRow("Format:", self.format_box)
        form.addRow("", self.needs_label)
        form.addRow("File:", path_row)
        form.addRow("", self.deploy_box)
        self.info = QLabel(
            f"{bundle.architecture}, {len(bundle.class_names)} classes. Class names and preprocessing go "
            "into a .json file next to the model. "
            + (
                f"The export is checked on {len(self.images)} validation photo(s): accuracy, agreement with "
                "this app's model, and speed."
                if self.images
                else "No dataset is open, so the export will not be checked (open one on the Data tab)."
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

    def deploy_folder(self) -> Path | None:
        """Where the deploy folder goes (beside the model, named after it), when one is asked for."""
        if not (self.deploy_box.isChecked() and self.deploy_box.isEnabled()):
            return None
        out = Path(self.path_edit.text().strip()).expanduser()
        return out.with_name(out.stem + "-deploy")

    def format_problem(self) -> str | None:
        """Why the chosen format cannot be made now (a package to install; int8 without photos)."""
        from engine.inference.formats import install_hint, missing_packages

        missing = missing_packages(self.fmt())
        if missing:
            return f"Needs {', '.join(missing)}, not installed: {install_hint(self.fmt())}"
        if self.fmt() == "onnx-int8" and (self.dataset is None or not self.dataset.splits.get("train")):
            return "Open the model's dataset on the Data tab first: the int8 model is calibrated on its training photos."
        return None

    @Slot()
    def _on_format_changed(self) -> None:
        problem = self.format_problem()
        note = problem or ("A Core ML model converts here but runs only on macOS: it is checked by its spec, "
                           "not run." if self.fmt() == "coreml" else "")  # fmt: skip
        self.needs_label.setText(note)
        self.needs_label.setVisible(bool(note))
        self.deploy_box.setEnabled(self.fmt() in DEPLOYABLE)
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
        possible = self.format_problem() is None
        self.export_button.setEnabled(bool(self.path_edit.text().strip()) and not running and possible)
        for widget in (self.format_box, self.path_edit, self.browse_button):
            widget.setEnabled(not running)
        self.deploy_box.setEnabled(not running and self.fmt() in DEPLOYABLE)

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

        dataset, deploy = self.dataset, self.deploy_folder()
        if deploy is not None and not self._may_deploy(deploy):
            return

        def run(worker: FunctionWorker) -> tuple[ExportResult, ParityReport | None, ExportReport | None]:
            return _export_and_check(worker, bundle, fmt, out, images, protect, dataset, deploy)

        self.export_result = None
        self.parity = None
        self.report = None
        self.progress.setRange(0, 0)
        self.progress.show()
        self.result_label.setText(f"Exporting to {out.name}…")
        self.settings.set("export/last_folder", str(out.parent))
        self.job.start(run)
        self._update_buttons()

    def _may_deploy(self, folder: Path) -> bool:
        from engine.data.outputs import OutputRefused
        from engine.inference.deploy import check_deploy_folder

        try:
            check_deploy_folder(folder, datasets=self.protect)
        except (OutputRefused, TransferStudioError) as exc:
            self.result_label.setText(f"<b>Not exported:</b> {html.escape(str(exc))}")
            return False
        return True

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
        self.result_label.setText(f"Exported. Checking it: {done} of {total} photo(s)…")
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_exported(self, answer: tuple[ExportResult, ParityReport | None, ExportReport | None]) -> None:
        self.export_result, self.parity, self.report = answer
        lines = [
            f"<b>Exported</b> to {html.escape(str(self.export_result.path))} (+ {self.export_result.sidecar.name})."
        ]
        deploy = self.export_result.metadata.get("deploy_folder")
        if deploy:
            lines.append(f"Deploy folder: {html.escape(str(deploy))} (run: python predict.py PHOTO).")
        if self.parity is not None:
            lines.append("Parity: " + describe_parity(self.parity) + ".")
        if self.report is None:
            lines.append("Not checked: open a dataset on the Data tab to check the file on its photos.")
        else:
            lines.append(report_html(self.report))
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


def report_html(report: ExportReport) -> str:
    """The export report as a small table (and its warning, with the photos that changed answer)."""
    if not report.available:
        return f"Not run here: {html.escape(report.reason or '')}. File size {report.rows()[0][1]}."
    cells = "".join(
        f"<tr><td>{html.escape(a)}</td><td align='right'>{html.escape(b)}</td><td align='right'>{html.escape(c)}</td></tr>"
        for a, b, c in report.rows()
    )
    table = (
        f"<table cellspacing='6'><tr><th></th><th>{report.format}</th><th>this app</th></tr>{cells}</table>"
    )
    if report.warning:
        changed = "".join(f"<br>{html.escape(Path(p).name)}: {html.escape(a)} → {html.escape(e)}"
                          for p, a, e in report.changed[:10])  # fmt: skip
        table += f"<b>Warning:</b> {html.escape(report.warning)}.{changed}"
    return table


def _export_and_check(
    worker: FunctionWorker,
    bundle: Bundle,
    fmt: str,
    out: Path,
    images: list[Path],
    protect: list[Path],
    dataset: DatasetReport | None,
    deploy: Path | None,
) -> tuple[ExportResult, ParityReport | None, ExportReport | None]:
    """The worker's job: export, the deploy folder, the parity check (ONNX, TorchScript) and the report."""
    import dataclasses

    from engine.inference.export import export_bundle, parity_check
    from engine.inference.export_report import export_report
    from engine.inference.formats import calibration_photos

    calibration: list[Path] = []
    if fmt == "onnx-int8" and dataset is not None:
        calibration = calibration_photos(dataset.splits.get("train", []))
    result = export_bundle(bundle, fmt, out, force=True, protect=protect, calibration_photos=calibration)
    if deploy is not None:
        from engine.inference.deploy import write_deploy_folder

        folder = write_deploy_folder(bundle, result.path, deploy, datasets=protect)
        result = dataclasses.replace(result, metadata=result.metadata | {"deploy_folder": str(folder)})
    worker.check_abort()
    parity = None
    stop = lambda: worker.abort_requested  # noqa: E731 - polled between batches
    if fmt in ("onnx", "torchscript") and images:
        parity = parity_check(
            bundle, result.path, images, fmt=fmt, on_progress=worker.report_progress, should_stop=stop
        )
    val = list(dataset.splits.get("val", []))[:PARITY_MAX_IMAGES] if dataset is not None else []
    report = None
    if dataset is not None and val:
        report = export_report(bundle, fmt, result.path, val, dataset.classes, on_progress=worker.report_progress,
                               should_stop=stop)  # fmt: skip
    return result, parity, report
