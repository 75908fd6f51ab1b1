"""The environment doctor: report contents, plain-words CUDA reasons, folders, text, CLI, no Qt."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision

from engine import doctor
from engine.cli import main
from engine.doctor import environment_report, folder_size, folder_writable, format_environment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """Empty weights cache, feature cache and runs folder under tmp_path."""
    monkeypatch.setattr(torch.hub, "_hub_dir", torch.hub._hub_dir)  # restored at teardown
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "home" / "runs"))
    (tmp_path / "home").mkdir()
    return tmp_path


def test_report_contents(isolated):
    report = environment_report()
    json.dumps(report)  # what `doctor --json` prints
    assert report["packages"]["torch"] == torch.__version__
    assert report["packages"]["torchvision"] == torchvision.__version__
    assert report["packages"]["PySide6"]  # from package metadata, without importing it
    assert report["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    cuda = report["cuda"]
    assert cuda["build"] == torch.version.cuda
    assert cuda["usable"] == torch.cuda.is_available()
    assert (cuda["reason"] is None) == cuda["usable"]
    assert report["cpu"]["torch_threads"] == torch.get_num_threads()
    assert report["device"].startswith("CUDA" if cuda["usable"] else "CPU")
    assert report["offline_model"]["present"] and report["offline_model"]["name"] == "efficientnet_lite0"
    assert report["weights_cache"]["path"] == str(isolated / "hub" / "checkpoints")
    assert report["weights_cache"]["exists"] is False and report["weights_cache"]["cached_models"] == []
    runs = report["runs"]
    assert runs["writable"] and not runs["exists"] and runs["problem"] is None
    assert not (isolated / "home" / "runs").exists()  # probing created nothing
    assert list((isolated / "home").iterdir()) == []


def test_cache_sizes_and_cached_models(isolated):
    checkpoints = isolated / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(b"x" * 1000)
    features = isolated / "cache" / "features" / "sub"
    features.mkdir(parents=True)
    (features / "a.pt").write_bytes(b"y" * 300)
    (features.parent / "b.pt").write_bytes(b"z" * 200)
    report = environment_report()
    assert report["weights_cache"]["size_bytes"] == 1000 and report["weights_cache"]["files"] == 1
    assert report["weights_cache"]["cached_models"] == ["resnet18"]
    assert report["feature_cache"]["size_bytes"] == 500 and report["feature_cache"]["files"] == 2
    assert folder_size(isolated / "nowhere") == (0, 0)
    text = format_environment(report)
    assert "1.0 KB in 1 file(s)" in text and "500 bytes in 2 file(s)" in text
    assert "resnet18" in text


def test_unwritable_runs_folder(isolated, monkeypatch, capsys):
    blocker = isolated / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(blocker / "runs"))
    writable, problem = folder_writable(blocker / "runs")
    assert not writable and "is a file" in problem
    report = environment_report()
    assert report["runs"]["writable"] is False
    assert "NOT writable" in format_environment(report)
    assert main(["doctor"]) == 1
    captured = capsys.readouterr()
    assert "Runs folder" in captured.out
    assert captured.err.strip() == "transfer-studio: problem: the runs folder is not writable"


def test_a_failing_probe_is_reported_not_raised(isolated, monkeypatch):
    import engine.training.features

    def broken() -> Path:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(engine.training.features, "default_cache_dir", broken)
    report = environment_report()
    assert report["feature_cache"] == {"error": "disk on fire"}
    assert "Feature cache" in format_environment(report)
    assert "could not be checked: disk on fire" in format_environment(report)


def test_cuda_reasons_in_plain_words(monkeypatch):
    generic = "no NVIDIA GPU or driver was found"
    assert doctor._refine_reason(generic, "13.0", None, None) == generic
    old = doctor._refine_reason(generic, "13.0", "12.4", None)
    assert (
        "supports CUDA up to 12.4" in old and "needs CUDA 13.0" in old and "update the NVIDIA driver" in old
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "hides every GPU" in doctor._refine_reason(generic, "12.8", "12.8", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    smi = {"driver": "570.1", "gpus": [{"name": "X", "memory_bytes": 1}]}
    assert "cannot use any GPU" in doctor._refine_reason(generic, "12.8", None, smi)


def test_text_for_a_cpu_only_report():
    report = {
        "transfer_studio": "1.2.3",
        "python": {"version": "3.11.0", "executable": "/py"},
        "platform": "Linux",
        "packages": {"torch": "2.6.0+cpu", "PySide6": None},
        "cuda": {
            "build": None,
            "driver_cuda": None,
            "driver": None,
            "usable": False,
            "reason": "this PyTorch build has no CUDA support",
            "gpus": [],
        },  # fmt: skip
        "cpu": {"cores": 4, "torch_threads": 4},
        "device": "CPU, 4 threads",
        "weights_cache": {"path": "/w", "exists": False, "size_bytes": 0, "files": 0, "cached_models": []},
        "feature_cache": {"path": "/f", "exists": True, "size_bytes": 2_500_000, "files": 3},
        "runs": {"path": "/r", "exists": False, "writable": True, "problem": None},
        "offline_model": {"name": "efficientnet_lite0", "present": False, "path": None, "problem": "gone"},
    }
    lines = format_environment(report).splitlines()
    assert lines[0].split() == ["Transfer", "Studio", "1.2.3"]
    text = "\n".join(lines)
    assert any(line.startswith("NVIDIA driver") and line.endswith(" not found") for line in lines)
    for expected in (
        "2.6.0+cpu",
        "not installed",
        "none (CPU-only PyTorch)",
        "no: this PyTorch build has no CUDA support",
        "/w: empty (not created yet)",
        "/f: 2.5 MB in 3 file(s)",
        "/r: writable (created on the first run)",
        "efficientnet_lite0: MISSING: gone",
    ):
        assert expected in text, expected


@pytest.mark.needs_cuda  # skipped without a GPU by tests/conftest.py
def test_gpu_report():
    cuda = environment_report()["cuda"]
    assert cuda["usable"] and cuda["driver_cuda"]
    assert cuda["gpus"] and cuda["gpus"][0]["memory_bytes"] > 1e9
    assert "GPU 0" in format_environment(environment_report())


def test_cli_doctor_json_and_text(isolated, capsys):
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"]["writable"] and report["packages"]["torch"] == torch.__version__
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for label in (
        "Python",
        "torch",
        "torchvision",
        "CUDA build",
        "CUDA usable",
        "Weights cache",
        "Runs folder",
    ):
        assert label in out


@pytest.mark.slow
def test_doctor_runs_without_qt(isolated):
    """PySide6/pyqtgraph versions come from metadata: the doctor never imports Qt."""
    code = textwrap.dedent(
        """
        import json, sys
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6", "gui"):
                    raise ImportError(f"{name} is blocked in this test")
        sys.meta_path.insert(0, Blocker())
        from engine.doctor import environment_report, format_environment
        report = environment_report()
        format_environment(report)
        assert not [m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph", "gui")]
        print(json.dumps(report["packages"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["PySide6"]
