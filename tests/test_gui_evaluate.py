"""The Evaluate tab, File → Export… and the Predict tab's Grad-CAM toggle (pytest-qt, offscreen).

Models are tiny: an untrained mobilenet_v3_small bundle (so there are misclassified images to look
at) and the session's trained efficientnet_lite0 bundle; the data is the synthetic two-class folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QLabel, QListWidget, QProgressBar, QPushButton, QTableWidget

ARCH = "mobilenet_v3_small"


@pytest.fixture(scope="module")
def untrained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-class mobilenet_v3_small bundle (cats, dogs): it makes mistakes."""
    import torch

    from engine.models.build import build_model
    from engine.models.bundle import Bundle, save_bundle
    from engine.models.registry import get_model_info

    torch.manual_seed(3)
    model, _ = build_model(ARCH, 2, pretrained=False)
    bundle = Bundle(ARCH, ["cats", "dogs"], model.state_dict(), get_model_info(ARCH).preprocessing)
    return save_bundle(tmp_path_factory.mktemp("untrained") / "model.pt", bundle)


def _load(window: Any, qtbot: Any, dataset: Path | None, bundle: Path) -> None:
    """Open ``dataset`` on the Data tab and ``bundle`` as the current model; wait for both."""
    if dataset is not None:
        window.data_tab.open_dataset(dataset)
        qtbot.waitUntil(lambda: window.evaluate_tab.dataset is not None, timeout=60_000)
    window.predict_tab.load_model(bundle)
    qtbot.waitUntil(lambda: window.evaluate_tab.predictor is not None, timeout=60_000)


def _evaluate(window: Any, qtbot: Any) -> Any:
    tab = window.evaluate_tab
    window.tabs.setCurrentWidget(tab)
    button = window.findChild(QPushButton, "evaluateButton")
    assert button.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.report is not None and not tab.is_busy(), timeout=120_000)
    return tab.report


def _click_cell(qtbot: Any, matrix: QTableWidget, row: int, column: int) -> None:
    rect = matrix.visualItemRect(matrix.item(row, column))
    qtbot.mouseClick(matrix.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_evaluate_tab_exists_and_waits_for_model_and_data(window):
    assert window.tabs.indexOf(window.evaluate_tab) == 3
    assert window.evaluate_tab.objectName() == "evaluateTab"
    assert not window.findChild(QPushButton, "evaluateButton").isEnabled()
    assert not window.export_action.isEnabled()
    assert window.export_action.toolTip()


def test_confusion_cell_filters_the_gallery(window, qtbot, synthetic_dataset, untrained_bundle):
    _load(window, qtbot, synthetic_dataset, untrained_bundle)
    summary = window.findChild(QLabel, "evaluateSummary")
    assert "Press <b>Evaluate</b>" in summary.text() and "val images" in summary.text()  # issue 22: a hint
    bar = window.findChild(QProgressBar, "evaluateProgress")
    values: list[int] = []
    bar.valueChanged.connect(values.append)
    texts: list[str] = []
    window.evaluate_tab.clock.ticked.connect(texts.append)
    report = _evaluate(window, qtbot)
    assert values == sorted(values) and values[-1] == bar.maximum() == 16  # one clock, bar never back
    assert texts and texts[0].startswith("elapsed 0:00")
    assert report.n_images == 16  # the val split: 8 cats + 8 dogs
    assert "Press" not in summary.text() and "Accuracy" in summary.text()
    assert "top-" not in summary.text()  # top-2 of two classes says nothing
    progress = window.findChild(QProgressBar, "evaluateProgress")
    assert progress.minimumWidth() >= progress.fontMetrics().horizontalAdvance("153 / 153 images")

    per_class = window.findChild(QTableWidget, "perClassTable")
    assert per_class.rowCount() == 2
    assert sum(int(per_class.item(r, 4).text()) for r in range(2)) == 16
    assert {per_class.item(r, 0).text() for r in range(2)} == {"cats", "dogs"}

    gallery = window.findChild(QListWidget, "errorGallery")
    matrix = window.findChild(QTableWidget, "confusionMatrix")
    errors = len(report.misclassified)
    assert errors > 0  # an untrained model gets some wrong
    assert gallery.count() == errors
    assert "→" in gallery.item(0).text()
    first = gallery.item(0).data(Qt.ItemDataRole.UserRole + 11)
    shown = f"{first.probabilities[first.predicted_index]:.1%}"
    assert gallery.item(0).text().endswith(f"({shown})")  # as the detail says it: a percentage
    counts = {(t, p): int(matrix.item(t, p).text()) for t in range(2) for p in range(2)}
    assert sum(counts.values()) == 16
    assert counts == {(t, p): report.confusion_matrix[t][p] for t in range(2) for p in range(2)}

    # An error cell, then a cell on the diagonal (if it has images), then the same cell again.
    error_cell = max(((t, p) for t, p in counts if t != p), key=lambda c: counts[c])
    _click_cell(qtbot, matrix, *error_cell)
    assert gallery.count() == counts[error_cell]
    for row in range(gallery.count()):
        result = gallery.item(row).data(Qt.ItemDataRole.UserRole + 11)
        assert (result.true_index, result.predicted_index) == error_cell
    diagonal = max(((t, t) for t in range(2)), key=lambda c: counts[c])
    _click_cell(qtbot, matrix, *diagonal)
    assert gallery.count() == counts[diagonal]
    _click_cell(qtbot, matrix, *diagonal)  # clicking again shows every error
    assert gallery.count() == errors

    # "Show all errors" clears a filter too.
    _click_cell(qtbot, matrix, *error_cell)
    show_all = window.findChild(QPushButton, "evaluateShowAll")
    assert show_all.isEnabled()
    qtbot.mouseClick(show_all, Qt.MouseButton.LeftButton)
    assert gallery.count() == errors

    # Thumbnails arrive off the GUI thread; a click shows the image larger with its Grad-CAM.
    losses = [gallery.item(r).data(Qt.ItemDataRole.UserRole + 11).loss for r in range(gallery.count())]
    assert losses == sorted(losses, reverse=True)
    gallery.setCurrentRow(0)
    detail = window.findChild(QLabel, "evaluateDetailImage")
    gradcam = window.findChild(QLabel, "evaluateGradCam")
    qtbot.waitUntil(lambda: detail.pixmap() is not None and not detail.pixmap().isNull(), timeout=30_000)
    qtbot.waitUntil(lambda: gradcam.pixmap() is not None and not gradcam.pixmap().isNull(), timeout=60_000)


def test_evaluate_shows_a_class_mismatch_inline(window, qtbot, tmp_path, untrained_bundle):
    from helpers_images import make_image_folder

    other = make_image_folder(tmp_path / "birds", {"owls": 3, "gulls": 3})
    _load(window, qtbot, other, untrained_bundle)
    tab = window.evaluate_tab
    window.tabs.setCurrentWidget(tab)
    qtbot.mouseClick(window.findChild(QPushButton, "evaluateButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tab.is_busy(), timeout=60_000)
    assert tab.error.isVisible()
    assert "does not know the class" in tab.error.text()
    assert "Traceback" not in tab.error.text()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_dialog_exports_and_shows_parity(
    window, qtbot, monkeypatch, tmp_path, synthetic_dataset, untrained_bundle, fmt
):
    _load(window, qtbot, synthetic_dataset, untrained_bundle)
    assert window.export_action.isEnabled()
    window.export_action.trigger()
    dialog = window.findChild(QDialog, "exportDialog")
    assert dialog is not None and dialog.isVisible()
    dialog.format_box.setCurrentIndex(dialog.format_box.findData(fmt))
    out = tmp_path / "exported" / ("model.onnx" if fmt == "onnx" else "model.pt")
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    qtbot.mouseClick(dialog.findChild(QPushButton, "exportBrowseButton"), Qt.MouseButton.LeftButton)
    assert dialog.path_edit.text() == str(out)
    qtbot.mouseClick(dialog.findChild(QPushButton, "exportButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=180_000)
    result = dialog.findChild(QLabel, "exportResult").text()
    assert "Exported" in result, result
    assert out.is_file() and Path(str(out) + ".json").is_file()
    if "parity unavailable" in result:  # onnxruntime missing: said so, not a traceback
        assert fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None, result
    else:
        assert "label agreement 100.0% on 16 validation image(s)" in result, result
        assert dialog.parity.max_prob_diff < 1e-3
    dialog.close()


def test_gradcam_toggle_overlays_the_preview(window, qtbot, synthetic_dataset, trained_bundle):
    _load(window, qtbot, None, trained_bundle)
    tab = window.predict_tab
    image = sorted((synthetic_dataset / "val" / "dogs").iterdir())[0]
    tab.classify([image])
    table = window.findChild(QTableWidget, "predictTable")
    qtbot.waitUntil(lambda: not tab.is_busy() and table.rowCount() == 1, timeout=60_000)
    preview = window.findChild(QLabel, "predictImage")
    qtbot.waitUntil(lambda: preview.pixmap() is not None and not preview.pixmap().isNull(), timeout=30_000)
    plain = preview.pixmap().toImage()

    toggle = tab.gradcam_toggle
    assert toggle.objectName() == "gradcamToggle"
    toggle.setChecked(True)
    status = window.findChild(QLabel, "gradcamStatus")
    qtbot.waitUntil(lambda: tab._overlay_path == str(image), timeout=60_000)
    assert status.text() == "Grad-CAM for the predicted class"
    overlaid = preview.pixmap().toImage()
    assert overlaid.size() == plain.size()
    assert overlaid != plain

    toggle.setChecked(False)  # back to the plain photo
    qtbot.waitUntil(lambda: preview.pixmap().toImage() == plain, timeout=30_000)
    assert status.text() == ""


def test_gradcam_unavailable_is_shown_as_text(window, qtbot, monkeypatch, synthetic_dataset, trained_bundle):
    from engine.inference.gradcam import GradCamUnavailable
    from gui.background.inference import GradCamModels

    def unavailable(*_args: Any) -> Any:
        raise GradCamUnavailable(
            "Grad-CAM is not available for vit_b_16: it has no convolutional feature map"
        )

    monkeypatch.setattr(GradCamModels, "compute", unavailable)
    _load(window, qtbot, None, trained_bundle)
    tab = window.predict_tab
    tab.gradcam_toggle.setChecked(True)
    tab.classify([sorted((synthetic_dataset / "val" / "cats").iterdir())[0]])
    status = window.findChild(QLabel, "gradcamStatus")
    qtbot.waitUntil(lambda: "not available" in status.text(), timeout=60_000)
    assert "Traceback" not in status.text()


def test_a_just_trained_model_can_be_evaluated(window, qtbot, synthetic_dataset, trained_bundle):
    window.data_tab.open_dataset(synthetic_dataset)
    qtbot.waitUntil(lambda: window.evaluate_tab.dataset is not None, timeout=60_000)
    window.train_tab.modelTrained.emit(str(trained_bundle))  # what a finished run announces
    qtbot.waitUntil(lambda: window.evaluate_tab.predictor is not None, timeout=60_000)
    assert "efficientnet_lite0" in window.findChild(QLabel, "evaluateSource").text()
    assert window.export_action.isEnabled()
    report = _evaluate(window, qtbot)
    assert report.accuracy >= 0.75
    assert window.findChild(QListWidget, "errorGallery").count() == len(report.misclassified)


def test_gallery_shows_why_grad_cam_is_unavailable(
    window, qtbot, monkeypatch, synthetic_dataset, untrained_bundle
):
    from engine.inference.gradcam import GradCamUnavailable
    from gui.background.inference import GradCamModels

    def unavailable(*_args: Any) -> Any:
        raise GradCamUnavailable(
            "Grad-CAM is not available for vit_b_16: it has no convolutional feature map"
        )

    monkeypatch.setattr(GradCamModels, "compute", unavailable)
    _load(window, qtbot, synthetic_dataset, untrained_bundle)
    _evaluate(window, qtbot)
    window.findChild(QListWidget, "errorGallery").setCurrentRow(0)
    gradcam = window.findChild(QLabel, "evaluateGradCam")
    qtbot.waitUntil(lambda: "not available for vit_b_16" in gradcam.text(), timeout=60_000)
    assert "Traceback" not in gradcam.text()


def test_a_flat_dataset_is_evaluated_on_the_models_own_val_split(window, qtbot, tmp_path):
    """A run made with another seed and val share than the Data tab's scan: Evaluate uses the run's
    val images (never its training images), so its accuracy is the run's val accuracy."""
    import torch
    from helpers_images import make_image_folder

    from engine.core.config import TrainConfig
    from engine.data.datasets import scan_dataset
    from engine.models.build import build_model
    from engine.models.bundle import Bundle, save_bundle
    from engine.models.registry import get_model_info

    data = make_image_folder(tmp_path / "flat", {"cats": 10, "dogs": 10}, splits=None)
    config = TrainConfig(model=ARCH, seed=7, val_fraction=0.4)
    torch.manual_seed(0)
    model, _ = build_model(ARCH, 2, pretrained=False)
    pre = get_model_info(ARCH).preprocessing
    bundle = save_bundle(
        tmp_path / "model.pt",
        Bundle(ARCH, ["cats", "dogs"], model.state_dict(), pre, config=config.to_dict()),
    )
    runs_val = {s.path for s in scan_dataset(data, val_fraction=0.4, seed=7).splits["val"]}
    windows_val = {s.path for s in scan_dataset(data).splits["val"]}
    assert runs_val != windows_val  # the Data tab's own split differs from the run's
    _load(window, qtbot, data, bundle)
    report = _evaluate(window, qtbot)
    assert {Path(r.path) for r in report.results} == runs_val
