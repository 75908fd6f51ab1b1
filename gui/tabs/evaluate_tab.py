"""The Evaluate tab: how the current model does on the current dataset's validation images.

The model is the one the Predict tab holds (just trained, or opened with File → Open model…); the
data is the dataset open on the Data tab (its ``val`` split). **Evaluate** runs
``engine.inference.evaluate.evaluate`` on a worker thread with a progress bar, then shows:

- ``perClassTable``: precision, recall, F1 and support per class;
- ``confusionMatrix``: rows = true class, columns = predicted, cells coloured by their share of the
  row. Clicking a cell shows that cell's images in the gallery; clicking it again, or
  **Show all errors**, goes back to every misclassified image;
- ``errorGallery``: misclassified images, highest loss first, captioned "true → predicted (p)",
  thumbnails decoded on a private thread pool;
- clicking a gallery image shows it larger next to its Grad-CAM overlay (computed on a worker; for
  models without a convolutional backbone the reason is shown instead).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.background.images import ImageLoader
from gui.background.inference import GradCamModels, GradCamRender
from gui.background.jobs import FunctionWorker, Job, ThreadRunner
from gui.core.settings import Settings
from gui.views.progress_clock import ProgressClock
from gui.views.reliability import ReliabilityView
from gui.views.widgets import MessageBanner, heading, hint_label

if TYPE_CHECKING:
    from engine.data.datasets import DatasetReport
    from engine.inference.evaluate import EvaluationReport, ImageResult
    from engine.inference.predict import Predictor

logger = logging.getLogger(__name__)

THUMB_SIZE = 96
DETAIL_SIZE = 320
RESULT_ROLE = Qt.ItemDataRole.UserRole + 11
CELL_ROLE = Qt.ItemDataRole.UserRole + 12


def _cell_colour(count: int, row_total: int, diagonal: bool) -> QColor:
    """Green shades for correct cells, red for errors; stronger with the cell's share of its row."""
    share = count / row_total if row_total else 0.0
    base = (46, 125, 50) if diagonal else (198, 40, 40)
    mix = 0.12 + 0.88 * share if count else 0.0
    return QColor(*(round(255 + (c - 255) * mix) for c in base))


class EvaluateTab(QWidget):
    """Evaluate the current model on the current dataset and look at its mistakes."""

    evaluated = Signal(object)  # engine.inference.evaluate.EvaluationReport

    def __init__(self, settings: Settings, runner: ThreadRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("evaluateTab")
        self.setAccessibleName("Evaluate")
        self.settings = settings
        self.runner = runner
        self.predictor: Predictor | None = None
        self.dataset: DatasetReport | None = None
        self.report: EvaluationReport | None = None
        self.cell: tuple[int, int] | None = None
        self.job = Job(
            runner,
            "evaluate",
            self,
            on_progress=self._on_progress,
            on_returned=self._on_evaluated,
            on_errored=self._on_failed,
            on_aborted=self._on_aborted,
            on_done=self._on_done,
        )
        self._detail_path = ""
        self.thumbnails = ImageLoader(self, size=THUMB_SIZE, square=True)
        self.thumbnails.loaded.connect(self._on_thumbnail)
        self.details = ImageLoader(self, size=DETAIL_SIZE, threads=1)
        self.details.loaded.connect(self._on_detail)
        self.details.failed.connect(self._on_detail_failed)
        self.gradcam = ImageLoader(self, threads=1, imports_torch=True)
        self.gradcam_models = GradCamModels()
        self.gradcam.loaded.connect(self._on_gradcam)
        self.gradcam.failed.connect(self._on_gradcam_failed)
        self._hint = ""  # the summary's text while nothing was evaluated yet
        self._build()
        self._update_state()

    # -- layout -------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.source_label = QLabel()
        self.source_label.setObjectName("evaluateSource")
        self.source_label.setAccessibleName("Model and data to evaluate")
        self.source_label.setWordWrap(True)
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setObjectName("evaluateButton")
        self.evaluate_button.setAccessibleName("Evaluate the model on the validation images")
        self.evaluate_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("evaluateStopButton")
        self.stop_button.setAccessibleName("Stop the evaluation")
        self.stop_button.clicked.connect(self.stop)
        self.progress = QProgressBar()
        self.progress.setObjectName("evaluateProgress")
        self.progress.setAccessibleName("Evaluation progress")
        self.progress.setFormat("%v / %m images")
        # Wide enough for "1,234 / 5,678 images" in every style (the text never spills out).
        self.progress.setMinimumWidth(
            self.progress.fontMetrics().horizontalAdvance("00000 / 00000 images") + 40
        )
        self.progress.hide()
        self.clock = ProgressClock(self.progress, self)  # bar, elapsed, estimate
        self.clock.ticked.connect(self._show_timing)
        top = QHBoxLayout()
        top.addWidget(self.source_label, 1)
        top.addWidget(self.progress)
        top.addWidget(self.evaluate_button)
        top.addWidget(self.stop_button)
        self.error = MessageBanner("evaluateError")
        self.summary = QLabel()
        self.summary.setObjectName("evaluateSummary")
        self.summary.setAccessibleName("Evaluation summary")
        self.summary.setWordWrap(True)

        self.per_class = QTableWidget(0, 5)
        self.per_class.setObjectName("perClassTable")
        self.per_class.setAccessibleName("Precision, recall, F1 and support per class")
        self.per_class.setHorizontalHeaderLabels(["Class", "Precision", "Recall", "F1", "Support"])
        self.per_class.verticalHeader().hide()
        self.per_class.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.per_class.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)

        self.matrix = QTableWidget(0, 0)
        self.matrix.setObjectName("confusionMatrix")
        self.matrix.setAccessibleName("Confusion matrix: rows are true classes, columns predicted classes")
        self.matrix.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.matrix.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.matrix.cellClicked.connect(self._on_cell_clicked)
        self.matrix_hint = hint_label(
            "Rows: true class · columns: predicted class. Click a cell to see its images."
        )

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(heading("Per class"))
        left_layout.addWidget(self.per_class, 1)
        left_layout.addWidget(heading("Confusion matrix"))
        left_layout.addWidget(self.matrix_hint)
        left_layout.addWidget(self.matrix, 1)

        self.gallery_title = heading("Misclassified images")
        self.show_all_button = QPushButton("Show all errors")
        self.show_all_button.setObjectName("evaluateShowAll")
        self.show_all_button.setAccessibleName("Show every misclassified image")
        self.show_all_button.clicked.connect(self.show_all)
        gallery_top = QHBoxLayout()
        gallery_top.addWidget(self.gallery_title, 1)
        gallery_top.addWidget(self.show_all_button)
        self.gallery = QListWidget()
        self.gallery.setObjectName("errorGallery")
        self.gallery.setAccessibleName("Misclassified images, highest loss first")
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.gallery.setGridSize(QSize(THUMB_SIZE + 60, THUMB_SIZE + 44))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setWordWrap(True)
        self.gallery.setUniformItemSizes(True)
        self.gallery.currentItemChanged.connect(self._on_image_selected)

        self.detail_title = QLabel()
        self.detail_title.setObjectName("evaluateDetailTitle")
        self.detail_title.setWordWrap(True)
        self.detail_image = QLabel()
        self.detail_image.setObjectName("evaluateDetailImage")
        self.detail_image.setAccessibleName("Selected image")
        self.detail_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail_image.setMinimumSize(200, 200)
        self.detail_gradcam = QLabel()
        self.detail_gradcam.setObjectName("evaluateGradCam")
        self.detail_gradcam.setAccessibleName("Grad-CAM overlay of the selected image")
        self.detail_gradcam.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail_gradcam.setWordWrap(True)
        self.detail_gradcam.setMinimumSize(200, 200)
        pictures = QHBoxLayout()
        pictures.addWidget(self.detail_image, 1)
        pictures.addWidget(self.detail_gradcam, 1)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(gallery_top)
        right_layout.addWidget(self.gallery, 3)
        right_layout.addWidget(self.detail_title)
        right_layout.addLayout(pictures, 2)

        self.reliability = ReliabilityView()
        self.left_tabs = QTabWidget()
        self.left_tabs.setObjectName("evaluateViews")
        self.left_tabs.addTab(left, "Classes")
        self.left_tabs.addTab(self.reliability, "How sure")

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("evaluateSplitter")
        splitter.addWidget(self.left_tabs)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.error)
        layout.addWidget(self.summary)
        layout.addWidget(splitter, 1)

    # -- inputs ---------------------------------------------------------------------------------------------
    @Slot(object)
    def set_model(self, predictor: Predictor | None) -> None:
        """Use this loaded ``engine.inference.predict.Predictor`` (None: no model); clears older results."""
        if predictor is self.predictor:
            return
        self.stop()
        self.predictor = predictor
        self.clear_results()
        self._update_state()

    @Slot(object)
    def set_dataset(self, report: DatasetReport | None) -> None:
        """Evaluate on this scanned ``DatasetReport`` (None: no dataset); clears older results."""
        if report is self.dataset:
            return
        self.stop()
        self.dataset = report
        self.clear_results()
        self._update_state()

    def _split(self) -> str | None:
        if self.dataset is not None and "val" in self.dataset.splits and self.dataset.splits["val"]:
            return "val"
        return None

    def _update_state(self) -> None:
        running = self.job.is_busy()
        ready = self.predictor is not None and self.dataset is not None
        self.evaluate_button.setEnabled(ready and not running)
        self.stop_button.setVisible(running)
        self.show_all_button.setEnabled(self.report is not None and self.cell is not None)
        if self.predictor is None and self.dataset is None:
            text = "Train a model (or open one with File → Open model…) and open a labelled dataset to evaluate it."
        elif self.predictor is None:
            text = "No model yet: train one on the Train tab, or open one with File → Open model…"
        elif self.dataset is None:
            text = f"Model: {self.predictor.bundle.architecture}. Open a labelled dataset on the Data tab."
        else:
            split = self._split() or "all images"
            text = (
                f"<b>Model:</b> {self.predictor.bundle.architecture} · "
                f"<b>data:</b> {Path(self.dataset.root).name} ({split})"
            )
        self.source_label.setText(text)
        # Before the first evaluation the page says what the button does, instead of staying blank.
        idle = ready and not running and self.report is None
        if idle and self.summary.text() in ("", self._hint):
            which = f"the {self._split()} images" if self._split() else "all the images"
            self._hint = (
                f"Press <b>Evaluate</b> to measure the model on {which}: "
                "accuracy per class, the confusion matrix and the photos it gets wrong."
            )
            self.summary.setText(self._hint)
        elif not idle and self.summary.text() == self._hint:
            self.summary.setText("")
        self.evaluate_button.setToolTip(
            "" if ready else "Needs a model (Train tab or File → Open model…) and a dataset (Data tab)."
        )

    # -- running ---------------------------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        """Evaluate the model on the dataset's validation images, off the GUI thread."""
        if self.predictor is None or self.dataset is None or self.job.is_busy():
            return
        self.error.hide()
        self.clear_results()
        predictor, dataset, split = self.predictor, self.dataset, self._split()

        # A dataset without val/ is split by seed and share: the engine re-scans it with the model's own
        # run settings, so "val" is the very images that run validated on (never its training images).
        data: DatasetReport | Path = Path(dataset.root) if dataset.auto_split else dataset

        def run(worker: FunctionWorker) -> EvaluationReport:
            from engine.inference.evaluate import evaluate

            return evaluate(
                predictor,
                data,
                split=split,
                on_progress=worker.report_progress,
                should_stop=lambda: worker.abort_requested,
            )

        self.progress.setRange(0, 0)  # busy until the engine knows how many images
        self.progress.show()
        self.clock.start()
        self.job.start(run)
        self._update_state()

    @Slot()
    def stop(self) -> None:
        if self.job.is_busy():
            self.job.cancel()
            self.clock.finish(completed=False)
            self.progress.hide()
            self.summary.setText("Evaluation stopped.")
            self._update_state()

    def is_busy(self) -> bool:
        return self.job.is_busy() or self.gradcam.is_busy()

    def _on_progress(self, done: int, total: int) -> None:
        if self.progress.maximum() != max(total, 1):
            self.progress.setRange(0, max(total, 1))
        self.clock.measure(done / max(total, 1))

    def _show_timing(self, timing: str) -> None:
        if self.clock.is_running():
            self.summary.setText(f"Evaluating… {timing}")

    def _on_failed(self, message: str) -> None:
        self.clock.finish(completed=False)
        self.summary.setText("")
        self.error.show_message("<b>Evaluation failed:</b>", "error", detail=message)

    def _on_aborted(self) -> None:  # stopped from elsewhere (the window shutting down)
        self.clock.finish(completed=False)
        self.summary.setText("Evaluation stopped.")

    def _on_done(self) -> None:
        self.clock.finish(completed=False)  # stops the clock if no other ending did
        self.progress.hide()
        self._update_state()

    def _on_evaluated(self, report: EvaluationReport) -> None:
        self.clock.finish()
        self.report = report
        macro = report.macro_average()
        wrong = len(report.misclassified)
        # Top-k only says something when k is below the number of classes (top-2 of 2 is always 100%).
        top_k = (
            f" · top-{report.top_k} {report.top_k_accuracy:.1%}"
            if report.top_k < len(report.class_names)
            else ""
        )
        text = (
            f"<b>Accuracy {report.accuracy:.1%}</b> on {report.n_images} images{top_k} · "
            f"macro F1 {macro['f1']:.3f} · mean loss {report.mean_loss:.3f} · {wrong} misclassified"
        )
        if report.unreadable:
            text += f" · {len(report.unreadable)} unreadable image(s) skipped"
        honesty = report.honesty
        if honesty.get("calibrated"):
            text += f" · calibration error {honesty['ece_before']:.3f} → {honesty['ece_after']:.3f}"
        elif honesty:
            text += " · uncalibrated model"
        self.summary.setText(text)
        self._fill_per_class(report)
        self._fill_matrix(report)
        self.reliability.show_honesty(report.honesty, report.n_images)
        self.show_all()
        self.evaluated.emit(report)

    # -- results ----------------------------------------------------------------------------------------------
    def clear_results(self) -> None:
        self.report = None
        self.cell = None
        self.summary.setText("")
        self.per_class.setRowCount(0)
        self.reliability.show_honesty(None)
        self.matrix.clear()
        self.matrix.setRowCount(0)
        self.matrix.setColumnCount(0)
        self._set_gallery([], "Misclassified images")
        self._update_state()

    def _fill_per_class(self, report: EvaluationReport) -> None:
        self.per_class.setRowCount(len(report.per_class))
        for row, metrics in enumerate(report.per_class):
            self.per_class.setItem(row, 0, QTableWidgetItem(metrics.name))
            values = (metrics.precision, metrics.recall, metrics.f1)
            for column, value in enumerate(values, start=1):
                item = QTableWidgetItem(f"{value:.3f}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.per_class.setItem(row, column, item)
            support = QTableWidgetItem(str(metrics.support))
            support.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.per_class.setItem(row, 4, support)

    def _fill_matrix(self, report: EvaluationReport) -> None:
        names = report.class_names
        self.matrix.setRowCount(len(names))
        self.matrix.setColumnCount(len(names))
        self.matrix.setVerticalHeaderLabels([f"true: {n}" for n in names])
        self.matrix.setHorizontalHeaderLabels([f"pred: {n}" for n in names])
        black = QBrush(QColor(20, 20, 20))
        for t, row in enumerate(report.confusion_matrix):
            total = sum(row)
            for p, count in enumerate(row):
                item = QTableWidgetItem(str(count))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setBackground(QBrush(_cell_colour(count, total, t == p)))
                item.setForeground(black)
                item.setData(CELL_ROLE, (t, p))
                item.setToolTip(f"{count} image(s) of {names[t]} predicted as {names[p]}")
                self.matrix.setItem(t, p, item)
        self.matrix.resizeColumnsToContents()

    @Slot(int, int)
    def _on_cell_clicked(self, true_index: int, predicted_index: int) -> None:
        if self.report is None:
            return
        if self.cell == (true_index, predicted_index):
            self.show_all()
            return
        self.filter_cell(true_index, predicted_index)

    def filter_cell(self, true_index: int, predicted_index: int) -> None:
        """Show the images of one confusion-matrix cell in the gallery."""
        if self.report is None:
            return
        self.cell = (true_index, predicted_index)
        names = self.report.class_names
        results = self.report.images_in_cell(true_index, predicted_index)
        self._set_gallery(results, f"{names[true_index]} → {names[predicted_index]}: {len(results)} image(s)")
        self._update_state()

    @Slot()
    def show_all(self) -> None:
        """Back to every misclassified image, highest loss first."""
        self.cell = None
        self.matrix.clearSelection()
        if self.report is not None:
            wrong = self.report.misclassified
            title = f"Misclassified images: {len(wrong)}" if wrong else "No misclassified images"
            self._set_gallery(wrong, title + " (highest loss first)" if wrong else title)
        self._update_state()

    def _set_gallery(self, results: list[ImageResult], title: str) -> None:
        self.thumbnails.clear()
        self.details.clear()
        self.gradcam.clear()
        self.gallery.clear()
        self.gallery_title.setText(title)
        self.detail_title.setText("")
        self.detail_image.clear()
        self.detail_gradcam.clear()
        self._detail_path = ""
        if self.report is None:
            return
        names = self.report.class_names
        placeholder = QPixmap(THUMB_SIZE, THUMB_SIZE)
        placeholder.fill(QColor(230, 230, 230))
        icon = QIcon(placeholder)
        for row, result in enumerate(results):
            probability = result.probabilities[result.predicted_index]
            caption = f"{names[result.true_index]} → {names[result.predicted_index]} ({probability:.1%})"
            item = QListWidgetItem(icon, caption)
            item.setData(RESULT_ROLE, result)
            item.setToolTip(f"{result.path}\nloss {result.loss:.3f}")
            self.gallery.addItem(item)
            if result.path is not None:
                self.thumbnails.request(row, result.path)

    @Slot(object, QImage)
    def _on_thumbnail(self, row: int, image: QImage) -> None:
        item = self.gallery.item(row)
        if item is not None and not image.isNull():
            item.setIcon(QIcon(QPixmap.fromImage(image)))

    # -- one image, larger, with Grad-CAM --------------------------------------------------------------------
    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_image_selected(self, item: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if item is None or self.report is None or self.predictor is None:
            return
        result = item.data(RESULT_ROLE)
        if result is None:
            return
        names = self.report.class_names
        probability = result.probabilities[result.predicted_index]
        self.detail_title.setText(
            f"<b>{Path(result.path).name}</b>: true {names[result.true_index]}, predicted "
            f"{names[result.predicted_index]} ({probability:.1%}), loss {result.loss:.3f}. "
            "Grad-CAM shows what argued for the predicted class."
        )
        self._detail_path = path = str(result.path)
        self.detail_image.setText("Loading…")
        self.detail_gradcam.setText("Computing Grad-CAM…")
        self.details.clear()
        self.details.request(path, path)
        self.gradcam.clear()
        render = GradCamRender(
            self.gradcam_models, self.predictor.bundle, result.predicted_index, DETAIL_SIZE
        )
        self.gradcam.request(path, path, render)

    @Slot(object, QImage)
    def _on_detail(self, path: str, image: QImage) -> None:
        if path != self._detail_path:
            return
        if image.isNull():
            self.detail_image.setText("This image cannot be displayed.")
        else:
            self.detail_image.setPixmap(_detail_pixmap(image))

    @Slot(object, str)
    def _on_detail_failed(self, path: str, _message: str) -> None:
        if path == self._detail_path:
            self.detail_image.setText("This image cannot be displayed.")

    @Slot(object, QImage)
    def _on_gradcam(self, path: str, image: QImage) -> None:
        if path == self._detail_path:
            self.detail_gradcam.setPixmap(_detail_pixmap(image))

    @Slot(object, str)
    def _on_gradcam_failed(self, path: str, message: str) -> None:
        if path == self._detail_path:
            self.detail_gradcam.setText(message)

    def shutdown(self) -> None:
        for loader in (self.thumbnails, self.details, self.gradcam):
            loader.shutdown()


def _detail_pixmap(image: QImage) -> QPixmap:
    """A pixmap of ``image``, small images enlarged to the detail size (so both views match)."""
    pixmap = QPixmap.fromImage(image)
    if max(pixmap.width(), pixmap.height()) < DETAIL_SIZE:
        pixmap = pixmap.scaled(
            DETAIL_SIZE,
            DETAIL_SIZE,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    return pixmap
