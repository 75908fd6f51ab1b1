"""Where the app keeps its files: runs, the feature cache and the log, in the platform's own folders.

``platformdirs`` gives the conventional places (Linux: XDG, e.g. ``~/.local/share/transfer-studio``;
macOS: ``~/Library/Application Support/transfer-studio``, ``~/Library/Caches``, ``~/Library/Logs``;
Windows: ``%LOCALAPPDATA%\\transfer-studio``). Each has an environment-variable override:

  ``TRANSFER_STUDIO_DATA``   the app's data folder  (default: <user data>; exclusion lists live here)
  ``TRANSFER_STUDIO_RUNS``   training runs          (default: <app data>/runs)
  ``TRANSFER_STUDIO_CACHE``  the feature cache      (default: <user cache>)
  ``TRANSFER_STUDIO_LOGS``   the log file's folder  (default: <user log>)

Earlier versions kept runs in ``~/TransferStudio/runs`` on every OS: :func:`runs_roots` still
lists that folder when it holds runs, so nothing made earlier goes missing. (Pretrained weights stay
where torch hub keeps them, ``$TORCH_HOME``.) Standard library and platformdirs only.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import PlatformDirs

APP_NAME = "transfer-studio"
DATA_ENV = "TRANSFER_STUDIO_DATA"
RUNS_ENV = "TRANSFER_STUDIO_RUNS"
CACHE_ENV = "TRANSFER_STUDIO_CACHE"
LOGS_ENV = "TRANSFER_STUDIO_LOGS"

_DIRS = PlatformDirs(APP_NAME, appauthor=False)


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def app_data_dir() -> Path:
    """The app's own data folder: ``$TRANSFER_STUDIO_DATA``, else the user data folder."""
    return _from_env(DATA_ENV) or _DIRS.user_data_path


def default_runs_root() -> Path:
    """Where new runs go: ``$TRANSFER_STUDIO_RUNS``, else ``runs`` in the app's data folder."""
    return _from_env(RUNS_ENV) or app_data_dir() / "runs"


def legacy_runs_root() -> Path:
    """Where versions before 0.2 put runs on every OS."""
    return Path.home() / "TransferStudio" / "runs"


def runs_roots(primary: str | Path | None = None) -> list[Path]:
    """The folders to list runs from: ``primary`` (default :func:`default_runs_root`), plus the old
    default folder when it exists, so runs made by earlier versions are still found."""
    roots = [Path(primary) if primary is not None else default_runs_root()]
    legacy = legacy_runs_root()
    if legacy.is_dir() and all(_not_same(legacy, root) for root in roots):
        roots.append(legacy)
    return roots


def _not_same(a: Path, b: Path) -> bool:
    try:
        return not (b.exists() and a.samefile(b))
    except OSError:
        return a != b


def cache_root() -> Path:
    """The app's cache folder: ``$TRANSFER_STUDIO_CACHE``, else the user cache folder."""
    return _from_env(CACHE_ENV) or _DIRS.user_cache_path


def log_dir() -> Path:
    """The folder of the log file: ``$TRANSFER_STUDIO_LOGS``, else the user log folder."""
    return _from_env(LOGS_ENV) or _DIRS.user_log_path
