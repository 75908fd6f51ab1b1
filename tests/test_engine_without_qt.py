"""engine/ must import (and the CLI must run) in a process where Qt and gui cannot be imported.

Every test starts a Python process: the module is marked ``slow``.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = textwrap.dedent(
    """
    import sys
    BLOCKED = ("PySide6", "pyqtgraph", "shiboken6", "gui")

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_blocker_really_blocks_qt():
    proc = _run("import PySide6")
    assert proc.returncode != 0
    assert "blocked" in proc.stderr


def test_every_engine_module_imports_without_qt():
    proc = _run(
        """
        import importlib, json, pkgutil
        import engine
        names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
        for name in names:
            importlib.import_module(name)
        loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        assert not loaded, loaded
        print(json.dumps(names))
        """
    )
    assert proc.returncode == 0, proc.stderr
    on_disk = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "engine").rglob("*.py")
    }
    imported = set(json.loads(proc.stdout))
    assert imported == on_disk - {"engine"}  # every module of every sub-package, nothing missed


def test_cli_runs_without_qt():
    proc = _run(
        """
        from engine.cli import main
        sys.exit(main(["models", "--json"]))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "efficientnet_lite0" in proc.stdout
