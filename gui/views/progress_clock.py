"""One long job's progress as the window shows it: a bar that never goes back, an elapsed clock that
ticks every second, and an estimate that counts down between the engine's measurements.

The engine reports progress when a batch ends (``elapsed_s`` and ``eta_s`` of its events); batches
can be seconds apart, and a new measurement can raise the estimate. :class:`ProgressClock` turns
those reports into what a person reads: the bar shows the largest fraction reached so far (it stays
put while the estimate grows, and reaches the end only when the job does), the elapsed time is the
wall time since the user pressed Start, and "about M:SS left" counts down each second from the last
estimate, never below zero.

Jobs whose engine reports only how far it got (the dataset doctor, an evaluation) use
:meth:`ProgressClock.measure`: the estimate is then priced from the rate measured since the job's
first report (set-up before it, such as loading a model, is not work that will repeat).
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QProgressBar, QWidget

from gui.views.widgets import format_duration

TICK_MS = 1000
#: How long a rate is measured before :meth:`ProgressClock.measure` gives an estimate.
MIN_MEASURED_S = 1.0


class ProgressClock(QObject):
    """Drives ``bar`` (range 0..``bar.maximum()``); ``ticked(text)`` each second and at each update,
    with the timing text ("elapsed 0:12 · about 0:40 left")."""

    ticked = Signal(str)

    def __init__(self, bar: QProgressBar, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = bar
        self._started: float | None = None
        self._value = 0
        self._left: float | None = None
        self._left_at = 0.0
        self._first: tuple[float, float] | None = None  # (time, fraction) of the first measure()
        self.timer = QTimer(self)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        """A job starts now: the bar at 0, the clock at 0:00, no estimate yet."""
        self._started = time.monotonic()
        self._value, self._left, self._first = 0, None, None
        self.bar.setValue(0)
        self.timer.start()
        self._tick()

    def is_running(self) -> bool:
        return self.timer.isActive()

    def update(self, fraction: float, seconds_left: float | None) -> None:
        """The engine's latest: the share of the job done (0..1) and its estimate of the seconds left."""
        if self._started is None:
            self.start()
        steps = self.bar.maximum()
        if steps > 0:  # 0: a busy bar, before the job knows its size
            value = min(steps - 1, max(0, round(steps * fraction)))  # the end is for finish()
            self._value = max(self._value, value)
            self.bar.setValue(self._value)
        if seconds_left is not None:
            self._left, self._left_at = max(0.0, seconds_left), time.monotonic()
        self._tick()

    def measure(self, fraction: float) -> None:
        """The share of the job done (0..1), with no estimate from the engine: the seconds left are
        the rest of the job at the rate measured since the first report (none until the rate is
        measured over at least a second)."""
        if self._started is None:
            self.start()
        now = time.monotonic()
        if self._first is None:
            self._first = (now, fraction)
        since, from_fraction = self._first
        left: float | None = None
        if now - since >= MIN_MEASURED_S and fraction > from_fraction:
            left = (now - since) / (fraction - from_fraction) * (1.0 - fraction)
        self.update(fraction, left)

    def finish(self, completed: bool = True) -> None:
        """The job ended: the bar full when it completed; the clock stops."""
        self.timer.stop()
        if completed:
            self.bar.setValue(self.bar.maximum())

    def elapsed(self) -> float:
        """Seconds since :meth:`start` (the wall time the user has waited)."""
        return 0.0 if self._started is None else time.monotonic() - self._started

    def seconds_left(self) -> float | None:
        """The last estimate, counted down since it came (None before the first)."""
        if self._left is None:
            return None
        return max(0.0, self._left - (time.monotonic() - self._left_at))

    def text(self) -> str:
        left = self.seconds_left()
        estimate = "estimating the time left…" if left is None else f"about {format_duration(left)} left"
        return f"elapsed {format_duration(self.elapsed())} · {estimate}"

    @Slot()
    def _tick(self) -> None:
        self.ticked.emit(self.text())
