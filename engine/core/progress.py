"""The command line's progress bars, drawn by tqdm on standard error.

Every long CLI command takes one of these as its ``on_progress``. A bar draws only on a terminal and
never with ``--json`` (``enabled=False``): piped or logged output stays free of carriage returns.
Each is a context manager that closes its bar, so an error or Ctrl+C leaves a clean line behind.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm


def bars_wanted(stream: TextIO | None = None, *, json_output: bool = False) -> bool:
    """Whether to draw bars: never for ``--json``, and only when ``stream`` is a terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return not json_output and stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def new_bar(
    description: str, total: int | None, *, unit: str = "it", enabled: bool = True, **options: Any
) -> tqdm:
    """A tqdm bar on standard error with the app's look (it vanishes when closed)."""
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        file=sys.stderr,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.1,
        **options,
    )


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class CountBar:
    """``on_progress(done, total)`` for a counted job (files scanned, images evaluated)."""

    def __init__(self, description: str, *, unit: str = "image", enabled: bool = True) -> None:
        self.description = description
        self.unit = unit
        self.enabled = enabled
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None or self.bar.total != total:
            self.close()
            self.bar = new_bar(self.description, total, unit=self.unit, enabled=self.enabled)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> CountBar:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


class DownloadBar:
    """``on_progress(done_bytes, total_bytes, speed)`` for a download: a byte bar, then one summary line."""

    def __init__(self, label: str, *, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.last: tuple[int, int, float] | None = None

    def __call__(self, done: int, total: int, speed: float) -> None:
        if self.bar is None:
            _say(f"downloading {self.label} weights...")
            self.bar = new_bar(
                self.label, total or None, unit="B", enabled=self.enabled, unit_scale=True, unit_divisor=1000
            )
        self.bar.update(done - self.bar.n)
        self.last = (done, total, speed)

    def close(self) -> None:
        """Close the bar; say how much was downloaded when a download completed."""
        from engine.core.sizes import format_size

        if self.bar is None:  # nothing was downloaded: cached, built in, or failed before starting
            return
        self.bar.close()
        self.bar = None
        if self.last is not None and self.last[1] and self.last[0] == self.last[1]:
            done, _total, speed = self.last
            _say(f"downloaded {format_size(done)} ({format_size(speed)}/s)")

    def __enter__(self) -> DownloadBar:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()
