"""CPU thread settings: one thread for the adapter's small matrices and for reproducible training."""

from __future__ import annotations

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
