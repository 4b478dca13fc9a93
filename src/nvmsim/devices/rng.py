"""Standard normal draws for large read-noise tensors, on every CPU core, reproducibly.

torch draws CPU random numbers on one thread; a read of a large layer needs tens of millions
of them. :func:`randn` takes one 63-bit seed from the caller's generator and fills fixed-size
chunks from generators seeded ``seed + chunk index``, several chunks at a time. The chunking
does not depend on the number of threads, so the result depends only on the generator's
state. Small tensors and other devices (where torch is parallel already) draw directly.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

#: Elements per chunk; tensors under two chunks are drawn in one call.
CHUNK = 1 << 20

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0
_lock = threading.Lock()


def _executor(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size, _pool_pid
    with _lock:
        if _pool is None or _pool_size != threads or _pool_pid != os.getpid():
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=False)  # a forked child has no threads of its parent's pool
            _pool_pid = os.getpid()
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="nvmsim-rng")
            _pool_size = threads
        return _pool


def randn(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """``N(0, 1)`` samples of ``shape``: a deterministic function of ``generator``'s state."""
    device = torch.device(device)
    n = 1
    for s in shape:
        n *= int(s)
    if device.type != "cpu" or n < 2 * CHUNK:
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device))
    out = torch.empty(shape, dtype=dtype, device=device)
    flat = out.view(-1)
    n_chunks = (n + CHUNK - 1) // CHUNK

    def fill(i: int) -> None:
        g = torch.Generator().manual_seed(seed + i)
        flat[i * CHUNK : (i + 1) * CHUNK].normal_(generator=g)

    threads = torch.get_num_threads()
    if threads < 2:  # the same chunks serially: the same numbers
        for i in range(n_chunks):
            fill(i)
    else:
        list(_executor(threads).map(fill, range(n_chunks)))
    return out
