"""The allocator tuning: on glibc it takes effect once; elsewhere, or when the user chose, it stays off."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

CHILD = """
import json, sys
from engine.core import allocator
first = allocator.tune_allocator()
print(json.dumps({"first": first, "again": allocator.tune_allocator()}))
"""


def _run(env_extra: dict[str, str]) -> dict[str, bool]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env_extra
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout)


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuning_takes_effect_once_on_glibc():
    assert _run({}) == {"first": True, "again": True}


@pytest.mark.slow
def test_the_users_own_malloc_settings_win():
    assert _run({"MALLOC_MMAP_THRESHOLD_": "131072"}) == {"first": False, "again": False}


def test_off_linux_it_does_nothing(monkeypatch):
    from engine.core import allocator

    monkeypatch.setattr(allocator, "_tuned", None)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.tune_allocator() is False
