"""timm weights from the Hugging Face Hub: the app's own downloader against a local Hub, resuming,
and importing a ``model.safetensors`` fetched elsewhere.

The server on 127.0.0.1 is laid out like the Hub (``HF_ENDPOINT`` points at it): the model-info API
(``/api/models/<repo>/revision/main?blobs=true``, giving the commit and the file's size and SHA-256)
and ``/<repo>/resolve/<commit>/model.safetensors``, which honours ``Range`` requests. It can drop the
connection after some bytes, ignore ``Range``, or give a wrong SHA-256. The file it serves is a real
safetensors file of the smallest curated model, with random weights. TORCH_HOME is a temporary
folder, so nothing touches the real cache.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from helpers_http import QuietHandler, local_server
from helpers_timm import random_hub_state
from safetensors.torch import load_file, save, save_file

from engine.cli import main
from engine.core.errors import Cancelled
from engine.models import downloads
from engine.models.downloads import PARTIAL_DIR
from engine.models.hub import hub_file_name
from engine.models.weights import (
    WeightsError,
    download_weights,
    import_weights,
    weights_cache_dir,
    weights_status,
    weights_table,
)

NAME = "timm:mobilenetv4_conv_small.e2400_r224_in1k"
REPO = "timm/mobilenetv4_conv_small.e2400_r224_in1k"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CACHE_NAME = hub_file_name(REPO)


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return random_hub_state(NAME, seed=3)


@pytest.fixture(scope="module")
def payload(state) -> bytes:
    return save(state)


@dataclass
class Hub:
    """What the local Hub serves and how it misbehaves; what it was asked."""

    base_url: str
    files: dict[str, bytes] = field(default_factory=dict)  # repo -> model.safetensors
    drop_after: int | None = None  # the next file answer stops after this many bytes (once)
    ignore_range: bool = False
    wrong_sha: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)

    def serve(self, repo: str, data: bytes) -> None:
        self.files[repo] = data


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        hub: Hub = self.server.hub  # type: ignore[attr-defined]
        hub.requests.append((self.path, self.headers.get("Range")))
        for repo, data in hub.files.items():
            if self.path == f"/api/models/{repo}/revision/main?blobs=true":
                self._info(repo, data, hub.wrong_sha)
                return
            if self.path in (f"/{repo}/resolve/{COMMIT}/model.safetensors", f"/models/{repo}"):
                self._file(data, hub)
                return
        self.send_error(404, "Repository Not Found")

    def _info(self, repo: str, data: bytes, wrong_sha: bool) -> None:
        sha = "0" * 64 if wrong_sha else hashlib.sha256(data).hexdigest()
        body = json.dumps(
            {
                "id": repo,
                "sha": COMMIT,
                "siblings": [
                    {"rfilename": "README.md", "size": 10, "blobId": "abc"},
                    {
                        "rfilename": "model.safetensors",
                        "size": len(data),
                        "lfs": {"sha256": sha, "size": len(data)},
                    },
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, data: bytes, hub: Hub) -> None:
        start = 0
        wanted = self.headers.get("Range")
        if wanted and not hub.ignore_range:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if hub.drop_after is not None:  # announce it all, send some, hang up
            body, hub.drop_after = body[: hub.drop_after], None
        try:
            self.wfile.write(body)
        except OSError:  # the client went away (cancel)
            pass
        self.close_connection = True


@pytest.fixture
def hub(monkeypatch, tmp_path) -> Iterator[Hub]:
    """A local Hub at HF_ENDPOINT, and an empty torch hub cache under TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    with local_server(_Handler) as (srv, base_url):
        srv.hub = Hub(base_url)  # type: ignore[attr-defined]
        monkeypatch.setenv("HF_ENDPOINT", base_url)
        yield srv.hub  # type: ignore[attr-defined]


def _everything_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _resolve_requests(hub: Hub) -> list[str | None]:
    return [rng for path, rng in hub.requests if "/resolve/" in path]


# --- download ------------------------------------------------------------------------------------


def test_download_asks_the_api_then_the_commit_reports_progress_and_caches(hub, payload):
    hub.serve(REPO, payload)
    assert weights_status(NAME) == "download"
    calls: list[tuple[int, int, float]] = []
    path = download_weights(NAME, on_progress=lambda *a: calls.append(a))
    assert path == weights_cache_dir() / CACHE_NAME
    assert path.read_bytes() == payload
    assert [p for p, _ in hub.requests] == [
        f"/api/models/{REPO}/revision/main?blobs=true",
        f"/{REPO}/resolve/{COMMIT}/model.safetensors",
    ]
    assert calls[0] == (0, len(payload), 0.0)
    assert calls[-1][:2] == (len(payload), len(payload)) and calls[-1][2] > 0
    assert [done for done, _, _ in calls] == sorted(done for done, _, _ in calls)
    assert _everything_in(weights_cache_dir()) == [CACHE_NAME]
    assert weights_status(NAME) == "cached"
    hub.requests.clear()
    assert download_weights(NAME) == path  # cached: no network at all
    assert hub.requests == []


def test_cancel_leaves_no_partial_file_anywhere(hub, payload):
    hub.serve(REPO, payload)
    stop = threading.Event()
    with pytest.raises(Cancelled):
        download_weights(NAME, on_progress=lambda *a: stop.set(), should_stop=stop.is_set)
    assert _everything_in(weights_cache_dir()) == []
    # A broken download keeps its part; cancelling the resumed one deletes it too.
    hub.drop_after = len(payload) // 3
    with pytest.raises(WeightsError):
        download_weights(NAME)
    assert (weights_cache_dir() / PARTIAL_DIR / f"{CACHE_NAME}.part").is_file()
    stop.clear()
    with pytest.raises(Cancelled):
        download_weights(NAME, on_progress=lambda *a: stop.set(), should_stop=stop.is_set)
    assert _everything_in(weights_cache_dir()) == []


def test_a_broken_download_resumes_where_it_stopped(hub, payload):
    hub.serve(REPO, payload)
    cut = len(payload) // 2 + 12345
    hub.drop_after = cut
    with pytest.raises(WeightsError) as err:
        download_weights(NAME)
    message = str(err.value)
    assert "connection broke" in message and "resume" in message and "\n" not in message
    assert not err.value.offline
    partial = weights_cache_dir() / PARTIAL_DIR / f"{CACHE_NAME}.part"
    note = json.loads((weights_cache_dir() / PARTIAL_DIR / f"{CACHE_NAME}.json").read_text())
    assert partial.read_bytes() == payload[:cut]
    assert note["sha256"] == hashlib.sha256(payload).hexdigest()
    assert note["commit"] == COMMIT and note["size"] == len(payload)
    assert weights_status(NAME) == "download"  # a part does not count as cached

    calls: list[tuple[int, int, float]] = []
    path = download_weights(NAME, on_progress=lambda *a: calls.append(a))
    assert _resolve_requests(hub) == [None, f"bytes={cut}-"]
    assert calls[0] == (cut, len(payload), 0.0) and calls[-1][:2] == (len(payload), len(payload))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert _everything_in(weights_cache_dir()) == [CACHE_NAME]


def test_a_server_that_ignores_range_or_a_part_of_another_file_starts_over(hub, payload):
    hub.serve(REPO, payload)
    hub.drop_after = 1000
    with pytest.raises(WeightsError):
        download_weights(NAME)
    hub.ignore_range = True  # answers 200 with the whole file: the part is thrown away
    assert download_weights(NAME).read_bytes() == payload
    assert _resolve_requests(hub) == [None, "bytes=1000-"]
    # A part whose note is for another SHA-256 is not resumed: no Range request.
    (weights_cache_dir() / CACHE_NAME).unlink()
    folder = weights_cache_dir() / PARTIAL_DIR
    folder.mkdir()
    (folder / f"{CACHE_NAME}.part").write_bytes(b"x" * 5000)
    (folder / f"{CACHE_NAME}.json").write_text(
        json.dumps({"key": "sha256 " + "1" * 64, "url": "u", "size": 9})
    )
    hub.requests.clear()
    hub.ignore_range = False
    assert download_weights(NAME).read_bytes() == payload
    assert _resolve_requests(hub) == [None]
    assert _everything_in(weights_cache_dir()) == [CACHE_NAME]


def test_torchvision_urls_resume_too(hub, tmp_path):
    data = bytes(range(256)) * 8000
    file_name = f"testnet-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    hub.serve(file_name, data)  # served at /models/<file_name>
    url = f"{hub.base_url}/models/{file_name}"
    hub.drop_after = 300_000
    with pytest.raises(WeightsError, match="resume"):
        download_weights(url)
    assert download_weights(url).read_bytes() == data
    assert [rng for _, rng in hub.requests] == [None, "bytes=300000-"]
    assert _everything_in(weights_cache_dir()) == [file_name]


def test_a_wrong_hash_is_refused_and_nothing_is_cached(hub, payload):
    hub.serve(REPO, payload)
    hub.wrong_sha = True
    with pytest.raises(WeightsError) as err:
        download_weights(NAME)
    message = str(err.value)
    assert "corrupt" in message and "0000000000000000" in message and "\n" not in message
    assert _everything_in(weights_cache_dir()) == []


def test_an_unreachable_hub_is_offline_and_says_how_to_import(hub, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    with pytest.raises(WeightsError) as err:
        download_weights(NAME, timeout=5)
    message = str(err.value)
    assert err.value.offline and err.value.file_name == "model.safetensors"
    assert err.value.url == f"{dead}/{REPO}/resolve/main/model.safetensors"
    assert (
        err.value.url in message and f"weights import FILE --model {NAME}" in message and "\n" not in message
    )
    assert _everything_in(weights_cache_dir()) == []


def test_a_missing_repository_is_a_weights_error(hub):
    with pytest.raises(WeightsError, match="404") as err:
        download_weights(NAME)
    assert not err.value.offline
    assert _everything_in(weights_cache_dir()) == []


# --- import --------------------------------------------------------------------------------------


def test_import_of_a_file_fetched_elsewhere_then_the_model_loads_it(hub, state, tmp_path, monkeypatch):
    from engine.models.build import build_model

    source = tmp_path / "model.safetensors"
    save_file(state, str(source))
    path = import_weights(source, NAME)
    assert path == weights_cache_dir() / CACHE_NAME and path.read_bytes() == source.read_bytes()
    assert _everything_in(weights_cache_dir()) == [CACHE_NAME]
    assert weights_status(NAME) == "cached"

    def no_network(*_args, **_kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(downloads.urllib.request, "urlopen", no_network)
    model, _heads = build_model(NAME, 2, pretrained=True)
    assert torch.equal(model.state_dict()["conv_stem.weight"], state["conv_stem.weight"])
    assert torch.equal(model.state_dict()["blocks.1.0.bn1.running_var"], state["blocks.1.0.bn1.running_var"])


def test_import_by_the_cache_name_needs_no_model(hub, state, tmp_path):
    source = tmp_path / CACHE_NAME
    save_file(state, str(source))
    assert import_weights(source) == weights_cache_dir() / CACHE_NAME


def test_import_refuses_files_that_are_not_the_models(hub, state, tmp_path):
    foreign = tmp_path / "model.safetensors"
    save_file({"fc.weight": torch.zeros(3, 4)}, str(foreign))
    with pytest.raises(WeightsError) as err:
        import_weights(foreign, NAME)
    assert f"is not the {NAME} weights" in str(err.value) and "missing" in str(err.value)
    assert "\n" not in str(err.value)
    reshaped = dict(state)
    reshaped["conv_stem.weight"] = torch.zeros(1, 2, 3, 3)
    save_file(reshaped, str(foreign))
    with pytest.raises(WeightsError, match="other shapes"):
        import_weights(foreign, NAME)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        import_weights(junk, NAME)
    with pytest.raises(WeightsError, match="--model"):  # cannot be matched offline without a name
        import_weights(foreign)
    assert _everything_in(weights_cache_dir()) == []


def test_weights_table_lists_timm_models(hub, payload):
    row = {r["name"]: r for r in weights_table()}[NAME]
    assert row["status"] == "download" and row["file"] == CACHE_NAME and row["path"] is None
    assert row["url"] == f"{hub.base_url}/{REPO}/resolve/main/model.safetensors"
    hub.serve(REPO, payload)
    download_weights(NAME)
    row = {r["name"]: r for r in weights_table()}[NAME]
    assert row["status"] == "cached" and row["size"] == len(payload)
    assert row["path"] == str(weights_cache_dir() / CACHE_NAME)


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_weights_download_and_import_of_a_timm_model(hub, payload, state, tmp_path, capsys):
    hub.serve(REPO, payload)
    assert main(["weights", "download", NAME]) == 0
    assert str(weights_cache_dir() / CACHE_NAME) in capsys.readouterr().out
    (weights_cache_dir() / CACHE_NAME).unlink()
    source = tmp_path / "model.safetensors"
    save_file(state, str(source))
    assert main(["weights", "import", str(source), "--model", NAME]) == 0
    assert str(weights_cache_dir() / CACHE_NAME) in capsys.readouterr().out
    assert load_file(str(weights_cache_dir() / CACHE_NAME)).keys() == state.keys()
    assert main(["weights", "import", str(source)]) == 1  # which model? one line asking for --model
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model" in err[0]
    assert main(["weights", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[NAME]["status"] == "cached"


# --- the app's weights dialog ----------------------------------------------------------------------


def test_weights_dialog_downloads_a_timm_model_and_try_again_resumes(hub, payload, qtbot):
    from gui.background.jobs import ThreadRunner
    from gui.dialogs.weights_dialog import WeightsDialog

    hub.serve(REPO, payload)
    hub.drop_after = len(payload) // 2
    runner = ThreadRunner()
    dialog = WeightsDialog(NAME, runner)
    qtbot.addWidget(dialog)
    ready: list[str] = []
    dialog.weightsReady.connect(ready.append)
    dialog.show()
    dialog.start_download()
    qtbot.waitUntil(lambda: not dialog.is_busy() and dialog.retry_button.isVisible(), timeout=20_000)
    assert "resume" in dialog.message.text() and not dialog.offline
    dialog.retry_button.click()
    qtbot.waitUntil(lambda: ready != [], timeout=20_000)
    assert ready == [str(weights_cache_dir() / CACHE_NAME)]
    assert dialog.result() == dialog.DialogCode.Accepted
    assert _resolve_requests(hub) == [None, f"bytes={len(payload) // 2}-"]
    assert runner.wait_all(10)
