"""Pretrained weights in the GUI: offline message + import, download with progress, Cancel, menus.

Every test points torch hub at an empty temporary folder, so no torchvision model's weights are
cached, and never touches the network: urllib is made to fail (offline) or ``download_weights`` is
replaced by a fake that reports progress and writes the file. ``engine.training.trainer.train`` is replaced
by a recorder where a test only needs to see that training started.
"""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QComboBox, QFileDialog, QPushButton
from test_gui_training import open_dataset

from engine.core.errors import Cancelled

MODEL = "resnet18"


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """torch hub (where torchvision caches weights) in an empty temp folder; restored afterwards (as
    it was: unset, so TORCH_HOME decides again, not pinned to the folder TORCH_HOME named then)."""
    import torch

    monkeypatch.setattr(torch.hub, "_hub_dir", torch.hub._hub_dir)  # restored at teardown
    hub = tmp_path / "hub"
    torch.hub.set_dir(str(hub))
    yield hub / "checkpoints"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """urllib.request.urlopen fails as with no network; returns the URLs it was asked for."""
    import engine.models.downloads

    asked: list[str] = []

    def refuse(request: Any, *_args: Any, **_kwargs: Any) -> Any:
        asked.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(engine.models.downloads.urllib.request, "urlopen", refuse)
    return asked


@pytest.fixture
def train_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """engine.training.trainer.train records its config and returns at once (the run "starts")."""
    import engine.training.trainer

    calls: list[Any] = []

    def fake_train(config: Any, *_args: Any, **_kwargs: Any) -> None:
        calls.append(config)

    monkeypatch.setattr(engine.training.trainer, "train", fake_train)
    return calls


def choose_torchvision_model(window: Any, qtbot: Any) -> None:
    qtbot.waitUntil(lambda: window.catalog != [], timeout=120_000)
    window.tabs.setCurrentWidget(window.train_tab)
    strategy = window.findChild(QComboBox, "strategyPicker")
    strategy.setCurrentIndex(strategy.findText("feature-extract"))
    picker = window.train_tab.form.model_picker
    assert picker.select_model(MODEL)
    assert picker.weights_status(MODEL) == "download"
    assert strategy.currentText() == "feature-extract"


def press_start(window: Any, qtbot: Any) -> Any:
    qtbot.mouseClick(window.findChild(QPushButton, "startButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.train_tab.weights_dialog is not None, timeout=10_000)
    dialog = window.train_tab.weights_dialog
    assert dialog.objectName() == "weightsDialog"
    return dialog


def runs_made(window: Any) -> list[Path]:
    root = Path(window.settings.runs_root())
    return sorted(root.iterdir()) if root.is_dir() else []


def test_offline_shows_file_url_and_import_and_starts_nothing(
    window, qtbot, monkeypatch, synthetic_dataset, empty_hub, no_network, train_calls, tmp_path
):
    from engine.models.registry import get_model_info
    from engine.models.weights import file_name_of

    url = get_model_info(MODEL).weights_url
    file_name = file_name_of(url)
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    choose_torchvision_model(window, qtbot)
    dialog = press_start(window, qtbot)
    qtbot.waitUntil(lambda: dialog.offline, timeout=30_000)

    text = dialog.message.text()
    assert "No network" in text and file_name in text and url in text
    assert "Traceback" not in text
    assert dialog.import_button.isVisible() and dialog.import_button.isEnabled()
    assert no_network == [url]
    assert not window.train_tab.is_running() and train_calls == [] and runs_made(window) == []
    assert not (empty_hub / file_name).exists()  # nothing partial counts as cached

    # A file that is not the model's weights: refused inline, still nothing starts.
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not the weights")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(bogus), "")))
    qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "could not be prepared" in dialog.message.text(), timeout=30_000)
    assert f"not the {MODEL} weights" in dialog.message.text()
    assert dialog.isVisible() and train_calls == []

    # Cancel: the dialog closes, the run never starts.
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    qtbot.wait(200)
    assert not window.train_tab.is_running() and train_calls == [] and runs_made(window) == []
    assert window.findChild(QPushButton, "startButton").isEnabled()


def test_offline_then_import_makes_the_model_usable_and_starts_training(
    window, qtbot, monkeypatch, synthetic_dataset, empty_hub, no_network, train_calls, tmp_path
):
    import engine.models.weights

    def fake_import(file: Any, name: str | None = None) -> Path:
        assert name == MODEL
        empty_hub.mkdir(parents=True, exist_ok=True)
        target = empty_hub / engine.models.weights.file_name_of(
            engine.models.weights.get_model_info(MODEL).weights_url
        )
        target.write_bytes(Path(file).read_bytes())
        return target

    monkeypatch.setattr(engine.models.weights, "import_weights", fake_import)
    fetched = tmp_path / "resnet18-from-usb.pth"
    fetched.write_bytes(b"weights fetched elsewhere")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(fetched), "")))
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    choose_torchvision_model(window, qtbot)
    dialog = press_start(window, qtbot)
    qtbot.waitUntil(lambda: dialog.offline, timeout=30_000)
    qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(train_calls) == 1, timeout=30_000)
    assert not dialog.isVisible()
    assert train_calls[0].model == MODEL
    qtbot.waitUntil(lambda: not window.train_tab.is_running(), timeout=30_000)
    # The picker now shows the model as usable without a network.
    picker = window.train_tab.form.model_picker
    qtbot.waitUntil(lambda: picker.weights_status(MODEL) == "cached", timeout=60_000)
    assert picker.current_model() == MODEL


def test_download_shows_progress_then_starts_training(
    window, qtbot, monkeypatch, synthetic_dataset, empty_hub, train_calls
):
    import engine.models.weights

    seen: list[tuple[str, str]] = []

    def fake_download(name: str, *, on_progress: Any = None, should_stop: Any = None, **_kw: Any) -> Path:
        total = 4_000_000
        for done in range(0, total + 1, 1_000_000):
            on_progress(done, total, 2_000_000.0)
            time.sleep(0.15)
        empty_hub.mkdir(parents=True, exist_ok=True)
        target = empty_hub / "resnet18-f37072fd.pth"
        target.write_bytes(b"x")
        return target

    monkeypatch.setattr(engine.models.weights, "download_weights", fake_download)
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    choose_torchvision_model(window, qtbot)
    dialog = press_start(window, qtbot)

    def record() -> bool:
        seen.append((dialog.bytes_label.text(), dialog.speed_label.text()))
        return bool(train_calls)

    qtbot.waitUntil(record, timeout=30_000)
    assert any("of 4.0 MB" in text and "2.0 MB/s" in speed for text, speed in seen), seen
    assert dialog.progress.value() == dialog.progress.maximum()
    assert train_calls[0].model == MODEL
    qtbot.waitUntil(lambda: not window.train_tab.is_running(), timeout=30_000)
    picker = window.train_tab.form.model_picker
    qtbot.waitUntil(lambda: picker.weights_status(MODEL) == "cached", timeout=60_000)


def test_cancel_stops_the_download_and_starts_nothing(
    window, qtbot, monkeypatch, synthetic_dataset, empty_hub, train_calls
):
    import engine.models.weights

    stopped: list[bool] = []

    def slow_download(name: str, *, on_progress: Any = None, should_stop: Any = None, **_kw: Any) -> Path:
        for done in range(1000):
            on_progress(done * 1000, 1_000_000, 10_000.0)
            if should_stop():
                stopped.append(True)
                raise Cancelled("the download was cancelled")
            time.sleep(0.02)
        raise AssertionError("the download was never cancelled")

    monkeypatch.setattr(engine.models.weights, "download_weights", slow_download)
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    choose_torchvision_model(window, qtbot)
    dialog = press_start(window, qtbot)
    qtbot.waitUntil(lambda: "of 1.0 MB" in dialog.bytes_label.text(), timeout=30_000)
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    qtbot.waitUntil(lambda: stopped == [True], timeout=10_000)
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=10_000)
    assert train_calls == [] and not window.train_tab.is_running() and runs_made(window) == []


def test_file_menu_import_weights_reports_a_wrong_file_inline(
    window, qtbot, monkeypatch, empty_hub, tmp_path
):
    bogus = tmp_path / "mystery.pth"
    bogus.write_bytes(b"nobody's weights")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(bogus), "")))
    qtbot.waitUntil(lambda: window.environment is not None, timeout=120_000)
    window.findChild(type(window.import_weights_action), "importWeightsAction").trigger()
    dialog = window._weights_dialog
    assert dialog.objectName() == "weightsDialog" and dialog.isVisible()
    qtbot.waitUntil(lambda: "could not be prepared" in dialog.message.text(), timeout=30_000)
    assert "matches no model" in dialog.message.text()
    assert "Traceback" not in dialog.message.text()
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()


TIMM_MODEL = "timm:mobilenetv4_conv_small.e2400_r224_in1k"
TIMM_REPO = "timm/mobilenetv4_conv_small.e2400_r224_in1k"


def test_file_menu_import_of_a_timm_model_safetensors_asks_which_model(
    window, qtbot, monkeypatch, empty_hub, tmp_path
):
    """A Hub ``model.safetensors`` (not named as the cache names it) asks for the timm model: Cancel
    imports nothing; choosing the model checks and imports it; a file already named as the cache names
    it is imported without asking."""
    from helpers_timm import random_hub_state
    from PySide6.QtWidgets import QInputDialog
    from safetensors.torch import save_file

    from engine.models.hub import hub_file_name
    from engine.models.registry import list_models

    source = tmp_path / "download" / "model.safetensors"
    source.parent.mkdir()
    save_file(random_hub_state(TIMM_MODEL, seed=5), str(source))
    cached = empty_hub / hub_file_name(TIMM_REPO)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(source), "")))
    asked: list[list[str]] = []
    answer: list[tuple[str, bool]] = [("", False)]  # Cancel first

    def get_item(_parent: Any, _title: str, label: str, items: list[str], *_args: Any, **_kwargs: Any) -> Any:
        assert "model.safetensors" in label
        asked.append(list(items))
        return answer[0]

    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(get_item))
    qtbot.waitUntil(lambda: window.environment is not None, timeout=120_000)
    window.findChild(type(window.import_weights_action), "importWeightsAction").trigger()
    dialog = window._weights_dialog
    assert dialog.isVisible()

    # Cancel of the choice: nothing is imported, nothing runs, the dialog stays as it was.
    timm_names = [info.name for info in list_models() if info.source == "timm"]
    assert asked == [timm_names] and TIMM_MODEL in timm_names
    assert not dialog.is_busy() and "could not be prepared" not in dialog.message.text()
    assert not cached.exists() and not (empty_hub.exists() and any(empty_hub.iterdir()))

    # The model chosen: imported (its tensors checked) under the model's cache name.
    answer[0] = (TIMM_MODEL, True)
    qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Imported" in dialog.message.text(), timeout=60_000)
    assert len(asked) == 2
    assert cached.read_bytes() == source.read_bytes()
    assert cached.name in dialog.message.text()

    # A file already named as the cache names it needs no question.
    cached.unlink()
    named = tmp_path / "download" / hub_file_name(TIMM_REPO)
    source.rename(named)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(named), "")))
    dialog.message.setText("")
    qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Imported" in dialog.message.text(), timeout=60_000)
    assert len(asked) == 2 and cached.read_bytes() == named.read_bytes()
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()


def test_help_environment_shows_the_doctor_report_and_copies_it(window, qtbot):
    action = window.findChild(type(window.environment_action), "environmentAction")
    action.trigger()
    dialog = window._environment_dialog
    assert dialog.objectName() == "environmentDialog" and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.text.toPlainText() != "", timeout=120_000)
    text = dialog.text.toPlainText()
    assert "Python" in text and "torch" in text.lower()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=10_000)
    qtbot.mouseClick(dialog.copy_button, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text() == text
    assert "Copied" in dialog.status.text()
    dialog.close()


def test_the_cache_folder_chosen_in_environment_is_used_and_remembered(
    make_window, qtbot, monkeypatch, tmp_path
):
    """Help → Environment → Cache folder…: the engine's feature cache moves there, at once and on the
    next start; while $TRANSFER_STUDIO_CACHE is set, the variable wins and the button says so."""
    from PySide6.QtWidgets import QFileDialog

    from engine.core.locations import CACHE_ENV
    from engine.training.features import default_cache_dir

    monkeypatch.delenv(CACHE_ENV)
    chosen = tmp_path / "my cache"
    chosen.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(chosen)))
    settings_file = tmp_path / "settings.ini"
    window = make_window(settings_file)
    window.environment_action.trigger()
    dialog = window._environment_dialog
    assert dialog.cache_button.isEnabled()
    qtbot.mouseClick(dialog.cache_button, Qt.MouseButton.LeftButton)
    assert default_cache_dir() == chosen / "features"  # training and audits use it from now on
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=120_000)
    assert f"Features are now cached in {chosen}" in dialog.status.text()
    dialog.close()
    window.close()

    monkeypatch.delenv(CACHE_ENV)  # a new start of the app: the saved choice comes back
    make_window(settings_file, show=False)
    assert default_cache_dir() == chosen / "features"

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "from the environment"))
    again = make_window(settings_file)
    again.environment_action.trigger()
    assert not again._environment_dialog.cache_button.isEnabled()
    assert "TRANSFER_STUDIO_CACHE" in again._environment_dialog.cache_button.toolTip()
    assert default_cache_dir() == tmp_path / "from the environment" / "features"
    qtbot.waitUntil(lambda: not again._environment_dialog.is_busy(), timeout=120_000)
    again._environment_dialog.close()


def test_real_download_code_against_a_closed_local_port_shows_the_offline_message(
    window, qtbot, monkeypatch, synthetic_dataset, empty_hub, train_calls
):
    """No monkeypatched urllib: the real download code meets a refused connection on 127.0.0.1."""
    import dataclasses
    import socket

    import engine.models.weights

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: connections are refused
    url = f"http://127.0.0.1:{port}/resnet18-f37072fd.pth"
    real_info = engine.models.weights.get_model_info

    def info_with_local_url(name: str) -> Any:
        info = real_info(name)
        return dataclasses.replace(info, weights_url=url) if info.name == MODEL else info

    monkeypatch.setattr(engine.models.weights, "get_model_info", info_with_local_url)
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    choose_torchvision_model(window, qtbot)
    dialog = press_start(window, qtbot)
    qtbot.waitUntil(lambda: dialog.offline, timeout=60_000)
    assert url in dialog.message.text() and "resnet18-f37072fd.pth" in dialog.message.text()
    assert "Traceback" not in dialog.message.text()
    assert train_calls == [] and not window.train_tab.is_running() and runs_made(window) == []
    assert not empty_hub.exists() or not any(empty_hub.iterdir())  # no partial file
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
