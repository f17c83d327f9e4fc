"""One thread setting for torch and numba.

numba's OpenMP layer and torch share one OpenMP runtime: every parallel numba launch sets the
runtime's thread count to numba's, which silently overrides a user's
``torch.set_num_threads(n)``. ``parallel_launch`` runs a numba kernel with as many threads as
torch is set to use, restores torch's count afterwards, and hands out ``prange`` iterations in
small chunks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import torch


def launch_threads() -> int:
    """Threads a parallel numba kernel gets: torch's setting, capped by numba's pool."""
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


@contextlib.contextmanager
def parallel_launch(tasks: int) -> Iterator[int]:
    """Context for one parallel numba call over ``tasks`` prange iterations; yields the thread
    count. Iterations go out in ~8 chunks per thread instead of one static block each, so a
    thread that the OS deschedules (shared machines) does not hold up the others."""
    before, threads = torch.get_num_threads(), launch_threads()
    numba.set_num_threads(threads)
    old_chunk = numba.set_parallel_chunksize(max(1, tasks // (8 * threads)))
    try:
        yield threads
    finally:
        numba.set_parallel_chunksize(old_chunk)
        torch.set_num_threads(before)
