"""Self-test mode (``--self-test`` / ``TRANSFER_STUDIO_SELFTEST=1``) from source and in the built app bundle.

The bundle tests run only when ``packaging/build.sh`` has produced ``dist/TransferStudio/TransferStudio``;
they use ``xvfb-run`` when it is installed (a real X server, as on a desktop) and Qt's offscreen platform
otherwise. The source test runs the same self-test through ``python -m gui.shell.launch --self-test``.
Every test that starts a process is marked ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gui.shell import selftest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "dist" / "TransferStudio"
EXECUTABLE = BUNDLE / ("TransferStudio.exe" if sys.platform == "win32" else "TransferStudio")
SELFTEST_LIMIT_S = 300
needs_bundle = pytest.mark.skipif(not EXECUTABLE.is_file(), reason="no app bundle: run packaging/build.sh")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSFER_STUDIO_")}
    env.update(extra)
    return env


def _summary(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary on stdout\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1])


def _check_ok(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstderr:\n{proc.stderr[-4000:]}"
    summary = _summary(proc)
    assert summary["status"] == "ok"
    assert summary["model"] == "efficientnet_lite0" and summary["strategy"] == "feature-extract"
    assert summary["epochs"] == 1
    assert sorted(summary["classes"]) == ["blue", "red"]
    assert summary["predicted"] in summary["classes"]
    assert summary["top_classes"], "predictResults stayed empty"
    return summary


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--self-test"], {}, True),
        (["--self-test", "-platform", "offscreen"], {}, True),
        ([], {}, False),
        ([], {"TRANSFER_STUDIO_SELFTEST": "1"}, True),
        (["-platform", "offscreen"], {"TRANSFER_STUDIO_SELFTEST": "yes"}, True),
        ([], {"TRANSFER_STUDIO_SELFTEST": "0"}, False),
        (["scan", "photos"], {"TRANSFER_STUDIO_SELFTEST": "1"}, False),  # CLI commands stay CLI commands
        (["--version"], {"TRANSFER_STUDIO_SELFTEST": "1"}, False),
    ],
)
def test_when_the_self_test_runs(monkeypatch, argv, env, expected):
    monkeypatch.delenv("TRANSFER_STUDIO_SELFTEST", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert selftest.requested(argv) is expected


def test_synthetic_dataset_layout(tmp_path):
    data, probe, expected = selftest.make_dataset(tmp_path)
    for split, count in (("train", selftest.TRAIN_PER_CLASS), ("val", selftest.VAL_PER_CLASS)):
        for name, _ in selftest.CLASSES:
            assert len(list((data / split / name).glob("*.png"))) == count
    assert probe.is_file() and expected == selftest.CLASSES[0][0]


@pytest.mark.slow
def test_self_test_from_source():
    """``python -m gui.shell.launch --self-test`` trains 1 epoch through the real window and exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "gui.shell.launch", "--self-test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SELFTEST_LIMIT_S + 60,
        env=_env(QT_QPA_PLATFORM="offscreen", TRANSFER_STUDIO_SELFTEST_TIMEOUT=str(SELFTEST_LIMIT_S)),
    )
    summary = _check_ok(proc)
    assert summary["frozen"] is False


@pytest.mark.slow
def test_self_test_reports_a_failure(tmp_path):
    """A hard limit too short to train ends the process with exit code 3 and a message, not a hang."""
    proc = subprocess.run(
        [sys.executable, "-m", "gui.shell.launch", "--self-test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(QT_QPA_PLATFORM="offscreen", TRANSFER_STUDIO_SELFTEST_TIMEOUT="1"),
    )
    assert proc.returncode == selftest.EXIT_TIMEOUT, proc.stderr[-4000:]
    assert "self-test FAILED" in proc.stderr
    assert _summary(proc)["status"] == "timeout"


def _bundle_command(*args: str) -> tuple[list[str], dict[str, str]]:
    if sys.platform.startswith("linux") and shutil.which("xvfb-run"):
        env = _env()
        env.pop("QT_QPA_PLATFORM", None)  # the real xcb platform plugin, on Xvfb
        return ["xvfb-run", "-a", str(EXECUTABLE), *args], env
    return [str(EXECUTABLE), *args], _env(QT_QPA_PLATFORM="offscreen")


@pytest.mark.slow
@needs_bundle
def test_bundle_cli_version():
    """The bundled executable also runs the CLI: ``TransferStudio --version``."""
    from engine import __version__

    proc = subprocess.run(
        [str(EXECUTABLE), "--version"], capture_output=True, text=True, timeout=120, env=_env()
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert __version__ in proc.stdout + proc.stderr


@pytest.mark.slow
@needs_bundle
def test_bundle_self_test():
    """The built app opens its window, trains 1 epoch, classifies an image and exits 0."""
    command, env = _bundle_command("--self-test")
    env["TRANSFER_STUDIO_SELFTEST_TIMEOUT"] = str(SELFTEST_LIMIT_S)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=SELFTEST_LIMIT_S + 60, env=env)
    summary = _check_ok(proc)
    assert summary["frozen"] is True
    from engine import __version__

    assert summary["version"] == __version__
    assert summary["bundle"]["version"] == __version__
