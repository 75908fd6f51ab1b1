"""Before the window opens on Linux: can Qt's ``xcb`` platform plugin load? If not, say what to install.

PySide6's wheels carry Qt, but not the X11 libraries that its ``xcb`` plugin (``libqxcb.so`` and
``libQt6XcbQpa.so.6``) links against. A fresh Debian or Ubuntu desktop typically lacks
libxcb-cursor0, libxcb-icccm4 and libxcb-keysyms1, and Qt then aborts with "could not load the Qt
platform plugin "xcb"", a message that names no package. :func:`check` loads each library in
:data:`XCB_LIBRARIES` (the plugin's dependencies; ``tests/test_qt_platform.py`` compares the table with
the installed plugin) and returns one message that names the packages to install on Debian/Ubuntu,
Fedora, Arch and openSUSE. :func:`report` prints it, logs it, and shows it in a dialog when the app was
not started from a terminal; the launcher then exits with :data:`EXIT_MISSING_LIBRARIES`.

Which platform Qt will use decides what happens:

* Qt's ``-platform NAME`` argument, else ``$QT_QPA_PLATFORM``, else the default, which is ``wayland``
  in a Wayland session (``$WAYLAND_DISPLAY`` set, or ``$XDG_SESSION_TYPE=wayland``) and ``xcb``
  otherwise;
* xcb first (``xcb``, the default outside Wayland): missing libraries stop the launch;
* xcb only as a fallback (``wayland;xcb``, the default in a Wayland session): missing libraries are
  logged as a warning and the window opens (Qt uses Wayland, which does not need them);
* anything else (``offscreen``, ``minimal``, ``wayland``, ``eglfs``, ``vnc``, …), or not Linux: no check.

``TRANSFER_STUDIO_SKIP_PLATFORM_CHECK=1`` turns the check off. Standard library only: importing this
module never imports Qt.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

SKIP_ENV = "TRANSFER_STUDIO_SKIP_PLATFORM_CHECK"
#: The launcher's exit code when the window cannot open for lack of system libraries.
EXIT_MISSING_LIBRARIES = 1
TITLE = "Transfer Studio"
#: How long a dialog may stay open before the process gives up waiting for it.
DIALOG_TIMEOUT_S = 3600.0

XcbUse = Literal["required", "fallback", "unused"]


@dataclass(frozen=True)
class Library:
    """A shared library the xcb plugin links against, and the package that ships it per distribution."""

    soname: str
    apt: str  # Debian, Ubuntu, Mint
    dnf: str  # Fedora, RHEL
    pacman: str  # Arch, Manjaro
    zypper: str  # openSUSE


#: Every library outside PySide6 that ``libqxcb.so`` and ``libQt6XcbQpa.so.6`` need (their ELF
#: ``NEEDED`` entries, less Qt's own and the C/C++ runtime), the usually missing ones first.
XCB_LIBRARIES: tuple[Library, ...] = (
    Library("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor", "libxcb-cursor0"),
    Library("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm", "xcb-util-wm", "libxcb-icccm4"),
    Library("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms", "libxcb-keysyms1"),
    Library("libxcb-image.so.0", "libxcb-image0", "xcb-util-image", "xcb-util-image", "libxcb-image0"),
    Library("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil", "libxcb-render-util0"),
    Library("libxcb-util.so.1", "libxcb-util1", "xcb-util", "xcb-util", "libxcb-util1"),
    Library("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11", "libxkbcommon-x11-0"),
    Library("libxkbcommon.so.0", "libxkbcommon0", "libxkbcommon", "libxkbcommon", "libxkbcommon0"),
    Library("libxcb-randr.so.0", "libxcb-randr0", "libxcb", "libxcb", "libxcb-randr0"),
    Library("libxcb-render.so.0", "libxcb-render0", "libxcb", "libxcb", "libxcb-render0"),
    Library("libxcb-shape.so.0", "libxcb-shape0", "libxcb", "libxcb", "libxcb-shape0"),
    Library("libxcb-shm.so.0", "libxcb-shm0", "libxcb", "libxcb", "libxcb-shm0"),
    Library("libxcb-sync.so.1", "libxcb-sync1", "libxcb", "libxcb", "libxcb-sync1"),
    Library("libxcb-xfixes.so.0", "libxcb-xfixes0", "libxcb", "libxcb", "libxcb-xfixes0"),
    Library("libxcb-xkb.so.1", "libxcb-xkb1", "libxcb", "libxcb", "libxcb-xkb1"),
    Library("libxcb.so.1", "libxcb1", "libxcb", "libxcb", "libxcb1"),
    Library("libX11-xcb.so.1", "libx11-xcb1", "libX11-xcb", "libx11", "libX11-xcb1"),
    Library("libX11.so.6", "libx11-6", "libX11", "libx11", "libX11-6"),
    Library("libGL.so.1", "libgl1", "libglvnd-glx", "libglvnd", "libGL1"),
    Library("libglib-2.0.so.0", "libglib2.0-0", "glib2", "glib2", "libglib-2_0-0"),
    Library("libgthread-2.0.so.0", "libglib2.0-0", "glib2", "glib2", "libgthread-2_0-0"),
)  # fmt: skip

#: (distribution, install command, :class:`Library` field with its package names)
DISTRIBUTIONS: tuple[tuple[str, str, str], ...] = (
    ("Debian/Ubuntu", "sudo apt install", "apt"),
    ("Fedora", "sudo dnf install", "dnf"),
    ("Arch", "sudo pacman -S --needed", "pacman"),
    ("openSUSE", "sudo zypper install", "zypper"),
)


# -- which platform Qt will use ------------------------------------------------------------------------


def requested_platform(qt_args: Sequence[str], environ: Mapping[str, str]) -> str:
    """The platform list Qt will read: ``-platform NAME`` wins over ``$QT_QPA_PLATFORM``; "" for neither."""
    args = list(qt_args)
    for i, arg in enumerate(args):
        option, _, value = arg.partition("=")
        if option.lstrip("-") != "platform":
            continue
        if value:
            return value.strip()
        if i + 1 < len(args):
            return args[i + 1].strip()
    return environ.get("QT_QPA_PLATFORM", "").strip()


def xcb_use(qt_args: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> XcbUse:
    """How Qt will use the xcb plugin: tried first, only as a fallback, or not at all."""
    environ = os.environ if environ is None else environ
    value = requested_platform(qt_args, environ)
    # "wayland;xcb" is a list tried in order; "xcb:option=value" passes options to the plugin.
    names = [part.split(":", 1)[0].strip().lower() for part in value.split(";") if part.strip()]
    if not names:
        wayland = environ.get("WAYLAND_DISPLAY") or environ.get("XDG_SESSION_TYPE", "").lower() == "wayland"
        names = ["wayland", "xcb"] if wayland else ["xcb"]
    if names[0] == "xcb":
        return "required"
    return "fallback" if "xcb" in names else "unused"


# -- which libraries are missing -----------------------------------------------------------------------


def _bundled(soname: str) -> bool:
    """True when a frozen app (PyInstaller) ships the library next to its own."""
    base = getattr(sys, "_MEIPASS", None)
    return bool(getattr(sys, "frozen", False) and base and (Path(base) / soname).is_file())


def _loadable(soname: str) -> bool:
    """True when the dynamic linker finds ``soname`` the way it will for Qt (ld.so.cache, LD_LIBRARY_PATH)."""
    if _bundled(soname):
        return True
    try:
        ctypes.CDLL(soname)
    except OSError as exc:
        logger.debug("cannot load %s: %s", soname, exc)
        return False
    return True


def missing_libraries(libraries: Sequence[Library] = XCB_LIBRARIES) -> list[Library]:
    """The libraries of ``libraries`` that cannot be loaded, in table order."""
    return [library for library in libraries if not _loadable(library.soname)]


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def install_commands(missing: Sequence[Library]) -> list[tuple[str, str]]:
    """``(distribution, command line)`` that installs the packages holding ``missing``."""
    return [
        (distribution, f"{command} {' '.join(_unique([getattr(lib, field) for lib in missing]))}")
        for distribution, command, field in DISTRIBUTIONS
    ]


def message(missing: Sequence[Library]) -> str:
    """The one message that says what is missing and how to install it."""
    width = max(len(distribution) for distribution, _, _ in DISTRIBUTIONS) + 1
    commands = "\n".join(f"  {d + ':':<{width}} {line}" for d, line in install_commands(missing))
    return (
        "Transfer Studio cannot open its window: Qt's X11 platform plugin (xcb) needs system "
        "libraries that are not installed here:\n"
        f"  {', '.join(lib.soname for lib in missing)}\n"
        "Install them with your distribution's package manager, then start Transfer Studio again:\n"
        f"{commands}\n"
        "(The command line works without them: transfer-studio --help.)"
    )


def check(
    qt_args: Sequence[str] = (), environ: Mapping[str, str] | None = None, platform: str | None = None
) -> str | None:
    """The message to show when the window cannot open for lack of libraries; None when it can try.

    Loads the libraries only on Linux and only when Qt will use xcb (see the module docstring).
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux") or environ.get(SKIP_ENV, "").strip() not in ("", "0"):
        return None
    use = xcb_use(qt_args, environ)
    if use == "unused":
        return None
    missing = missing_libraries()
    if not missing:
        return None
    if use == "fallback":
        logger.warning(
            "Qt's xcb platform plugin could not load (missing %s); the window should open through "
            "Wayland. Install them if it does not: %s",
            ", ".join(lib.soname for lib in missing),
            "; ".join(f"{d}: {line}" for d, line in install_commands(missing)),
        )
        return None
    return message(missing)


# -- telling the user ----------------------------------------------------------------------------------


def _from_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _child_environment() -> dict[str, str]:
    """The environment for a desktop tool: a PyInstaller bundle's library path must not leak into it."""
    env = dict(os.environ)
    if getattr(sys, "frozen", False):
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is None:
            env.pop("LD_LIBRARY_PATH", None)
        else:
            env["LD_LIBRARY_PATH"] = original
    return env


def _run_dialog(command: list[str], timeout: float | None = DIALOG_TIMEOUT_S) -> bool:
    """Run a dialog tool; True when it showed its window (so no second dialog follows)."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, check=False, timeout=timeout, capture_output=True, env=_child_environment()
        )
    except subprocess.TimeoutExpired:
        return True  # it was on screen all that time
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("%s failed: %s", command[0], exc)
        return False
    # zenity and kdialog exit 1 both when the user closes the window (Escape, the title bar's X) and
    # when they cannot open one (no display): only the first keeps them running for a while.
    return done.returncode == 0 or (done.returncode == 1 and time.monotonic() - started >= 1.0)


def _tk_dialog(text: str) -> bool:
    try:
        import tkinter
        from tkinter import messagebox

        root = tkinter.Tk()
        try:
            root.withdraw()
            messagebox.showerror(TITLE, text, parent=root)
        finally:
            root.destroy()
    except Exception as exc:  # noqa: BLE001 - no Tk, no display: the message is on stderr anyway
        logger.debug("tkinter dialog failed: %s", exc)
        return False
    return True


def show_dialog(text: str, environ: Mapping[str, str] | None = None) -> bool:
    """Show ``text`` in an error dialog with whatever the desktop has; True when one was shown.

    Tries kdialog first on KDE, then zenity, then tkinter (X11 only), then a notify-send notification.
    """
    environ = os.environ if environ is None else environ
    x11 = bool(environ.get("DISPLAY"))
    if not (x11 or environ.get("WAYLAND_DISPLAY")):
        return False
    kde = "kde" in environ.get("XDG_CURRENT_DESKTOP", "").lower()
    dialogs: list[tuple[str, list[str]]] = [
        ("zenity", ["zenity", "--error", f"--title={TITLE}", "--no-markup", "--width=640", f"--text={text}"]),
        ("kdialog", ["kdialog", "--title", TITLE, "--error", text]),
    ]
    if kde:
        dialogs.reverse()
    for program, command in dialogs:
        if shutil.which(program) and _run_dialog(command):
            return True
    if x11 and _tk_dialog(text):
        return True
    notify = ["notify-send", "-u", "critical", "-i", "dialog-error", f"{TITLE} cannot open its window", text]
    return bool(shutil.which("notify-send")) and _run_dialog(notify, timeout=10)


def report(text: str, environ: Mapping[str, str] | None = None) -> None:
    """Print ``text`` to stderr, log it, and show it in a dialog unless started from a terminal."""
    if sys.stderr is not None:
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    # Only through handlers someone configured (a log file): Python's last-resort handler would print
    # the same text to stderr a second time.
    if logging.getLogger().handlers:
        logger.error("%s", text)
    if not _from_terminal():
        show_dialog(text, environ)
