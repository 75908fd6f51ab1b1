"""Issue 25 in the window: the bake-off asks once before downloading (each model and its size, the
total and a rough time); declining runs only the models on disk; "Recommended for your photos" in the
model picker, whose button picks the model."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel, QMessageBox, QPushButton, QWidget
from test_gui_bakeoff import BAKEOFF_TIMEOUT_MS, LITE0, start_bakeoff
from test_gui_training import open_dataset

TIMM = "timm:convnext_atto.d2_in1k"


@pytest.fixture
def bakeoff(monkeypatch, tmp_path):
    """The default set: the built-in model's feature extraction and a timm model not downloaded."""
    from engine.experiments import bakeoff

    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    chosen = [bakeoff.Candidate(LITE0, "feature-extract"), bakeoff.Candidate(TIMM, "feature-extract")]
    monkeypatch.setattr(bakeoff, "default_candidates", lambda device="auto", **_kw: list(chosen))
    monkeypatch.setattr(bakeoff, "weights_status", lambda n: "offline" if n == LITE0 else "download")
    return bakeoff


def _answer(monkeypatch, button, asked: list[str]) -> None:
    def question(_parent, _title, text, *_args, **_kwargs):
        asked.append(text)
        return button

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))


def _run(window, qtbot) -> None:
    panel = window.train_tab.bakeoff
    hint = window.findChild(QLabel, "bakeoffHint")
    qtbot.waitUntil(lambda: "need a download" in hint.text(), timeout=120_000)
    start_bakeoff(window, qtbot, epochs=1)
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=BAKEOFF_TIMEOUT_MS)


def test_the_bakeoff_asks_once_then_downloads_or_runs_what_is_on_disk(
    window, qtbot, monkeypatch, synthetic_dataset, bakeoff
):
    from engine.core.sizes import format_size
    from engine.models.registry import get_model_info
    from engine.models.weights import WeightsError

    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    panel = window.train_tab.bakeoff
    unranked = window.findChild(QLabel, "bakeoffNotRanked")

    # Declined: no download, the model on disk runs, the other is listed as skipped.
    asked: list[str] = []
    _answer(monkeypatch, QMessageBox.StandardButton.No, asked)
    fetched: list[str] = []

    def download(name, on_progress=None, should_stop=None):
        fetched.append(name)
        on_progress(0, 1000, 0.0)
        raise WeightsError("Cannot download it: cannot reach huggingface.co", offline=True)

    monkeypatch.setattr(bakeoff, "download_weights", download)
    _run(window, qtbot)
    size = format_size(get_model_info(TIMM).download_bytes)
    assert len(asked) == 1 and TIMM in asked[0] and size in asked[0] and "In all" in asked[0]
    assert "about" in asked[0]  # a rough time
    assert fetched == []
    result = panel.result
    assert [(e.model, e.status) for e in result.entries] == [(LITE0, "finished"), (TIMM, "skipped")]
    assert f"needs a download of {size}" in (result.entries[1].reason or "")
    assert unranked.isVisible() and "needs a download" in unranked.text()

    # Accepted: asked once more, the download is tried (its progress shown), its failure skips it.
    _answer(monkeypatch, QMessageBox.StandardButton.Yes, asked)
    _run(window, qtbot)
    assert len(asked) == 2 and fetched == [TIMM]
    result = panel.result
    assert [(e.model, e.status) for e in result.entries] == [(LITE0, "finished"), (TIMM, "skipped")]
    assert "the download failed" in (result.entries[1].reason or "")
    assert "the download failed" in unranked.text()
    assert not window.findChild(QWidget, "bakeoffError").isVisible()


def test_recommended_for_your_photos_picks_the_model(window, qtbot, monkeypatch, synthetic_dataset):
    from engine.experiments import recommend

    monkeypatch.setattr(recommend, "speed_factor", lambda _device=None: 1.0)
    picker = window.findChild(QComboBox, "modelPicker")
    qtbot.waitUntil(lambda: picker.count() > 10, timeout=120_000)  # the catalog
    box = window.findChild(QWidget, "recommendedModels")
    assert box is not None and not box.isVisible()  # no dataset yet
    window.tabs.setCurrentWidget(window.train_tab)
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    window.tabs.setCurrentWidget(window.train_tab)
    qtbot.waitUntil(lambda: bool(window.train_tab.form.recommended.recommendations), timeout=120_000)
    recs = window.train_tab.form.recommended.recommendations
    button = window.findChild(QPushButton, "recommendedModel0")
    assert button is not None and recs[0].model.removeprefix("timm:").split(".", 1)[0] == button.text()
    assert recs[0].reason in button.toolTip() and "32 photos" in button.toolTip()
    assert "here, a " in button.toolTip() or "on this computer" in button.toolTip()
    assert "Recommended" in box.findChild(QLabel).text()
    assert "Recommended for your photos" in box.findChild(QLabel).toolTip()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.train_tab.form.model_picker.current_model() == recs[0].model
