"""CPU settings: torch threads (one for the adapter's small matrices and for reproducible pretraining)
and the heap policy that keeps extraction out of the kernel."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use `n` CPU threads inside (0: leave the settings), torch's and the BLAS / OpenMP pools that numpy,
    scipy and scikit-learn call (threadpoolctl), then restore them. Limiting both makes a result
    independent of OMP_NUM_THREADS: an adapter trained with one torch thread but two OpenBLAS threads
    had other weights than one trained with OMP_NUM_THREADS=1 (the eraser's fits run in numpy).

    The adapter runs matrices of a few hundred rows: threads gain little and, on a machine shared with
    other jobs, waiting for each other costs a lot (measured on a loaded 2-core machine, D = 768:
    anonymizing 3,152 clips took 0.86 s on one thread and 13 s on two)."""
    import torch
    from threadpoolctl import threadpool_limits

    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_HEAP_SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_heap_kept = False


def keep_freed_memory() -> bool:
    """Keep freed memory in this process's heap for reuse instead of returning it to the kernel
    (glibc only; a no-op elsewhere, or where the user set MALLOC_*_ variables). True when in effect.

    Extraction allocates and frees the same large buffers for every batch and chunk (torch's CPU
    activations, decoded frames, pickled chunks). With glibc's defaults, buffers over 128 KB are
    mmapped and unmapped, or the heap trimmed, each time, and every reuse page-faults its memory back
    in, zero-filled: on a 2-core machine that was 29% of an extraction's CPU time spent in the kernel
    (1.3 M minor faults for 1,872 clips; docs/extract.md). Allocations up to 32 MB now come from the
    heap, which is trimmed only above 1 GB free. The price: the process keeps its peak footprint
    until it exits. Process-wide and lasting; applied by `extract` and by its decode workers."""
    global _heap_kept
    if _heap_kept:
        return True
    if any(name in os.environ for name in _USER_SETTINGS) or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _heap_kept = all(mallopt(param, value) == 1 for param, value in _HEAP_SETTINGS)
    return _heap_kept


def freed_memory_kept() -> bool:
    """Whether `keep_freed_memory` is in effect in this process."""
    return _heap_kept
