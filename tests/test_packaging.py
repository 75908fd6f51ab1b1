"""Packaging: the entry points, the icons as package data, the .desktop file, the PySide6 pin, the spec.

The wheel build starts pip in a subprocess and is marked ``slow`` (``make test-fast`` leaves it out).
"""

from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "resources"
#: What the app and the desktop integration need at run time, relative to the resources package.
RESOURCE_FILES = (
    "transfer-studio.svg",
    "transfer-studio.png",
    "transfer-studio.desktop",
    "transfer-studio.ico",
    "transfer-studio.icns",
    "icons/hicolor/scalable/apps/transfer-studio.svg",
    *(f"icons/hicolor/{n}x{n}/apps/transfer-studio.png" for n in (16, 24, 32, 48, 64, 128, 256, 512)),
)


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(RESOURCES / "transfer-studio.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def test_entry_points():
    project = _pyproject()["project"]
    assert project["scripts"] == {"transfer-studio": "gui.shell.launch:main"}
    assert project["gui-scripts"] == {"transfer-studio-gui": "gui.shell.launch:main_window"}
    import gui.shell.launch

    assert callable(gui.shell.launch.main) and callable(gui.shell.launch.main_window)


def test_the_desktop_file_runs_the_gui_script():
    entry = _desktop_entry()
    gui_scripts = _pyproject()["project"]["gui-scripts"]
    assert entry["Exec"].split()[0] in gui_scripts
    assert entry["TryExec"] in gui_scripts
    assert entry["Icon"] == "transfer-studio" and entry["Terminal"] == "false"


def test_the_pyside6_cap_applies_only_where_6_12_breaks():
    """6.12.0 aborts on Python < 3.12 only (gui/core/qt_compat.py): the cap carries that marker, for
    PySide6-Essentials and for PySide6-Addons (Qt Multimedia: the camera), which must match it."""
    requirements = pytest.importorskip("packaging.requirements")
    pins = [
        requirements.Requirement(line)
        for line in _pyproject()["project"]["dependencies"]
        if line.lower().startswith("pyside6")
    ]
    assert sorted({pin.name.lower() for pin in pins}) == ["pyside6-addons", "pyside6-essentials"]
    assert len(pins) == 4, pins
    for name in ("pyside6-addons", "pyside6-essentials"):
        for python, ok_612 in (("3.10", False), ("3.11", False), ("3.12", True), ("3.13", True)):
            active = [
                pin
                for pin in pins
                if pin.name.lower() == name
                and pin.marker is not None
                and pin.marker.evaluate({"python_version": python})
            ]
            assert len(active) == 1, (name, python, active)
            assert active[0].specifier.contains("6.11.3")
            assert active[0].specifier.contains("6.12.0") is ok_612, (name, python, active[0])
            assert not active[0].specifier.contains("6.5.0")


def test_the_resources_package_holds_the_icons():
    package = files("resources")
    for name in RESOURCE_FILES:
        assert package.joinpath(name).is_file(), name


def test_the_app_icon_is_not_null(qapp):
    from gui.shell.icon import app_icon, resource

    icon = app_icon()
    assert not icon.isNull()
    assert not icon.pixmap(32, 32).isNull()
    assert resource("transfer-studio.svg") is not None
    assert resource("no-such-file.png") is None


def test_without_the_resources_package_the_icon_is_empty(qapp, monkeypatch):
    import gui.shell.icon

    monkeypatch.setattr(gui.shell.icon, "PACKAGE", "transfer_studio_no_such_package")
    assert gui.shell.icon.resource("transfer-studio.svg") is None
    gui.shell.icon.app_icon.cache_clear()
    try:
        assert gui.shell.icon.app_icon().isNull()
    finally:
        gui.shell.icon.app_icon.cache_clear()


def _spec_function(name: str, **namespace: object):
    """One function of packaging/transfer_studio.spec, which needs PyInstaller to run as a whole."""
    tree = ast.parse((ROOT / "packaging" / "transfer_studio.spec").read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    scope: dict[str, object] = {"Path": Path, **namespace}
    exec(compile(ast.Module(body=[node], type_ignores=[]), "transfer_studio.spec", "exec"), scope)
    return scope[name]


def test_the_bundle_spec_collects_the_resources():
    collected = _spec_function("_resource_files", RESOURCES=RESOURCES)()
    destinations = {(Path(dest) / Path(src).name).as_posix() for src, dest in collected}
    assert destinations == {f"resources/{name}" for name in RESOURCE_FILES} | {
        "resources/transfer-studio-64.png"
    }
    assert all(Path(src).is_file() for src, _ in collected)
    # build.sh points the bundle's .desktop launcher at this icon.
    build_sh = (ROOT / "packaging" / "build.sh").read_text(encoding="utf-8")
    assert "_internal/resources/icons/hicolor/256x256/apps/transfer-studio.png" in build_sh
    spec = (ROOT / "packaging" / "transfer_studio.spec").read_text(encoding="utf-8")
    assert '"resources",  # looked up by name' in spec  # the package itself, as a hidden import
    for icon in ("transfer-studio.ico", "transfer-studio.icns", "transfer-studio.png"):
        assert (RESOURCES / icon).is_file()


@pytest.mark.slow
def test_the_wheel_holds_the_resources_and_the_gui_script(tmp_path):
    """Build a wheel from a copy of the sources (a stale build/ folder in the tree cannot leak in)."""
    pytest.importorskip("setuptools", minversion="68")  # the build backend, used without isolation
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("engine", "gui", "resources"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for path in (ROOT / "pyproject.toml", ROOT / "README.md", *ROOT.glob("LICENSE*")):
        shutil.copy2(path, source / path.name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    (wheel,) = (tmp_path / "dist").glob("transfer_studio-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points_txt = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = configparser.ConfigParser(interpolation=None)
        entry_points.read_string(archive.read(entry_points_txt).decode())
        desktop = archive.read("resources/transfer-studio.desktop").decode()
    assert "resources/__init__.py" in names
    for name in RESOURCE_FILES:
        assert f"resources/{name}" in names, name
    assert "gui/shell/qt_platform.py" in names and "gui/shell/icon.py" in names
    assert dict(entry_points["gui_scripts"]) == {"transfer-studio-gui": "gui.shell.launch:main_window"}
    assert dict(entry_points["console_scripts"]) == {"transfer-studio": "gui.shell.launch:main"}
    assert "\nExec=transfer-studio-gui\n" in desktop
