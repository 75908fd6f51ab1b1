"""Work-arounds for bugs in specific PySide6 builds, applied once when ``gui`` starts using Qt.

PySide6 6.12.0 on Python < 3.12 drops one reference to ``None`` on every call of a C++ method that
returns void (and one to ``True`` on every signal emission): the binding assumes the immortal
singletons of Python 3.12+. On 3.11, after a few thousand calls, CPython aborts with
"Fatal Python error: none_dealloc". :func:`protect_singletons` detects the leak at start-up and, only
then, gives ``None``, ``True`` and ``False`` a practically infinite reference count, which is what
Python 3.12 does for them anyway. The real fix is a PySide6 release without the bug (6.11.x works).
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

_HEADROOM = 1 << 60
_applied = False


def _leaks_none() -> bool:
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(64):
        probe.setObjectName("probe")
    return before - sys.getrefcount(None) >= 32


def protect_singletons() -> bool:
    """Apply the work-around if this PySide6 build needs it; True when it was applied."""
    global _applied
    if _applied or sys.version_info >= (3, 12) or not _leaks_none():
        return _applied
    for obj in (None, True, False):
        count = ctypes.c_ssize_t.from_address(id(obj))
        before = sys.getrefcount(obj)
        if count.value != before - 1:  # not the layout we expect (debug build): leave it alone
            logger.warning("cannot protect %r from the PySide6 reference leak", obj)
            return False
        count.value += _HEADROOM
    _applied = True
    from PySide6 import __version__

    logger.warning(
        "PySide6 %s leaks references to None on Python %d.%d; work-around applied "
        "(install PySide6 6.11 or use Python 3.12+ to avoid it)",
        __version__,
        *sys.version_info[:2],
    )
    return True


protect_singletons()
