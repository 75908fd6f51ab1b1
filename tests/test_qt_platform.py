"""The Linux start-up check of Qt's xcb platform plugin (``gui/shell/qt_platform.py``) and how the launcher uses it.

Libraries are reported missing by replacing ``ctypes.CDLL`` in the module; no test needs an X server.
The subprocess test is marked ``slow`` (``make test-fast`` leaves it out).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from gui.shell import qt_platform
from gui.shell.qt_platform import XCB_LIBRARIES

ROOT = Path(__file__).resolve().parents[1]
USUALLY_MISSING = ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1")
X11_SESSION = {"DISPLAY": ":0"}


class _FakeCDLL:
    """Stands in for ``ctypes.CDLL``: records each library asked for, fails for those in ``missing``."""

    def __init__(self, missing: tuple[str, ...] = ()) -> None:
        self.missing = set(missing)
        self.loaded: list[str] = []

    def __call__(self, name: str, *args: object, **kwargs: object) -> object:
        self.loaded.append(name)
        if name in self.missing:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return object()


@pytest.fixture
def libraries(monkeypatch: pytest.MonkeyPatch):
    """Install a fake ``ctypes.CDLL``; set ``.missing`` to choose what the check finds missing."""
    fake = _FakeCDLL()
    monkeypatch.setattr(qt_platform.ctypes, "CDLL", fake)
    monkeypatch.delenv(qt_platform.SKIP_ENV, raising=False)
    return fake


@pytest.fixture
def dialogs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record :func:`gui.shell.qt_platform.show_dialog` calls instead of opening a window."""
    shown: list[str] = []
    monkeypatch.setattr(qt_platform, "show_dialog", lambda text, environ=None: shown.append(text) or True)
    return shown


# -- which platform Qt will use ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qt_args", "environ", "expected"),
    [
        ([], {}, "required"),
        ([], {"DISPLAY": ":0"}, "required"),
        ([], {"QT_QPA_PLATFORM": ""}, "required"),
        ([], {"QT_QPA_PLATFORM": "xcb"}, "required"),
        ([], {"QT_QPA_PLATFORM": "xcb:nomitshm"}, "required"),
        ([], {"QT_QPA_PLATFORM": "offscreen"}, "unused"),
        ([], {"QT_QPA_PLATFORM": "minimal"}, "unused"),
        ([], {"QT_QPA_PLATFORM": "wayland"}, "unused"),
        ([], {"QT_QPA_PLATFORM": "eglfs"}, "unused"),
        ([], {"QT_QPA_PLATFORM": "vnc:size=800x600"}, "unused"),
        ([], {"QT_QPA_PLATFORM": "wayland;xcb"}, "fallback"),
        ([], {"QT_QPA_PLATFORM": "xcb;wayland"}, "required"),
        # A Wayland session with no QT_QPA_PLATFORM: Qt picks wayland first.
        ([], {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "fallback"),
        ([], {"XDG_SESSION_TYPE": "wayland"}, "fallback"),
        ([], {"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}, "required"),
        ([], {"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"}, "required"),
        # Qt's -platform argument wins over the environment.
        (["-platform", "offscreen"], {"QT_QPA_PLATFORM": "xcb"}, "unused"),
        (["-platform", "xcb"], {"QT_QPA_PLATFORM": "offscreen"}, "required"),
        (["-platform=offscreen"], {}, "unused"),
        (["-style", "fusion"], {"QT_QPA_PLATFORM": "offscreen"}, "unused"),
    ],
)
def test_xcb_use(qt_args, environ, expected):
    assert qt_platform.xcb_use(qt_args, environ) == expected


# -- the check -------------------------------------------------------------------------------------------


def test_missing_libraries_name_the_packages_of_every_distribution(libraries):
    libraries.missing = set(USUALLY_MISSING)
    text = qt_platform.check([], X11_SESSION, platform="linux")
    assert text is not None
    for soname in USUALLY_MISSING:
        assert soname in text
    lines = text.splitlines()
    expected = {
        "Debian/Ubuntu": "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1",
        "Fedora": "sudo dnf install xcb-util-cursor xcb-util-wm xcb-util-keysyms",
        "Arch": "sudo pacman -S --needed xcb-util-cursor xcb-util-wm xcb-util-keysyms",
        "openSUSE": "sudo zypper install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1",
    }
    for distribution, command in expected.items():
        assert any(
            re.fullmatch(rf"\s+{re.escape(distribution)}:\s+{re.escape(command)}", line) for line in lines
        ), (
            distribution,
            text,
        )
    assert "libxkbcommon" not in text  # only what is missing


def test_packages_shared_by_several_libraries_are_named_once(libraries):
    libraries.missing = {"libxcb-randr.so.0", "libxcb-shm.so.0", "libxcb.so.1"}
    text = qt_platform.check([], X11_SESSION, platform="linux")
    assert text is not None
    assert "sudo dnf install libxcb\n" in text
    assert "sudo apt install libxcb-randr0 libxcb-shm0 libxcb1\n" in text


def test_everything_present_passes(libraries):
    assert qt_platform.check([], X11_SESSION, platform="linux") is None
    assert libraries.loaded == [lib.soname for lib in XCB_LIBRARIES]


@pytest.mark.parametrize(
    ("qt_args", "environ"),
    [
        ([], {"QT_QPA_PLATFORM": "offscreen"}),
        ([], {"QT_QPA_PLATFORM": "minimal"}),
        ([], {"QT_QPA_PLATFORM": "wayland"}),
        (["-platform", "offscreen"], X11_SESSION),
        ([], {**X11_SESSION, qt_platform.SKIP_ENV: "1"}),
    ],
)
def test_no_xcb_no_check(libraries, qt_args, environ):
    libraries.missing = {lib.soname for lib in XCB_LIBRARIES}
    assert qt_platform.check(qt_args, environ, platform="linux") is None
    assert libraries.loaded == []  # nothing was even loaded


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_other_systems_are_not_checked(libraries, platform):
    libraries.missing = {lib.soname for lib in XCB_LIBRARIES}
    assert qt_platform.check([], X11_SESSION, platform=platform) is None
    assert libraries.loaded == []


def test_in_a_wayland_session_missing_xcb_libraries_only_warn(libraries, caplog):
    libraries.missing = set(USUALLY_MISSING)
    with caplog.at_level(logging.WARNING, logger="gui.shell.qt_platform"):
        assert qt_platform.check([], {"WAYLAND_DISPLAY": "wayland-0"}, platform="linux") is None
    assert "libxcb-cursor.so.0" in caplog.text and "libxcb-cursor0" in caplog.text


def test_a_frozen_app_counts_the_libraries_it_ships(libraries, monkeypatch, tmp_path):
    libraries.missing = set(USUALLY_MISSING)
    for soname in USUALLY_MISSING:
        (tmp_path / soname).write_bytes(b"")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert qt_platform.check([], X11_SESSION, platform="linux") is None


def test_the_real_loader_finds_the_c_library():
    """``_loadable`` asks the dynamic linker for real (libc is always there on Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    assert qt_platform._loadable("libc.so.6")
    assert not qt_platform._loadable("libtransfer-studio-does-not-exist.so.0")


def _needed(library: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def test_the_table_covers_what_the_installed_xcb_plugin_links():
    """Every non-Qt, non-C-runtime library that PySide6's xcb plugin needs is in XCB_LIBRARIES."""
    if not sys.platform.startswith("linux") or shutil.which("readelf") is None:
        pytest.skip("needs Linux and readelf")
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    assert spec is not None and spec.submodule_search_locations
    qt = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    plugin = qt / "plugins" / "platforms" / "libqxcb.so"
    qpa = sorted((qt / "lib").glob("libQt6XcbQpa.so*"))
    if not plugin.is_file() or not qpa:
        pytest.skip("this PySide6 has no xcb plugin")
    runtime = re.compile(r"lib(c|m|dl|rt|pthread|stdc\+\+|gcc_s)\.so\.\d+|libQt6\w+\.so\.\d+|ld-linux.*")
    needed = {name for lib in (plugin, qpa[0]) for name in _needed(lib) if not runtime.fullmatch(name)}
    assert needed, "readelf found nothing"
    assert needed <= {lib.soname for lib in XCB_LIBRARIES}, needed - {lib.soname for lib in XCB_LIBRARIES}


def test_the_readme_lists_the_same_packages():
    """README's Troubleshooting table: the commands for the seven xcb-util/xkbcommon libraries."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for _distribution, command in qt_platform.install_commands(XCB_LIBRARIES[:7]):
        assert f"`{command}`" in readme, command


# -- telling the user ------------------------------------------------------------------------------------


def test_report_prints_once_and_shows_a_dialog_when_not_in_a_terminal(capsys, dialogs):
    qt_platform.report("the message")
    err = capsys.readouterr().err
    assert err == "the message\n"
    assert dialogs == ["the message"]  # pytest's captured stderr is not a terminal


def test_report_shows_no_dialog_in_a_terminal(capsys, dialogs, monkeypatch):
    monkeypatch.setattr(qt_platform, "_from_terminal", lambda: True)
    qt_platform.report("the message")
    assert capsys.readouterr().err == "the message\n"
    assert dialogs == []


@pytest.fixture
def tools(monkeypatch: pytest.MonkeyPatch):
    """Pretend zenity, kdialog and notify-send are installed; record the commands run."""
    ran: list[list[str]] = []

    def fake_run(command, **_kwargs):
        ran.append(list(command))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(qt_platform.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(qt_platform.subprocess, "run", fake_run)
    monkeypatch.setattr(qt_platform, "_tk_dialog", lambda text: pytest.fail("tkinter after a working zenity"))
    return ran


def test_the_dialog_uses_zenity(tools):
    assert qt_platform.show_dialog("missing libraries", X11_SESSION)
    assert len(tools) == 1 and tools[0][:2] == ["zenity", "--error"]
    assert "--text=missing libraries" in tools[0]


def test_on_kde_the_dialog_uses_kdialog(tools):
    assert qt_platform.show_dialog("missing libraries", {**X11_SESSION, "XDG_CURRENT_DESKTOP": "KDE"})
    assert tools == [["kdialog", "--title", "Transfer Studio", "--error", "missing libraries"]]


def test_without_a_display_there_is_no_dialog(tools):
    assert not qt_platform.show_dialog("missing libraries", {})
    assert tools == []


def test_without_dialog_tools_it_tries_tkinter_then_notify_send(monkeypatch):
    monkeypatch.setattr(qt_platform.shutil, "which", lambda name: None)
    monkeypatch.setattr(qt_platform, "_tk_dialog", lambda text: False)
    assert not qt_platform.show_dialog("missing libraries", X11_SESSION)
    shown: list[str] = []
    monkeypatch.setattr(qt_platform, "_tk_dialog", lambda text: shown.append(text) or True)
    assert qt_platform.show_dialog("missing libraries", X11_SESSION)
    assert shown == ["missing libraries"]


# -- the launcher ----------------------------------------------------------------------------------------


@pytest.fixture
def x11_without_libraries(monkeypatch: pytest.MonkeyPatch, libraries) -> _FakeCDLL:
    """A Linux X11 session (no QT_QPA_PLATFORM) whose xcb libraries are missing."""
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "TRANSFER_STUDIO_SELFTEST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(sys, "platform", "linux")
    libraries.missing = set(USUALLY_MISSING)
    return libraries


@pytest.fixture
def no_window(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Replace ``gui.shell.app`` so that opening the window only records the call."""
    opened: list[tuple[object, ...]] = []
    monkeypatch.setitem(
        sys.modules,
        "gui.shell.app",
        types.SimpleNamespace(run=lambda qt_args, dataset=None: opened.append((qt_args, dataset)) or 0),
    )
    return opened


@pytest.mark.parametrize("entry", ["main", "main_window"])
def test_the_launcher_refuses_to_open_the_window_without_the_libraries(
    entry, x11_without_libraries, no_window, dialogs, capsys
):
    import gui.shell.launch

    code = getattr(gui.shell.launch, entry)([])
    assert code == qt_platform.EXIT_MISSING_LIBRARIES != 0
    assert no_window == []  # gui.shell.app.run, and so QApplication, was never reached
    err = capsys.readouterr().err
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in err
    assert err.count("Transfer Studio cannot open its window") == 1
    assert len(dialogs) == 1


def test_the_self_test_is_refused_the_same_way(x11_without_libraries, dialogs, monkeypatch, capsys):
    import gui.shell.launch
    import gui.shell.selftest

    monkeypatch.setattr(gui.shell.selftest, "main", lambda args: pytest.fail("the self-test started"))
    assert gui.shell.launch.main(["--self-test"]) == qt_platform.EXIT_MISSING_LIBRARIES
    assert "libxcb-cursor0" in capsys.readouterr().err


def test_the_launcher_opens_the_window_when_the_libraries_are_there(
    x11_without_libraries, no_window, tmp_path
):
    import gui.shell.launch

    x11_without_libraries.missing = set()
    assert gui.shell.launch.main([str(tmp_path)]) == 0
    assert no_window == [([], str(tmp_path))]


def test_offscreen_skips_the_check(x11_without_libraries, no_window, monkeypatch):
    import gui.shell.launch

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert gui.shell.launch.main([]) == 0
    assert gui.shell.launch.main_window(["-platform", "offscreen"]) == 0
    assert x11_without_libraries.loaded == []
    assert no_window == [([], None), (["-platform", "offscreen"], None)]


def test_cli_calls_never_run_the_check(x11_without_libraries, monkeypatch):
    import gui.shell.launch

    monkeypatch.setattr(qt_platform, "check", lambda *a, **k: pytest.fail("checked on a CLI call"))
    with pytest.raises(SystemExit) as exit_info:
        gui.shell.launch.main(["--version"])
    assert exit_info.value.code in (0, None)


def test_the_gui_script_ignores_cli_arguments_and_opens_the_window(
    x11_without_libraries, no_window, monkeypatch
):
    import gui.shell.launch

    x11_without_libraries.missing = set()
    monkeypatch.setattr(sys, "stdout", None)  # pythonw on Windows
    monkeypatch.setattr(sys, "stderr", None)
    assert gui.shell.launch.main_window(["scan", "photos"]) == 0
    assert no_window == [([], None)]
    assert sys.stdout is not None and sys.stderr is not None
    sys.stdout.close()
    sys.stderr.close()


@pytest.mark.slow
def test_the_launcher_process_exits_without_importing_qt(tmp_path):
    """In a fresh process: the message on stderr, exit code 1, and PySide6 never imported."""
    code = textwrap.dedent(
        f"""
        import ctypes, sys
        real = ctypes.CDLL
        def fake(name, *args, **kwargs):
            if name in {USUALLY_MISSING!r}:
                raise OSError(name + ": cannot open shared object file")
            return real(name, *args, **kwargs)
        ctypes.CDLL = fake
        from gui.shell import qt_platform
        qt_platform.show_dialog = lambda text, environ=None: False
        from gui.shell.launch import main
        rc = main([])
        qt = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph"))
        assert not qt, qt
        sys.exit(rc)
        """
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")
    }
    env.update(
        DISPLAY=":0",
        TRANSFER_STUDIO_SETTINGS=str(tmp_path / "s.ini"),
        TRANSFER_STUDIO_RUNS=str(tmp_path / "r"),
    )
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in proc.stderr
    assert "sudo zypper install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in proc.stderr
