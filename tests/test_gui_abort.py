"""Stopping each long operation through its worker: ``aborted`` then ``done``, never ``returned``.

Each test asks its worker to stop from the worker's own thread, at the first progress signal (a
direct connection calls ``worker.abort()`` before the operation's next ``should_stop`` check), so the
stop lands mid-operation however fast or slow the machine is. The signals a window would see are
then checked twice: with ``qtbot.waitSignals(order="strict")`` on the GUI thread (relayed by
``on_gui_thread``, never the worker's own signals: see tests/test_gui_signal_threads.py) and as the
exact sequence recorded on the worker thread. The data is small and synthetic, the model
efficientnet_lite0 (built-in weights), the weights download goes to a slow local HTTP server, and
every cache lives in ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_http import QuietHandler, local_server
from PySide6.QtCore import Qt, QThread

from engine.core.config import TrainConfig
from engine.training import events as ev
from gui.background.jobs import ThreadRunner, Worker
from gui.background.training import TrainWorker

MODEL = "efficientnet_lite0"
TIMEOUT_MS = 120_000  # only reached when the abort path is broken (the order is then wrong)
#: The worker signals that end an operation or say what happened, in emission order.
OUTCOME_SIGNALS = ("runStarted", "epochEnded", "finished", "returned", "errored", "aborted", "done")


@pytest.fixture(autouse=True)
def private_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh feature cache (so the feature pass really runs) and runs folder for every test."""
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "runs"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and val/ of two classes, 8 images each per split."""
    from helpers_images import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("abort-data") / "pets", {"cats": 8, "dogs": 8})


@pytest.fixture(scope="module")
def bundle(dataset: Path) -> Any:
    """An untrained 2-class efficientnet_lite0 bundle (cats, dogs), in memory."""
    import torch

    from engine.models.build import build_model
    from engine.models.bundle import Bundle
    from engine.models.registry import get_model_info

    torch.manual_seed(0)
    model, _ = build_model(MODEL, 2, pretrained=False)
    return Bundle(MODEL, ["cats", "dogs"], model.state_dict(), get_model_info(MODEL).preprocessing)


def record(worker: Worker, names: tuple[str, ...] = OUTCOME_SIGNALS) -> list[str]:
    """The names of ``worker``'s signals in the order they are emitted (recorded on its thread)."""
    seen: list[str] = []
    for name in names:
        if hasattr(worker, name):
            getattr(worker, name).connect(
                lambda *_args, n=name: seen.append(n), Qt.ConnectionType.DirectConnection
            )
    return seen


@pytest.fixture
def named(on_gui_thread: Callable[[Any], Any]) -> Callable[..., list[tuple[Any, str]]]:
    """``named(worker, *names)``: ``worker``'s signals, as the GUI thread receives them (queued), as
    (signal, name) pairs, so a waitSignals failure says which ones came."""

    def named(worker: Worker, *names: str) -> list[tuple[Any, str]]:
        return [(on_gui_thread(getattr(worker, name)), name) for name in names]

    return named


def abort_at(signal: Any, worker: Worker, when: Callable[..., bool]) -> list[tuple[Any, ...]]:
    """Call ``worker.abort()`` on the worker thread at the first emission of ``signal`` that ``when`` accepts."""
    hits: list[tuple[Any, ...]] = []

    def maybe_abort(*args: Any) -> None:
        if not hits and when(*args):
            hits.append(args)
            worker.abort()

    signal.connect(maybe_abort, Qt.ConnectionType.DirectConnection)
    return hits


class StartHook(ThreadRunner):
    """A ThreadRunner that lets a test connect to a worker a GUI widget creates, before it starts."""

    def __init__(self, hook: Callable[[Worker], None]) -> None:
        super().__init__()
        self.hook = hook
        self.started: list[Worker] = []

    def start(self, worker: Worker, name: str = "") -> QThread | None:
        self.started.append(worker)
        self.hook(worker)
        return super().start(worker, name)


# -- training -------------------------------------------------------------------------------------


def _train_until_aborted(
    qtbot: Any, named: Any, monkeypatch: pytest.MonkeyPatch, dataset: Path, tmp_path: Path, phase: str
) -> tuple[list[str], ev.RunFinished, ev.BatchProgress]:
    import gui.background.training

    monkeypatch.setattr(
        gui.background.training, "PROGRESS_INTERVAL_S", 0.0
    )  # every batch becomes a progress signal
    config = TrainConfig.for_strategy(
        "feature-extract", model=MODEL, epochs=3, batch_size=4, augment=False, device="cpu", workers=1
    )
    worker = TrainWorker(config, dataset, tmp_path / "runs")
    seen = record(worker)
    finished: list[ev.RunFinished] = []
    worker.finished.connect(finished.append, Qt.ConnectionType.DirectConnection)
    hits = abort_at(worker.progress, worker, lambda event, _points: event.phase == phase)
    runner = ThreadRunner()
    signals = named(worker, "runStarted", "finished", "aborted", "done")
    with qtbot.waitSignals(signals, order="strict", timeout=TIMEOUT_MS):
        runner.start(worker, "training")
    assert runner.wait_all(30)
    assert hits, f"no {phase} progress was reported"
    return seen, finished[0], hits[0][0]


def test_training_stopped_during_the_feature_pass(qtbot, named, monkeypatch, dataset, tmp_path):
    seen, finished, at = _train_until_aborted(qtbot, named, monkeypatch, dataset, tmp_path, "features")
    assert seen == ["runStarted", "finished", "aborted", "done"]  # no returned, no errored
    assert at.phase == "features" and at.batch == 1
    assert finished.cancelled and finished.epochs_completed == 0 and finished.bundle_path is None


def test_training_stopped_during_an_epoch(qtbot, named, monkeypatch, dataset, tmp_path):
    seen, finished, at = _train_until_aborted(qtbot, named, monkeypatch, dataset, tmp_path, "train")
    assert seen == ["runStarted", "finished", "aborted", "done"]  # not even the first epoch ended
    assert (at.phase, at.epoch, at.batch) == ("train", 1, 1) and at.batches > 1
    assert finished.cancelled and finished.epochs_completed == 0 and finished.bundle_path is None


# -- evaluation -----------------------------------------------------------------------------------


def test_evaluation_stopped_by_the_evaluate_tab_worker(qtbot, named, dataset, bundle):
    from engine.data.datasets import scan_dataset
    from engine.inference.predict import Predictor
    from gui.core.settings import Settings
    from gui.tabs.evaluate_tab import EvaluateTab

    hooked: dict[str, Any] = {}

    def hook(worker: Worker) -> None:  # the tab's FunctionWorker, before it starts
        hooked["seen"] = record(worker)
        hooked["hits"] = abort_at(worker.progress, worker, lambda _done, _total: True)
        hooked["blocker"] = qtbot.waitSignals(
            named(worker, "aborted", "done"), order="strict", timeout=TIMEOUT_MS
        )

    runner = StartHook(hook)
    tab = EvaluateTab(Settings(), runner)
    qtbot.addWidget(tab)
    tab.set_model(Predictor(bundle, device="cpu"))
    tab.set_dataset(scan_dataset(dataset))
    tab.start()
    assert [type(w).__name__ for w in runner.started] == ["FunctionWorker"]
    hooked["blocker"].wait()
    assert runner.wait_all(30)
    assert hooked["hits"] == [(0, 16)] and hooked["seen"] == ["aborted", "done"]
    qtbot.waitUntil(lambda: not tab.is_busy(), timeout=10_000)
    assert tab.report is None and tab.summary.text() == "Evaluation stopped."
    assert tab.error.isHidden()


# -- export parity check --------------------------------------------------------------------------


def test_export_parity_check_stopped_by_the_export_dialog_worker(qtbot, named, dataset, bundle, tmp_path):
    from engine.data.datasets import scan_dataset
    from gui.core.settings import Settings
    from gui.dialogs.export_dialog import ExportDialog, val_images

    hooked: dict[str, Any] = {}

    def hook(worker: Worker) -> None:
        hooked["seen"] = record(worker)
        # The export itself reports no progress: the first progress is the parity check's (0, n).
        hooked["hits"] = abort_at(worker.progress, worker, lambda _done, _total: True)
        hooked["blocker"] = qtbot.waitSignals(
            named(worker, "aborted", "done"), order="strict", timeout=TIMEOUT_MS
        )

    runner = StartHook(hook)
    images = val_images(scan_dataset(dataset))
    assert len(images) == 16  # the val/ split: engine.inference.export.parity_images
    dialog = ExportDialog(bundle, images, runner, Settings())
    qtbot.addWidget(dialog)
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("torchscript"))
    out = tmp_path / "exported" / "model.pt"
    dialog.path_edit.setText(str(out))
    dialog.start()
    hooked["blocker"].wait()
    assert runner.wait_all(30)
    assert hooked["hits"] == [(0, 16)] and hooked["seen"] == ["aborted", "done"]
    assert out.is_file()  # the export finished; the parity check after it was stopped
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=10_000)
    assert dialog.export_result is None and dialog.parity is None
    assert dialog.result_label.text() == "Export stopped."


# -- weights download -----------------------------------------------------------------------------

PAYLOAD_SIZE = 8 * 1024 * 1024
SEND_CHUNK = 64 * 1024


def _slow_handler(path: str, payload: bytes, requests: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler serving ``payload`` at ``path`` at about 6 MB/s (so a download takes over a second)."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            if self.path != path:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                for start in range(0, len(payload), SEND_CHUNK):
                    self.wfile.write(payload[start : start + SEND_CHUNK])
                    self.wfile.flush()
                    time.sleep(0.01)
            except OSError:  # the client went away (cancelled)
                pass
            self.close_connection = True

    return Handler


@pytest.fixture
def slow_weights() -> Iterator[tuple[str, list[str]]]:
    """The URL of a large weights file (named ``<name>-<sha256 prefix>.pth`` like torch hub's) on
    127.0.0.1, and the list of paths the server was asked for."""
    payload = random.Random(7).randbytes(PAYLOAD_SIZE)
    path = f"/models/abortnet-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    requests: list[str] = []
    with local_server(_slow_handler(path, payload, requests)) as (_srv, base_url):
        yield f"{base_url}{path}", requests


def test_weights_download_stopped_by_the_weights_dialog_worker(
    qtbot, named, monkeypatch, tmp_path, slow_weights
):
    import torch

    import engine.models.weights as weights_mod
    from engine.models.registry import get_model_info
    from gui.dialogs.weights_dialog import WeightsWorker

    url, requests = slow_weights
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # restored at teardown
    cache = weights_mod.weights_cache_dir()
    assert cache.is_relative_to(tmp_path)
    info = dataclasses.replace(get_model_info("resnet18"), name="abortnet", weights_url=url)
    real_get = weights_mod.get_model_info
    monkeypatch.setattr(
        weights_mod, "get_model_info", lambda name: info if name == "abortnet" else real_get(name)
    )
    assert weights_mod.weights_status("abortnet") == "download"

    worker = WeightsWorker("abortnet")
    seen = record(worker)
    # Stop once bytes have arrived: the partial file exists and must be removed.
    hits = abort_at(worker.yielded, worker, lambda values: values[0] > 0)
    runner = ThreadRunner()
    with qtbot.waitSignals(named(worker, "aborted", "done"), order="strict", timeout=TIMEOUT_MS):
        runner.start(worker, "download-weights")
    assert runner.wait_all(30)
    done, total, _speed = hits[0][0]
    assert 0 < done < total == PAYLOAD_SIZE
    assert seen == ["aborted", "done"]  # not returned: neither a Path nor a WeightsError
    assert len(requests) == 1 and url.endswith(requests[0])
    assert cache.is_dir() and sorted(p.name for p in cache.iterdir()) == []
    assert weights_mod.weights_status("abortnet") == "download"
