"""The window's garbage-collection policy, in one place.

Two rules:

1. **Qt objects are destroyed on the GUI thread only.** Python's automatic cyclic collector runs in
   whichever thread happens to allocate, so with it on, a training or decoding thread could destroy a
   closed dialog or a finished worker caught in a reference cycle, and the GUI thread crash later.
   :func:`collect_on_the_gui_thread` turns the automatic collector off and collects from a timer on the
   GUI thread instead.
2. **Collections stay short while work runs.** After torch is loaded the heap holds hundreds of
   thousands of long-lived objects; a full collection then takes 150-250 ms and blocks the GUI thread.
   :func:`freeze_long_lived` (called by the runner before every job, and by the window once torch and
   the model catalog are loaded) first collects the young generations (milliseconds: what was just
   made, where fresh garbage is), then moves everything alive out of the collector's reach
   (``gc.freeze``: no traversal, so cheap). Frozen objects are still freed by reference counting; a
   cycle frozen before it was collected would never be, which is why the young ones go first.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

#: How often the GUI thread runs the cyclic garbage collector (when it is due).
GC_INTERVAL_MS = 500


def freeze_long_lived() -> None:
    """Collect fresh garbage, then keep what is alive now out of later collections (rule 2)."""
    gc.collect(1)
    gc.freeze()


def collect_due_generations() -> None:
    """Collect the oldest generation whose allocation count passed its threshold (as the automatic
    collector would), here, on the calling thread."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    due = [gen for gen in (2, 1, 0) if counts[gen] > thresholds[gen]]
    if due:
        gc.collect(due[0])


def collect_on_the_gui_thread(parent: QObject, interval_ms: int = GC_INTERVAL_MS) -> QTimer:
    """Switch off Python's automatic cyclic collection and collect from a timer on this thread (rule 1).

    The timer also gives Python a chance to run its Ctrl+C handler between Qt calls.
    """
    gc.disable()
    timer = QTimer(parent)
    timer.timeout.connect(collect_due_generations)
    timer.start(interval_ms)
    return timer
