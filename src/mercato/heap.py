"""Process settings for low-latency servers: keep freed memory, and keep GC pauses short.

Used by ``mercato serve`` (the gateway), ``mercato engine serve`` and the benchmarks that time them.

Memory: a routing round allocates the same few large numpy arrays every batch (the (N, M, F) feature
tensor, the (N, M) predictions, the solver's square matrix). glibc serves blocks above
``M_MMAP_THRESHOLD`` (128 KiB at start) with fresh ``mmap`` pages and gives the top of the heap
back to the OS past ``M_TRIM_THRESHOLD``, so every round pays a page fault per 4 KiB it touches:
about 1 ms of a 5 ms round at 200 x 100 on this project's machines, and more or less from one
process to the next as glibc's adaptive threshold happens to settle. Raising both thresholds
once at start-up keeps those pages resident and reused. Other C libraries are left alone.

Garbage collection: a full (generation 2) collection walks every tracked object, and a gateway
holds about 160,000 of them after importing FastAPI, pydantic, numpy, scipy and river; such a
pass stalled the event loop for up to 100 ms (40 ms in a simulated engine), which every request
queued behind it paid. Freezing what exists once the app is built moves those objects out of the
collector's sight (they live as long as the process anyway), so the passes that remain walk only
what the gateway made since (about 10 ms after a few thousand requests).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling for this option on 64-bit
_TRIM_THRESHOLD = 1024 * 1024 * 1024


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; returns False where that is not possible."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
                and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def freeze_startup_objects() -> int:
    """Collect once, then exempt every surviving object from later collections; returns their count."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
