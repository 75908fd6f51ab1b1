"""Keep glibc from mapping and unmapping every large tensor buffer (Linux only).

By default glibc serves each allocation above a dynamic threshold (128 KiB to 32 MiB) with its own
``mmap`` and returns it with ``munmap`` when freed, so every large activation buffer of a CPU forward
pass costs fresh, zero-filled pages from the kernel: most of a CPU feature pass then becomes system
time. Raising the mmap threshold and the trim threshold (what the ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` environment variables do) keeps freed buffers in the heap for reuse.
Measured in BENCHMARKS.md ("CPU allocator").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Buffers up to this size come from the heap and are reused; larger ones are still mapped.
MMAP_THRESHOLD_BYTES = 1 << 30
#: Free memory at the top of the heap beyond this is given back to the system.
TRIM_THRESHOLD_BYTES = 2 << 30
_tuned: bool | None = None


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are in effect.

    Does nothing (False) off Linux, with another C library, or when the user set either
    ``MALLOC_*_THRESHOLD_`` variable (their choice wins). Never raises.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    except (OSError, AttributeError) as exc:
        log.debug("could not tune the allocator: %s", exc)
        return False
    _tuned = ok
    log.debug("glibc allocator thresholds raised: %s", ok)
    return ok


def release_memory() -> bool:
    """Give the heap's free memory back to the system (after a feature pass: its batches' buffers), as
    glibc's ``malloc_trim`` does; True when it ran. Without it, the raised trim threshold above keeps up
    to 2 GB of freed buffers in the process for the rest of the run. Never raises."""
    import gc

    gc.collect()
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError) as exc:
        log.debug("could not trim the heap: %s", exc)
        return False
    return True
