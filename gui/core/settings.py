"""Persistent user settings (last dataset, recent folders, training choices, window geometry).

A thin, type-checked wrapper around an INI-format QSettings. The file is ``$TRANSFER_STUDIO_SETTINGS``
when set (tests point it at a temporary file), else ``<config dir>/TransferStudio/settings.ini``.
A file that Qt cannot parse is moved aside (``*.corrupt``) and start-up continues with defaults; a
value of the wrong type reads as the default. Nothing here ever raises on bad content.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

logger = logging.getLogger(__name__)

ENV_VAR = "TRANSFER_STUDIO_SETTINGS"
MAX_RECENT = 8
CACHE_ROOT_KEY = "cache/root"


def default_settings_path() -> Path:
    """``$TRANSFER_STUDIO_SETTINGS`` or the per-user config location."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation)
    return Path(base or Path.home() / ".config") / "TransferStudio" / "settings.ini"


class Settings:
    """Typed access to the settings file; every getter falls back to its default on bad data."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_settings_path()
        self.recovered_from: Path | None = None
        self._qs = self._open()

    def _open(self) -> QSettings:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            logger.warning("cannot create the settings folder %s", self.path.parent)
        qs = QSettings(str(self.path), QSettings.Format.IniFormat)
        if qs.status() == QSettings.Status.NoError and self._readable(qs):
            return qs
        del qs
        backup = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            self.path.replace(backup)
            self.recovered_from = backup
            logger.warning("settings file %s was unreadable; moved it to %s", self.path, backup)
        except OSError:
            logger.warning("settings file %s is unreadable and cannot be moved", self.path)
        return QSettings(str(self.path), QSettings.Format.IniFormat)

    @staticmethod
    def _readable(qs: QSettings) -> bool:
        try:
            for key in qs.allKeys():
                qs.value(key)
        except Exception:  # noqa: BLE001 - any failure to decode means a corrupt file
            return False
        return True

    # -- typed getters -------------------------------------------------------------------------
    def _raw(self, key: str) -> Any:
        try:
            return self._qs.value(key)
        except Exception:  # noqa: BLE001
            return None

    def get_str(self, key: str, default: str = "") -> str:
        value = self._raw(key)
        return value if isinstance(value, str) else default

    def get_int(self, key: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        value = self._raw(key)
        try:
            number = int(value)
        except (TypeError, ValueError):
            return default
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            return default
        return number

    def get_float(self, key: str, default: float) -> float:
        try:
            number = float(self._raw(key))
        except (TypeError, ValueError):
            return default
        return number if number == number and abs(number) != float("inf") else default

    def get_bool(self, key: str, default: bool) -> bool:
        value = self._raw(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        return default

    def get_list(self, key: str) -> list[str]:
        value = self._raw(key)
        if isinstance(value, str):
            return [value] if value else []
        if isinstance(value, list | tuple):
            return [v for v in value if isinstance(v, str) and v]
        return []

    def get_bytes(self, key: str) -> QByteArray | None:
        value = self._raw(key)
        return value if isinstance(value, QByteArray) else None

    # -- writing --------------------------------------------------------------------------------
    def set(self, key: str, value: Any) -> None:
        self._qs.setValue(key, value)

    def sync(self) -> None:
        self._qs.sync()

    # -- recent datasets -------------------------------------------------------------------------
    def recent_datasets(self) -> list[str]:
        return self.get_list("data/recent")[:MAX_RECENT]

    def add_recent_dataset(self, path: str) -> list[str]:
        recent = [path] + [p for p in self.recent_datasets() if p != path]
        recent = recent[:MAX_RECENT]
        self.set("data/recent", recent)
        self.set("data/last", path)
        return recent

    def clear_recent_datasets(self) -> None:
        self.set("data/recent", [])

    def feature_cache_root(self) -> Path:
        """Where the feature cache goes: ``$TRANSFER_STUDIO_CACHE``, the saved choice, or the platform's
        cache folder (what the engine will use once :meth:`apply_feature_cache_root` ran)."""
        from engine.core.locations import CACHE_ENV, cache_root  # torch-free

        if os.environ.get(CACHE_ENV):
            return Path(os.environ[CACHE_ENV]).expanduser()
        saved = self.get_str(CACHE_ROOT_KEY)
        return Path(saved).expanduser() if saved else cache_root()

    def feature_cache_root_is_fixed(self) -> bool:
        """Whether ``$TRANSFER_STUDIO_CACHE`` was set outside the app (then it wins over the setting)."""
        from engine.core.locations import CACHE_ENV

        env = os.environ.get(CACHE_ENV)
        return bool(env) and env != self.get_str(CACHE_ROOT_KEY)

    def apply_feature_cache_root(self) -> None:
        """Point the engine (and the training processes the window starts) at the saved cache folder,
        unless ``$TRANSFER_STUDIO_CACHE`` is set."""
        from engine.core.locations import CACHE_ENV

        saved = self.get_str(CACHE_ROOT_KEY)
        if saved and not os.environ.get(CACHE_ENV):
            os.environ[CACHE_ENV] = saved

    def set_feature_cache_root(self, folder: str | Path) -> None:
        """Save the feature cache folder and use it from now on (features already cached stay where they are)."""
        from engine.core.locations import CACHE_ENV

        self.set(CACHE_ROOT_KEY, str(folder))
        os.environ[CACHE_ENV] = str(folder)

    def runs_root(self) -> Path:
        """Where training runs go: ``$TRANSFER_STUDIO_RUNS``, the saved choice, or ~/TransferStudio/runs."""
        env = os.environ.get("TRANSFER_STUDIO_RUNS")
        if env:
            return Path(env).expanduser()
        saved = self.get_str("train/runs_root")
        if saved:
            return Path(saved).expanduser()
        from engine.core.locations import default_runs_root  # torch-free

        return default_runs_root()
