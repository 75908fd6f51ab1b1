"""The ``transfer-studio`` entry point: window vs CLI dispatch, no Qt on the CLI path, QApplication reuse.

Tests that start a Python process are marked ``slow`` (``make test-fast`` leaves them out).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from engine.core.commands import COMMANDS
from gui.shell.launch import split_arguments

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ([], [])),
        (["-platform", "offscreen"], (["-platform", "offscreen"], [])),
        (["-style=fusion", "-reverse"], (["-style=fusion", "-reverse"], [])),
        (["--version"], None),
        (["-h"], None),
        (["scan", "photos"], None),
        (["models"], None),
        (["train", "data", "--epochs", "2"], None),
        (["predict", "model.pt", "x.jpg"], None),
        (["doctor"], None),
        (["weights", "list"], None),
        (["--bogus"], None),
        (["not-a-folder-or-command"], None),
    ],
)
def test_split_arguments(argv, expected):
    assert split_arguments(argv) == expected


def test_a_dataset_folder_argument_opens_the_window(tmp_path):
    assert split_arguments([str(tmp_path)]) == ([], [str(tmp_path)])


def test_a_command_wins_over_a_folder_of_the_same_name(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    assert split_arguments(["models"]) is None


def test_self_test_flag_runs_the_self_test(monkeypatch):
    import gui.shell.launch
    import gui.shell.selftest

    calls: list[list[str]] = []
    monkeypatch.setattr(gui.shell.selftest, "main", lambda args: calls.append(list(args)) or 0)
    assert gui.shell.launch.main(["--self-test"]) == 0
    assert calls == [["--self-test"]]


def _run_python(code: str, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def no_window_no_self_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process launcher tests: opening the window or starting the self-test fails at once."""
    import gui.shell.selftest

    def refuse(*_args: object, **_kwargs: object) -> int:
        raise AssertionError("a CLI call started the window or the self-test")

    monkeypatch.setattr(gui.shell.selftest, "main", refuse)
    monkeypatch.setitem(sys.modules, "gui.shell.app", types.SimpleNamespace(run=refuse))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_reaches_the_cli_in_self_test_mode(
    command, monkeypatch, capsys, no_window_no_self_test
):
    """``TRANSFER_STUDIO_SELFTEST=1`` turns a window launch into the self-test, never a CLI call."""
    import gui.shell.launch

    monkeypatch.setenv("TRANSFER_STUDIO_SELFTEST", "1")
    with pytest.raises(SystemExit) as exit_info:
        gui.shell.launch.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: transfer-studio {command} "), out[:200]


@pytest.mark.slow
def test_console_script_runs_the_cli_in_self_test_mode(tmp_path):
    """The installed ``transfer-studio`` script with TRANSFER_STUDIO_SELFTEST=1 still answers ``evaluate --help``."""
    script = Path(sys.executable).with_name("transfer-studio")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "gui.shell.launch"]
    proc = subprocess.run(
        [*command, "evaluate", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "TRANSFER_STUDIO_SELFTEST": "1",
            "TRANSFER_STUDIO_SELFTEST_TIMEOUT": "20",  # a wrongly started self-test ends quickly
            "QT_QPA_PLATFORM": "offscreen",
            "TRANSFER_STUDIO_SETTINGS": str(tmp_path / "settings.ini"),
            "TRANSFER_STUDIO_RUNS": str(tmp_path / "runs"),
        },
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.startswith("usage: transfer-studio evaluate "), proc.stdout[:400]
    assert "BUNDLE" in proc.stdout and "DATA" in proc.stdout and "--top-k" in proc.stdout
    assert "Traceback" not in proc.stderr and '"status"' not in proc.stdout  # no self-test summary


@pytest.mark.slow
def test_cli_subcommands_never_import_qt(tmp_path):
    from helpers_images import make_image_folder

    from engine import __version__

    data = make_image_folder(tmp_path / "data", {"alpha": 3, "beta": 4})
    proc = _run_python(
        f"""
        import sys
        from gui.shell.launch import main
        try:
            main(["--version"])
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        else:
            raise AssertionError("--version did not exit")
        rc = main(["scan", {str(data)!r}])
        qt = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph"))
        assert not qt, qt
        sys.exit(rc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"transfer-studio {__version__}"
    assert any(re.fullmatch(r"\s+alpha\s+3\s+3", line) for line in lines), proc.stdout
    assert any(re.fullmatch(r"\s+beta\s+4\s+4", line) for line in lines), proc.stdout


@pytest.mark.slow
def test_cli_errors_come_back_as_exit_codes(tmp_path):
    proc = _run_python(
        f"""
        import sys
        from gui.shell.launch import main
        sys.exit(main(["scan", {str(tmp_path / "missing")!r}]))
        """
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "does not exist" in proc.stderr


@pytest.mark.slow
def test_importing_the_launcher_is_light():
    proc = _run_python(
        """
        import sys
        import gui.shell.launch
        heavy = ("PySide6", "shiboken6", "pyqtgraph", "torch", "torchvision", "numpy", "PIL")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        assert not loaded, loaded
        # The launcher reads the command table (standard library only) and nothing else of the engine.
        engine = sorted(m for m in sys.modules if m.split(".")[0] == "engine")
        assert engine == ["engine", "engine.core", "engine.core.commands"], engine
        """
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_window_process_shows_and_quits_by_itself(tmp_path):
    probe = tmp_path / "shown.txt"
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "gui.shell.launch"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "QT_QPA_PLATFORM": "offscreen",
            "TRANSFER_STUDIO_STARTUP_PROBE": str(probe),
            "TRANSFER_STUDIO_SETTINGS": str(tmp_path / "settings.ini"),
            "TRANSFER_STUDIO_RUNS": str(tmp_path / "runs"),
        },
    )
    assert proc.returncode == 0, proc.stderr
    shown_at = float(probe.read_text())
    assert started < shown_at < time.time()
    assert "Traceback" not in proc.stderr


def test_run_reuses_the_existing_qapplication(qtbot, qapp, monkeypatch):
    """Called while an event loop runs (as from IPython), run() shows the window and returns."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import gui.shell.app

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    previous_sigint = signal.getsignal(signal.SIGINT)
    result: list[int] = []
    try:
        QTimer.singleShot(0, lambda: result.append(gui.shell.app.run([])))
        qtbot.waitUntil(lambda: result != [], timeout=60_000)
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
    assert result == [0]
    assert QApplication.instance() is qapp
    window = gui.shell.app._windows.pop()
    assert window.objectName() == "mainWindow" and window.isVisible()
    window.close()
    assert not window.runner.is_busy()
