"""The app's folders (platformdirs, overrides, runs of earlier versions), its log file and the CLI's bars."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from platformdirs import PlatformDirs
from test_runs import _fake_run

from engine.cli import main
from engine.core import locations, logs
from engine.core.progress import CountBar, bars_wanted

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_logging(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The root logger without the app's handlers, restored afterwards; the log folder in tmp_path."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    for handler in [
        h for h in root.handlers if isinstance(h, (logs._AppFileHandler, logs._AppConsoleHandler))
    ]:
        root.removeHandler(handler)
    monkeypatch.setenv("TRANSFER_STUDIO_LOGS", str(tmp_path / "logs"))
    yield tmp_path / "logs"
    for handler in root.handlers[:]:
        if handler not in saved[0]:
            root.removeHandler(handler)
            handler.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


# -- folders ----------------------------------------------------------------------------------------


def test_default_folders_are_the_platforms(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (locations.DATA_ENV, locations.RUNS_ENV, locations.CACHE_ENV, locations.LOGS_ENV):
        monkeypatch.delenv(name, raising=False)
    dirs = PlatformDirs("transfer-studio", appauthor=False)
    assert locations.app_data_dir() == dirs.user_data_path
    assert locations.default_runs_root() == dirs.user_data_path / "runs"
    assert locations.cache_root() == dirs.user_cache_path
    assert locations.log_dir() == dirs.user_log_path
    from engine.training.features import default_cache_dir

    assert default_cache_dir() == dirs.user_cache_path / "features"


def test_environment_variables_override_every_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(locations.RUNS_ENV, str(tmp_path / "r"))
    monkeypatch.setenv(locations.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.setenv(locations.LOGS_ENV, str(tmp_path / "l"))
    assert locations.default_runs_root() == tmp_path / "r"
    assert locations.cache_root() == tmp_path / "c"
    assert logs.log_file() == tmp_path / "l" / logs.LOG_FILE_NAME


def test_runs_of_earlier_versions_are_still_listed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = tmp_path / "home" / "TransferStudio" / "runs"
    monkeypatch.setattr(locations, "legacy_runs_root", lambda: legacy)
    monkeypatch.setenv(locations.RUNS_ENV, str(tmp_path / "new"))
    assert locations.runs_roots() == [tmp_path / "new"]  # no old folder: nothing extra
    _fake_run(legacy / "20250101-000000-old-run")
    _fake_run(tmp_path / "new" / "20260101-000000-new-run")
    assert locations.runs_roots() == [tmp_path / "new", legacy]
    assert locations.runs_roots(legacy) == [legacy]  # never listed twice
    assert main(["runs", "--json"]) == 0
    names = {Path(r["path"]).name for r in json.loads(capsys.readouterr().out)}
    assert names == {"20250101-000000-old-run", "20260101-000000-new-run"}


# -- the log file -----------------------------------------------------------------------------------


def test_log_file_is_written_rotated_and_set_up_once(fresh_logging: Path) -> None:
    path = logs.set_up_logging(logging.WARNING)
    assert path == fresh_logging / logs.LOG_FILE_NAME
    assert logs.set_up_logging(logging.WARNING) == path
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logs._AppFileHandler)]
    assert len(handlers) == 1
    assert handlers[0].maxBytes == logs.MAX_BYTES and handlers[0].backupCount == logs.BACKUP_COUNT
    logging.getLogger("engine.test").info("an info line for the file")
    logging.getLogger("engine.test").debug("a debug line, not kept")
    handlers[0].flush()
    text = path.read_text(encoding="utf-8")
    assert "an info line for the file" in text and "debug line" not in text


def test_unwritable_log_folder_never_stops_the_app(
    fresh_logging: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = fresh_logging.parent / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TRANSFER_STUDIO_LOGS", str(blocker / "logs"))
    assert logs.set_up_logging(logging.WARNING) is None


def test_an_exception_that_ends_a_thread_is_logged_with_its_traceback(fresh_logging: Path) -> None:
    import threading

    path = logs.set_up_logging(logging.CRITICAL)

    def fail() -> None:
        raise ValueError("boom in a thread")

    thread = threading.Thread(target=fail, name="doomed")
    thread.start()
    thread.join()
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text(encoding="utf-8")
    assert "unhandled exception in thread doomed" in text and "ValueError: boom in a thread" in text


def test_cli_writes_the_log_and_doctor_names_it(tmp_path: Path) -> None:
    env = os.environ | {
        "TRANSFER_STUDIO_LOGS": str(tmp_path / "logs"),
        "TRANSFER_STUDIO_RUNS": str(tmp_path / "r"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    log_path = tmp_path / "logs" / logs.LOG_FILE_NAME
    assert report["log"]["path"] == str(log_path) and report["log"]["writable"]
    assert "doctor" in log_path.read_text(encoding="utf-8")  # the CLI logged its own start
    text = subprocess.run(
        [sys.executable, "-m", "engine.cli", "doctor"], capture_output=True, text=True, env=env, cwd=ROOT
    ).stdout
    assert "Log file" in text and str(log_path) in text


# -- progress bars ----------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal_and_never_with_json() -> None:
    assert bars_wanted(_Terminal())
    assert not bars_wanted(_Terminal(), json_output=True)
    assert not bars_wanted(io.StringIO())


def test_count_bar_draws_on_a_terminal_and_stays_silent_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with CountBar("checking photos", unit="file") as bar:
        for done in range(0, 11):
            bar(done, 10)
    assert "checking photos" in terminal.getvalue() and "/10 " in terminal.getvalue()  # drawn (rate-limited)
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    with CountBar("checking photos", enabled=False) as bar:
        bar(5, 10)
    assert quiet.getvalue() == ""


def test_cli_scan_is_quiet_when_piped(tmp_path: Path) -> None:
    from helpers_images import make_image_folder

    root = make_image_folder(tmp_path / "ds", {"a": 3, "b": 3})
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "scan", str(root), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0 and "\r" not in done.stderr and "\r" not in done.stdout
    assert json.loads(done.stdout)["totals"] == {"train": 6, "val": 6}
