"""Keep freed memory in the process, so that the large tensors a stage allocates batch after batch
do not page-fault afresh each time.

glibc returns blocks of 32 MB and more to the system on free (mmap) and trims the heap's top;
the next batch's tensors of the same size then fault in every page again. On the machines
measured (docs/engine.md) that was a third of the ablation head's time. Raising both thresholds
keeps the memory mapped: the process's footprint stays at its peak, as it would with a caching
allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc's malloc.h)
_M_MMAP_THRESHOLD = -3
_KEEP = 2**30  # blocks under 1 GiB come from the heap, which is trimmed only past 1 GiB free


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory (Linux only); True when it accepted both settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
