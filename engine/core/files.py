"""Atomic file writes (temporary file + rename) and CPU copies of tensors that are safe to save later."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` (its return value is ignored) then rename the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` that never leaves a partial file at ``path``."""
    import torch  # lazily: this module is read at window start-up, before torch is loaded

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, as UTF-8; a path's bytes that are not UTF-8 (carried in
    ``text`` as surrogate escapes) are written as they were."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="surrogateescape"))


def cpu_copy(obj: Any) -> Any:
    """A deep copy of nested dicts/lists whose tensors are detached CPU copies (safe to save later)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj
