"""Giving memory back after a burst of overload.

Why: a burst the door refused still allocated — request objects, answers, buffers — and CPython keeps
freed memory in its allocator (and glibc keeps freed heap pages) until something returns it, so the
process stayed tens of megabytes above its baseline after the burst was over. Once the door has been
quiet for a while after shedding, :func:`trim` runs a full collection (cyclic garbage of the burst, which
the tuned collector would otherwise keep until 100,000 more allocations) and asks glibc to return free
pages (``malloc_trim``; a no-op elsewhere). Run only when idle after a burst: a full collection costs a
few milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

_libc = None
try:
    _path = ctypes.util.find_library("c")
    _libc = ctypes.CDLL(_path) if _path else None
    if _libc is not None and not hasattr(_libc, "malloc_trim"):
        _libc = None
except OSError:  # no C library to ask: trimming is only the collection
    _libc = None


def trim() -> None:
    """Collect every generation and return free heap pages to the operating system."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)
