"""The pretrained-weights dialog: download a model's weights with progress, or import a file fetched elsewhere.

Shown by the Train tab before a run whose model's weights are not on this machine, and by
File → Import weights file…. The download (``engine.models.weights.download_weights``) and the import
(``engine.models.weights.import_weights``) run on a worker thread; the dialog shows bytes done/total, the
speed and a progress bar, and Cancel stops the download within a chunk (nothing partial is kept). A
download that fails offers Try again; one that broke off resumes where it stopped.
When the server cannot be reached the dialog says which file is needed and from which URL, and offers
Import weights file…. The dialog is accepted once the weights are in the cache, rejected on Cancel.
A ``.safetensors`` file chosen from File → Import weights file… whose name is not a timm model's cache
name (``timm--<model>--model.safetensors``: a Hub ``model.safetensors`` as downloaded) cannot be matched
offline, so the dialog asks which curated timm model it holds; Cancel there imports nothing.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.core.sizes import format_size
from gui.background.jobs import Job, ThreadRunner, Worker

if TYPE_CHECKING:
    from engine.models.weights import WeightsError

logger = logging.getLogger(__name__)

WEIGHTS_FILTER = "Weights files (*.pth *.pt *.safetensors);;All files (*)"


def timm_weights_files() -> dict[str, str]:
    """Each curated timm model in the catalog -> the cache name of its weights file, in catalog order."""
    from engine.models.hub import hub_file_name
    from engine.models.registry import list_models

    return {
        info.name: hub_file_name(info.hub_repo)
        for info in list_models()
        if info.source == "timm" and info.hub_repo
    }


class WeightsWorker(Worker):
    """Downloads (``source`` None) or imports (``source`` a file) weights on a worker thread.

    ``yielded`` carries (bytes_done, bytes_total, bytes_per_s); ``returned`` the cached file's Path, or
    the ``WeightsError`` when it failed (so the dialog can read ``.offline``, ``.url`` and
    ``.file_name``); a cancelled download emits ``aborted``.
    """

    def __init__(self, model: str | None, source: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.source = source

    def work(self) -> Path | WeightsError:
        from engine.models import weights

        try:
            if self.source is not None:
                return weights.import_weights(self.source, self.model)
            assert self.model is not None
            return weights.download_weights(
                self.model, on_progress=self._on_progress, should_stop=lambda: self.abort_requested
            )
        except weights.WeightsError as exc:
            return exc

    def _on_progress(self, done: int, total: int, speed: float) -> None:
        self.yielded.emit((int(done), int(total), float(speed)))


class WeightsDialog(QDialog):
    """Gets ``model``'s weights into the cache (or, with ``model`` None, imports any weights file).

    ``weightsReady(path)`` when a file was downloaded or imported; the dialog then accepts itself
    (download mode) or says so and offers Close (import-only mode).
    """

    weightsReady = Signal(str)

    def __init__(self, model: str | None, runner: ThreadRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("weightsDialog")
        self.setAccessibleName("Pretrained weights")
        self.model = model
        self.runner = runner
        self.job = Job(runner, "weights", self, on_yielded=self._on_progress, on_returned=self._on_returned,
                       on_errored=self._on_errored)  # fmt: skip
        self.offline = False
        self.setWindowTitle(f"Weights for {model}" if model else "Import weights file")
        self.setMinimumWidth(520)

        self.message = QLabel()
        self.message.setObjectName("weightsMessage")
        self.message.setAccessibleName("Weights status")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setObjectName("weightsProgress")
        self.progress.setAccessibleName("Download progress")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.bytes_label = QLabel()
        self.bytes_label.setObjectName("weightsBytes")
        self.bytes_label.setAccessibleName("Bytes downloaded")
        self.speed_label = QLabel()
        self.speed_label.setObjectName("weightsSpeed")
        self.speed_label.setAccessibleName("Download speed")
        self.import_button = QPushButton("Import weights file…")
        self.import_button.setObjectName("importWeightsButton")
        self.import_button.setAccessibleName("Import weights file")
        self.import_button.clicked.connect(self.choose_file)
        self.retry_button = QPushButton("Try again")
        self.retry_button.setObjectName("weightsRetryButton")
        self.retry_button.setAccessibleName("Try the download again")
        self.retry_button.setToolTip("Download again; a download that broke off resumes where it stopped")
        self.retry_button.clicked.connect(self.start_download)
        self.retry_button.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("weightsCancelButton")
        self.cancel_button.setAccessibleName("Cancel")
        self.cancel_button.clicked.connect(self.reject)

        numbers = QHBoxLayout()
        numbers.addWidget(self.bytes_label, 1)
        numbers.addWidget(self.speed_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addStretch(1)
        buttons.addWidget(self.retry_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message)
        layout.addWidget(self.progress)
        layout.addLayout(numbers)
        layout.addLayout(buttons)

        if model is None:
            self._show_import_only()
        else:
            self.import_button.hide()

    # -- modes ----------------------------------------------------------------------------------------
    def _show_import_only(self) -> None:
        self.message.setText(
            "Choose a pretrained weights file (.pth, or a timm model's model.safetensors) downloaded on "
            "another machine. It is checked against the model catalog and copied into the weights "
            "cache. For a model.safetensors you are asked which timm model it is for."
        )
        self.progress.hide()
        self.bytes_label.hide()
        self.speed_label.hide()
        self.cancel_button.setText("Close")

    def start_download(self) -> None:
        """Start downloading ``model``'s weights (download mode only)."""
        if self.model is None or self.is_busy():
            return
        self.offline = False
        self.import_button.hide()
        self.retry_button.hide()
        self.progress.show()
        self.progress.setRange(0, 0)  # busy until the server says the size
        self.message.setText(f"Downloading the pretrained weights of <b>{html.escape(self.model)}</b>…")
        self.bytes_label.setText("Connecting…")
        self.speed_label.setText("")
        self._run(WeightsWorker(self.model), "download-weights")

    @Slot()
    def choose_file(self) -> None:
        """Ask for a weights file and import it (for ``model`` when given).

        Without ``model``, a ``.safetensors`` file not named as a timm model's cache file asks which
        timm model it is for (:meth:`ask_timm_model`); Cancel there imports nothing."""
        if self.is_busy():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Import weights file", str(Path.home()), WEIGHTS_FILTER)
        if not path:
            return
        model = self.model
        if model is None and Path(path).suffix.lower() == ".safetensors":
            files = timm_weights_files()
            if files and Path(path).name not in files.values():
                model = self.ask_timm_model(Path(path).name, list(files))
                if model is None:
                    return
        self.import_file(path, model)

    def ask_timm_model(self, file_name: str, models: list[str]) -> str | None:
        """Which of the timm ``models`` the safetensors file ``file_name`` holds; None on Cancel."""
        choice, ok = QInputDialog.getItem(
            self,
            "Which model are these weights for?",
            f"{file_name} does not say which model it is for. Choose the timm model whose "
            "model.safetensors it is (its tensors are checked against that model):",
            models,
            0,
            False,
        )
        return choice if ok and choice in models else None

    def import_file(self, path: str, model: str | None = None) -> None:
        """Import the weights file ``path`` on the worker thread, for ``model`` (default: the
        dialog's own model; None: matched to the catalog by the file's name or hash)."""
        if self.is_busy():
            return
        model = model if model is not None else self.model
        self.import_button.setEnabled(False)
        self.retry_button.hide()
        self.progress.show()
        self.progress.setRange(0, 0)
        self.bytes_label.setText(f"Checking and importing {Path(path).name}…")
        self.speed_label.setText("")
        self._run(WeightsWorker(model, path), "import-weights")

    def _run(self, worker: WeightsWorker, name: str) -> None:
        self.job.name = name
        if not self.job.start(worker):
            self._on_errored("the app is shutting down")

    def is_busy(self) -> bool:
        return self.job.is_busy()

    # -- worker signals -----------------------------------------------------------------------------
    def _on_progress(self, values: tuple[int, int, float]) -> None:
        done, total, speed = values
        if total > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(min(1000, round(1000 * done / total)))
            self.bytes_label.setText(f"{format_size(done)} of {format_size(total)}")
        else:
            self.bytes_label.setText(f"{format_size(done)} downloaded")
        self.speed_label.setText(f"{format_size(speed)}/s" if speed > 0 else "")

    def _on_returned(self, result: Path | WeightsError) -> None:
        if isinstance(result, Path):
            self.progress.setRange(0, 1000)
            self.progress.setValue(1000)
            self.bytes_label.setText(f"Saved to {result}")
            self.weightsReady.emit(str(result))
            if self.model is None:
                self.message.setText(f"Imported <b>{html.escape(result.name)}</b> into the weights cache.")
                self.import_button.setEnabled(True)
            else:
                self.accept()
            return
        self._show_failure(result)

    def _show_failure(self, exc: WeightsError) -> None:
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.hide()
        self.speed_label.setText("")
        self.bytes_label.setText("")
        self.import_button.setEnabled(True)
        self.import_button.show()
        self.retry_button.setVisible(self.model is not None)
        text = html.escape(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if exc.offline:
            self.offline = True
            file_name = html.escape(exc.file_name or "the weights file")
            url = html.escape(exc.url or "")
            self.message.setText(
                "<b>No network: the weights cannot be downloaded.</b><br>"
                f"Fetch <b>{file_name}</b> from<br><tt>{url}</tt><br>on a machine with internet "
                "access, then click <b>Import weights file…</b> to add it here."
                f"<br><small>{text}</small>"
            )
        else:
            self.message.setText(f"<b>The weights could not be prepared:</b> {text}")
        self.adjustSize()

    def _on_errored(self, message: str) -> None:
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.import_button.setEnabled(True)
        self.import_button.show()
        self.retry_button.setVisible(self.model is not None)
        self.message.setText(f"<b>The weights could not be prepared:</b> {html.escape(message)}")
        self.adjustSize()

    # -- closing ------------------------------------------------------------------------------------
    def reject(self) -> None:
        """Cancel: stop a download in progress (nothing partial is kept) and close."""
        self.job.cancel()
        super().reject()
