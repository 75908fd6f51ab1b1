"""The export dialog's new formats (issue 27): a missing converter is named with the package to
install, Core ML says it runs only on macOS, and an export ends with its report and, asked for, a
deploy folder."""

from __future__ import annotations

import pytest

from engine.data.datasets import scan_dataset
from engine.inference import formats
from engine.models.bundle import load_bundle
from gui.background.jobs import ThreadRunner
from gui.core.settings import Settings
from gui.dialogs.export_dialog import ExportDialog, val_images


@pytest.fixture
def dialog(qtbot, trained_bundle, synthetic_dataset):
    report = scan_dataset(synthetic_dataset)
    runner = ThreadRunner()
    made = ExportDialog(load_bundle(trained_bundle), val_images(report), runner, Settings(), dataset=report)
    qtbot.addWidget(made)
    yield made
    runner.shutdown()


def _choose(dialog: ExportDialog, fmt: str) -> None:
    dialog.format_box.setCurrentIndex(dialog.format_box.findData(fmt))


def test_a_missing_converter_is_named_and_export_is_off(dialog, monkeypatch):
    real = formats.importlib.util.find_spec
    monkeypatch.setattr(
        formats.importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    _choose(dialog, "openvino")
    text = dialog.needs_label.text()
    assert "openvino" in text and "transfer-studio[export]" in text
    assert not dialog.export_button.isEnabled()
    _choose(dialog, "onnx")
    assert dialog.export_button.isEnabled() and not dialog.needs_label.text()


def test_core_ml_says_it_runs_only_on_macos(dialog):
    _choose(dialog, "coreml")
    assert "only on macOS" in dialog.needs_label.text()
    assert not dialog.deploy_box.isEnabled()  # a deploy folder is for the ONNX formats
    assert dialog.path_edit.text().endswith(".mlpackage")


def test_an_export_shows_its_report_and_writes_the_deploy_folder(dialog, qtbot, tmp_path):
    _choose(dialog, "onnx")
    out = tmp_path / "model.onnx"
    dialog.path_edit.setText(str(out))
    dialog.deploy_box.setChecked(True)
    dialog.start()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=120_000)
    assert dialog.report is not None and dialog.report.top1_agreement == 1.0
    text = dialog.result_label.text()
    assert "top-1 accuracy" in text and "model-deploy" in text
    assert (tmp_path / "model-deploy" / "predict.py").is_file()
    assert (tmp_path / "model-deploy" / "model.onnx").is_file() and out.is_file()


def test_the_command_line_and_the_dialog_offer_every_format_the_engine_writes():
    """The format names are listed three times (the engine's, the command line's without torch, the
    dialog's labels): the same set everywhere."""
    from engine.cli.export import FORMATS as CLI_FORMATS
    from engine.inference.formats import FORMAT_NAMES
    from gui.dialogs.export_dialog import FORMATS as DIALOG_FORMATS

    assert set(CLI_FORMATS) == set(FORMAT_NAMES) == set(DIALOG_FORMATS)
    assert len(CLI_FORMATS) == len(FORMAT_NAMES)
