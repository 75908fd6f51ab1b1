"""The Predict tab: classify images or whole folders with the model just trained or a saved bundle.

Images come from ``predictOpenButton`` (``QFileDialog.getOpenFileNames``), a folder button, or
drag-and-drop. Loading the bundle and classifying run on worker threads; results stream into a
table (file, prediction, confidence) that exports to CSV. The selected row shows its image and the
top-k classes with probability bars in ``predictResults``; ``gradcamToggle`` overlays its Grad-CAM
heatmap on the preview (computed on a worker thread). ``predictCameraButton`` turns the live camera
on (:mod:`gui.tabs.predict_camera`): the model's answer drawn on the camera's picture.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QHideEvent, QImage, QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.background.images import ImageLoader
from gui.background.inference import GradCamModels, GradCamRender, PhotosFound, PredictWorker
from gui.background.jobs import FunctionWorker, Job, ThreadRunner, friendly_error
from gui.core.settings import Settings
from gui.tabs.predict_camera import LiveCameraPage
from gui.views.prediction_views import ProbabilityTable, confidence_item
from gui.views.widgets import MessageBanner, dropped_paths, empty_state_pages, heading

if TYPE_CHECKING:
    from engine.data.datasets import DatasetReport
    from engine.inference.predict import Prediction, Predictor
    from engine.models.bundle import Bundle

logger = logging.getLogger(__name__)

PREVIEW_SIZE = 480
TOP_K = 5
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.gif *.webp *.bmp *.tif *.tiff);;All files (*)"
BUNDLE_FILTER = "Transfer Studio models (*.pt);;All files (*)"
DROP_HINT = (
    "<p style='font-size:15pt'><b>Drop photos or a folder here</b></p>"
    "<p>or use <b>Open images…</b> / <b>Open folder…</b> above.</p>"
)
EMPTY_HINT = DROP_HINT + (
    "<p>A model is needed: train one on the Train tab, or open a saved one (a <i>model.pt</i> "
    "file in a run folder) with <b>Open model…</b>.</p>"
)
COLUMNS = ["File", "Prediction", "Confidence", "Folder's class"]
#: What the table and the detail say for a photo unlike every class's training photos.
NONE_OF_THESE = "none of these"
NONE_OF_THESE_TEXT = "<b>None of these:</b> unlike the photos this model was trained on"


def model_name(bundle_path: str | Path) -> str:
    """What tells one model from another: its run folder's name (a model.pt in a run), else its file."""
    path = Path(bundle_path)
    return path.parent.name if path.name == "model.pt" and path.parent.name else path.name


def model_summary(bundle: Bundle, bundle_path: str | Path) -> str:
    """One line of rich text naming the model: its run, network, strategy, classes and accuracy."""
    classes = ", ".join(bundle.class_names[:6]) + ("…" if len(bundle.class_names) > 6 else "")
    acc = bundle.metrics.get("best_val_acc")
    strategy = bundle.config.get("strategy")
    parts = [bundle.architecture] + ([str(strategy)] if strategy else [])
    parts.append(f"{len(bundle.class_names)} classes ({classes})")
    if isinstance(acc, float):
        parts.append(f"validation accuracy {acc:.1%}")
    parts.append(
        "calibrated" if bundle.calibration is not None else "uncalibrated (trained before calibration)"
    )
    name = html.escape(model_name(bundle_path))
    return f"<b>Model: {name}</b> · " + " · ".join(html.escape(part) for part in parts)


class PredictTab(QWidget):
    """Model + images in, predictions out. ``modelLoaded(predictor)`` after a model is loaded."""

    modelLoaded = Signal(object)

    def __init__(self, settings: Settings, runner: ThreadRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("predictTab")
        self.settings = settings
        self.runner = runner
        self.predictor: Predictor | None = None
        self.model_path = ""
        self.predictions: list[Prediction] = []
        self._queued: list[Path] = []
        self._loading_path = ""
        self._folders: list[Path] = []  # the folders being classified (their photos show relative paths)
        self.dataset_root: Path | None = None
        self.loader = Job(
            runner, "load-model", self, on_returned=self._on_model_loaded, on_errored=self._on_model_failed
        )
        self.job = Job(
            runner,
            "predict",
            self,
            on_yielded=self._on_yielded,
            on_errored=self._on_predict_failed,
            on_done=self._on_predict_done,
        )
        self._preview_path = ""
        self.previews = ImageLoader(self, size=PREVIEW_SIZE, threads=1)
        self.previews.loaded.connect(self._on_preview)
        self.previews.failed.connect(self._on_preview_failed)
        self.gradcam = ImageLoader(self, threads=1, imports_torch=True)
        self.gradcam_models = GradCamModels()
        self.gradcam.loaded.connect(self._on_gradcam)
        self.gradcam.failed.connect(self._on_gradcam_failed)
        self._overlay_path = ""
        self.setAcceptDrops(True)
        self._build()
        self._update_buttons()

    def _button(self, text: str, name: str, accessible: str, slot: Callable[[], object]) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.setAccessibleName(accessible)
        button.clicked.connect(slot)
        return button

    def _build(self) -> None:
        self.model_label = QLabel("No model loaded.")
        self.model_label.setObjectName("predictModel")
        self.model_label.setAccessibleName("Model used for prediction")
        self.model_label.setWordWrap(True)
        self.model_button = self._button("Open model…", "predictModelButton", "Open model", self.choose_model)
        self.open_button = self._button(
            "Open images…", "predictOpenButton", "Open images", self.choose_images
        )
        self.folder_button = self._button(
            "Open folder…", "predictFolderButton", "Classify a folder", self.choose_folder
        )
        self.export_button = self._button(
            "Export CSV…", "predictExportButton", "Export results as CSV", self.export_csv
        )
        self.camera_button = QPushButton("Live camera")
        self.camera_button.setObjectName("predictCameraButton")
        self.camera_button.setAccessibleName("Classify what the camera sees, live")
        self.camera_button.setToolTip("Point a camera at something and see the model's answer live")
        self.camera_button.setCheckable(True)
        self.camera_button.toggled.connect(self._on_camera_toggled)
        top = QHBoxLayout()
        top.addWidget(self.model_label, 1)
        for button in (self.model_button, self.open_button, self.folder_button, self.export_button):
            top.addWidget(button)
        self.error = MessageBanner("predictError")
        self.status = QLabel()
        self.status.setObjectName("predictStatus")
        self.unknown_threshold = QDoubleSpinBox()
        self.unknown_threshold.setObjectName("unknownThreshold")
        self.unknown_threshold.setAccessibleName(
            "None of these: the unlikeness above which a photo is unknown"
        )
        self.unknown_threshold.setRange(0.0, 2.0)
        self.unknown_threshold.setDecimals(3)
        self.unknown_threshold.setSingleStep(0.01)
        self.unknown_threshold.setEnabled(False)
        self.unknown_threshold.valueChanged.connect(self._on_unknown_threshold)
        self.unknown_label = QLabel("“None of these” above:")
        self.unknown_label.setBuddy(self.unknown_threshold)
        # Beside the model it belongs to (the status row stays one line).
        top.insertWidget(1, self.unknown_label)
        top.insertWidget(2, self.unknown_threshold)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("predictTable")
        self.table.setAccessibleName("Prediction for each image")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        truth_header = QTableWidgetItem(COLUMNS[3])
        truth_header.setToolTip("The photo's folder, when it is named after one of the model's classes")
        self.table.setHorizontalHeaderItem(3, truth_header)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.itemSelectionChanged.connect(self._on_row_selected)

        self.preview = QLabel()
        self.preview.setObjectName("predictImage")
        self.preview.setAccessibleName("Selected image")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(280, 220)  # the window still shrinks to 700x500 with the camera row
        self.preview_title = heading("")
        self.gradcam_toggle = QCheckBox("Grad-CAM overlay")
        self.gradcam_toggle.setObjectName("gradcamToggle")
        self.gradcam_toggle.setAccessibleName("Show the Grad-CAM overlay on the image")
        self.gradcam_toggle.setToolTip("Colour what drove the prediction (red = most).")
        self.gradcam_toggle.toggled.connect(self._on_gradcam_toggled)
        self.gradcam_status = QLabel()
        self.gradcam_status.setObjectName("gradcamStatus")
        self.gradcam_status.setAccessibleName("Grad-CAM status")
        self.gradcam_status.setWordWrap(True)
        self.results = ProbabilityTable()
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.preview_title)
        gradcam_row = QHBoxLayout()
        gradcam_row.addWidget(self.gradcam_toggle)
        gradcam_row.addWidget(self.gradcam_status, 1)
        right_layout.addLayout(gradcam_row)
        right_layout.addWidget(self.preview, 1)
        self.none_of_these = QLabel(NONE_OF_THESE_TEXT)
        self.none_of_these.setObjectName("noneOfTheseLabel")
        self.none_of_these.setWordWrap(True)
        self.none_of_these.setStyleSheet(
            "QLabel { background: #fff4e5; color: #663c00; border: 1px solid #ffb74d; padding: 6px; }"
        )
        self.none_of_these.hide()
        self.results_heading = heading("Top classes")
        right_layout.addWidget(self.none_of_these)
        right_layout.addWidget(self.results_heading)
        right_layout.addWidget(self.results)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("predictSplitter")
        splitter.addWidget(self.table)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        self.pages = empty_state_pages(EMPTY_HINT, "predictEmptyHint", splitter)
        self.empty_hint = self.pages.widget(0)
        self.camera_page = LiveCameraPage(self.settings, self.runner)
        self.pages.addWidget(self.camera_page)
        self._photos_page = 0  # the page to go back to when the camera is turned off

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.error)
        status_row = QHBoxLayout()  # the camera's button here: the top row keeps the window narrow
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.camera_button)
        layout.addLayout(status_row)
        layout.addWidget(self.pages, 1)

    def _update_buttons(self) -> None:
        self.export_button.setEnabled(bool(self.predictions) and not self.job.is_busy())

    # -- the model -------------------------------------------------------------------------------------
    @Slot()
    def choose_model(self) -> None:
        start = (
            self.model_path or self.settings.get_str("predict/last_model") or str(self.settings.runs_root())
        )
        path, _ = QFileDialog.getOpenFileName(self, "Open a trained model", start, BUNDLE_FILTER)
        if path:
            self.load_model(path)

    def load_model(self, path: str | Path) -> None:
        """Load a bundle off the GUI thread; queued images are classified once it is ready."""
        path = str(path)
        self.error.hide()
        self.model_label.setText(f"Loading model {path}…")

        def load(_worker: FunctionWorker) -> Predictor:
            from engine.inference.predict import Predictor

            return Predictor.from_bundle(path)

        self._loading_path = path
        self.loader.start(load)

    def has_model(self) -> bool:
        return self.predictor is not None

    def _on_model_loaded(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.model_path = self._loading_path
        self.settings.set("predict/last_model", self.model_path)
        summary = model_summary(predictor.bundle, self.model_path)
        self.model_label.setText(summary)
        self.model_label.setToolTip(self.model_path)
        can = predictor.can_say_unknown and predictor.unknown_threshold is not None
        self.unknown_threshold.blockSignals(True)
        self.unknown_threshold.setValue(predictor.unknown_threshold if can else 0.0)  # type: ignore[arg-type]
        self.unknown_threshold.blockSignals(False)
        self.unknown_threshold.setEnabled(can)
        tip = (
            "A photo less like the training photos than this (1 - cosine similarity of its features to the "
            "nearest class's average) is answered “none of these”. The model's own threshold lets 95% of its "
            "validation photos through; raise it to say so less often."
            if can
            else "This model cannot say “none of these”"
            + ("." if predictor.calibrated else ": it was trained before calibration.")
        )
        self.unknown_threshold.setToolTip(tip)
        self.unknown_label.setToolTip(tip)  # a disabled spin box's own tooltip is easy to miss
        if isinstance(self.empty_hint, QLabel):
            self.empty_hint.setText(DROP_HINT + f"<p>{summary}</p>")
        self.camera_page.set_predictor(predictor)
        self.modelLoaded.emit(predictor)
        if self._queued:
            sources, self._queued = self._queued, []
            self.classify(sources)

    def _on_model_failed(self, message: str) -> None:
        self.model_label.setText("No model loaded." if self.predictor is None else self.model_label.text())
        self.error.show_message("<b>Cannot open the model:</b>", "error", detail=message)

    # -- images ------------------------------------------------------------------------------------------
    def set_dataset(self, report: DatasetReport | None) -> None:
        """The Data tab's dataset: where the image pickers start until the user picks elsewhere."""
        self.dataset_root = Path(report.root) if report is not None else None

    def _picker_start(self) -> str:
        """The folder last classified from, else the open dataset's val/ (or the dataset), else home."""
        last = self.settings.get_str("predict/last_folder")
        if last and Path(last).is_dir():
            return last
        if self.dataset_root is not None:
            val = self.dataset_root / "val"
            return str(val if val.is_dir() else self.dataset_root)
        return str(Path.home())

    @Slot()
    def choose_images(self) -> None:
        start = self._picker_start()
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images to classify", start, IMAGE_FILTER)
        if paths:
            self.settings.set("predict/last_folder", str(Path(paths[0]).parent))
            self.classify([Path(p) for p in paths])

    @Slot()
    def choose_folder(self) -> None:
        start = self._picker_start()
        folder = QFileDialog.getExistingDirectory(self, "Classify every image in a folder", start)
        if folder:
            self.settings.set("predict/last_folder", folder)
            self.classify([Path(folder)])

    def classify(self, sources: list[Path]) -> None:
        """Classify image files and/or folders (replacing the current results)."""
        self.error.hide()
        if self.predictor is None:
            self._queued = list(sources)
            if not self.loader.is_busy():
                self.error.show_message(
                    "<b>No model yet.</b> Train one on the Train tab, or open a saved model with "
                    "<b>Open model…</b>; your images will be classified as soon as it is loaded.",
                    "warning",
                )
            return
        self.job.cancel()
        self.camera_button.setChecked(False)
        self.predictions = []
        self.table.setRowCount(0)
        self.results.clear_results()
        self.preview.clear()
        self.preview_title.setText("")
        self.pages.setCurrentIndex(1)
        self.status.setText("Looking for images…")
        self._total = 0
        self._folders = [Path(source) for source in sources if Path(source).is_dir()]
        self.job.start(PredictWorker(self.predictor, list(sources), top_k=TOP_K))
        self._update_buttons()

    def is_busy(self) -> bool:
        return self.job.is_busy() or self.loader.is_busy()

    def _on_yielded(self, value: PhotosFound | list[Prediction]) -> None:
        if isinstance(value, PhotosFound):
            self._total = value.count
            self.status.setText(f"Classifying {value.count} image(s)…" if value.count else "No images found.")
        else:
            self._show_chunk(value)

    def _show_chunk(self, predictions: list[Prediction]) -> None:
        first_row = self.table.rowCount()
        for prediction in predictions:
            self.predictions.append(prediction)
            row = self.table.rowCount()
            self.table.insertRow(row)
            name = QTableWidgetItem(self._shown_name(prediction.path))
            name.setToolTip(str(prediction.path))
            self.table.setItem(row, 0, name)
            self.table.setItem(row, 3, self._truth_item(prediction))
            self.table.setItem(row, 1, self._label_item(prediction))
            self.table.setItem(row, 2, confidence_item(prediction.probability))
        self.status.setText(f"Classified {len(self.predictions)} of {self._total} image(s)…")
        if first_row == 0 and self.table.rowCount():
            self.table.selectRow(0)

    def _truth_item(self, prediction: Prediction) -> QTableWidgetItem:
        """The Folder's class cell: the photo's folder when it names a class, the answer in its tooltip."""
        folder = prediction.path.parent.name
        truth = folder if self.predictor is not None and folder in self.predictor.class_names else ""
        item = QTableWidgetItem(truth)
        if truth and prediction.error is None and prediction.label:
            answer = "right" if truth == prediction.label else f"predicted {prediction.label}"
            item.setToolTip(f"{NONE_OF_THESE} (best guess {answer})" if prediction.unknown else answer)
        return item

    def _label_item(self, prediction: Prediction) -> QTableWidgetItem:
        """The Prediction cell: the class, "none of these" for an unknown photo, or "unreadable"."""
        if prediction.error is not None or not prediction.label:
            item = QTableWidgetItem("unreadable")
            item.setToolTip(prediction.error or "")
            return item
        if prediction.unknown:
            item = QTableWidgetItem(NONE_OF_THESE)
            item.setToolTip(
                f"Unlike the photos this model was trained on (score {prediction.ood_score:.3f}); "
                f"best guess: {prediction.label}"
            )
            return item
        return QTableWidgetItem(prediction.label)

    @Slot(float)
    def _on_unknown_threshold(self, value: float) -> None:
        """Another "none of these" threshold: the photos shown are labelled again (no new pass)."""
        if self.predictor is None or not self.predictor.can_say_unknown:
            return
        self.predictor.unknown_threshold = value
        for row, prediction in enumerate(self.predictions):
            if prediction.ood_score is None:
                continue
            relabelled = self.predictor.relabelled(prediction)
            self.predictions[row] = relabelled
            self.table.setItem(row, 1, self._label_item(relabelled))
            self.table.setItem(row, 3, self._truth_item(relabelled))
        self._on_row_selected()
        held = self.camera_page.panel.view.prediction  # the camera's answer (held while paused)
        if held is not None:
            self.camera_page.panel.view.set_prediction(self.predictor.relabelled(held))

    def _shown_name(self, path: Path) -> str:
        """The path below the classified folder (its sub-folders show), or the file name."""
        for folder in self._folders:
            try:
                return path.relative_to(folder).as_posix()
            except ValueError:
                continue
        return path.name

    def _on_predict_failed(self, message: str) -> None:
        self.error.show_message("<b>Prediction failed:</b>", "error", detail=message)

    def _on_predict_done(self) -> None:
        failed = sum(1 for p in self.predictions if p.error)
        done = f"Classified {len(self.predictions) - failed} image(s)"
        self.status.setText(done + (f"; {failed} could not be read." if failed else "."))
        self._update_buttons()

    @Slot()
    def _on_row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.predictions):
            return
        prediction = self.predictions[rows[0].row()]
        self.preview_title.setText(prediction.path.name)
        self.results.show_prediction(prediction)
        self.none_of_these.setVisible(prediction.unknown)
        self.results_heading.setText("Best guesses (none is likely)" if prediction.unknown else "Top classes")
        self.results.setEnabled(not prediction.unknown)  # greyed: a guess, not an answer
        self._preview_path = str(prediction.path)
        self.previews.clear()
        self.previews.request(self._preview_path, self._preview_path)
        self._overlay_path = ""
        self._request_gradcam(prediction)

    def _request_gradcam(self, prediction: Prediction) -> None:
        self.gradcam.clear()
        if not self.gradcam_toggle.isChecked() or self.predictor is None or prediction.error:
            self.gradcam_status.setText("")
            return
        names = self.predictor.bundle.class_names
        index = names.index(prediction.label) if prediction.label in names else None
        self.gradcam_status.setText("Computing Grad-CAM…")
        render = GradCamRender(self.gradcam_models, self.predictor.bundle, index, PREVIEW_SIZE)
        self.gradcam.request(str(prediction.path), prediction.path, render)

    @Slot(bool)
    def _on_gradcam_toggled(self, _checked: bool) -> None:
        self._on_row_selected()

    @Slot(object, QImage)
    def _on_gradcam(self, path: str, image: QImage) -> None:
        if path == self._preview_path and self.gradcam_toggle.isChecked():
            self._overlay_path = path
            self.preview.setPixmap(QPixmap.fromImage(image))
            self.gradcam_status.setText("Grad-CAM for the predicted class")

    @Slot(object, str)
    def _on_gradcam_failed(self, path: str, message: str) -> None:
        if path == self._preview_path:
            self.gradcam_status.setText(message)

    @Slot(object, QImage)
    def _on_preview(self, path: str, image: QImage) -> None:
        if path != self._preview_path or path == self._overlay_path:
            return
        if image.isNull():
            self.preview.setText("This image cannot be displayed.")
        else:
            self.preview.setPixmap(QPixmap.fromImage(image))

    @Slot(object, str)
    def _on_preview_failed(self, path: str, _message: str) -> None:
        if path == self._preview_path:
            self.preview.setText("This image cannot be displayed.")

    # -- export ------------------------------------------------------------------------------------------
    @Slot()
    def export_csv(self) -> None:
        if not self.predictions:
            return
        start = str(Path(self.settings.get_str("predict/last_folder") or Path.home()) / "predictions.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export predictions", start, "CSV files (*.csv)")
        if not path:
            return
        try:
            from engine.inference.predict import write_predictions_csv

            write_predictions_csv(self.predictions, path, top_k=TOP_K)
        except Exception as exc:  # noqa: BLE001 - disk full, permissions: shown inline
            self.error.show_message("<b>Cannot export:</b>", "error", detail=friendly_error(exc))
            return
        self.status.setText(f"Exported {len(self.predictions)} row(s) to {path}")

    # -- drag and drop ------------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = dropped_paths(event.mimeData())
        if not paths:
            return
        event.acceptProposedAction()
        bundles = [p for p in paths if p.suffix.lower() == ".pt" and p.is_file()]
        if bundles:
            self.load_model(bundles[0])
        images = [p for p in paths if p not in bundles]
        if images:
            self.classify(images)

    # -- the live camera ----------------------------------------------------------------------------------
    @Slot(bool)
    def _on_camera_toggled(self, on: bool) -> None:
        if on:
            self._photos_page = self.pages.currentIndex()
            self.pages.setCurrentWidget(self.camera_page)
            self.camera_page.activate()
        else:
            self.camera_page.deactivate()
            self.pages.setCurrentIndex(self._photos_page)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self.camera_button.isChecked() and not self.camera_page.active:
            self.camera_page.activate()  # back on the tab: the camera comes back on

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 - Qt override
        super().hideEvent(event)
        if self.camera_page.active:
            self.camera_page.deactivate()  # another tab: the camera's light goes off

    def shutdown(self) -> None:
        self.camera_page.shutdown()
        self.previews.shutdown()
        self.gradcam.shutdown()
