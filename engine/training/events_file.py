"""A multi-process run's events as JSON lines: rank 0 appends them, the window that launched it follows.

The one writer (:class:`EventsWriter`, in the CLI's rank 0) and the one reader (:class:`EventsReader`,
in the window's worker) of the file named by :data:`EVENTS_FILE_ENV`. Standard library only.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from engine.core.small_files import DamagedFile, decode_json
from engine.training import events as ev

log = logging.getLogger(__name__)

#: The environment variable that names the file; the window sets it for the torchrun it starts.
EVENTS_FILE_ENV = "TRANSFER_STUDIO_EVENTS_FILE"


class EventsWriter:
    """Appends each event as one JSON line (rank 0 of a run the window launched)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_environment(cls) -> EventsWriter | None:
        """The writer of ``$TRANSFER_STUDIO_EVENTS_FILE``, or None when it is not set."""
        value = os.environ.get(EVENTS_FILE_ENV)
        return cls(Path(value)) if value else None

    def __call__(self, event: ev.Event) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(ev.to_json(event)) + "\n")


class EventsReader:
    """Reads the events appended since the last call; a line still being written waits for the next."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def read_new(self) -> list[ev.Event]:
        events: list[ev.Event] = []
        try:
            source = self.path.open("r", encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return events
        with source:
            source.seek(self._offset)
            while True:
                line = source.readline()
                if not line.endswith("\n"):  # none left, or one still being written
                    break
                self._offset = source.tell()
                try:
                    events.append(ev.from_json(decode_json(line, dict[str, Any], self.path)))
                except (DamagedFile, ValueError, TypeError):
                    log.warning("ignoring an unreadable event line: %r", line[:200])
        return events
