"""Helper threads beside torch's own: for work torch runs on one thread, or runs badly split.

torch draws CPU random numbers on one thread, and a batched read in cache-sized chunks is a
chain of small operations, each split over torch's OpenMP team and joined again. The pool here
has one thread fewer than torch's intra-op threads; the calling thread works too. Tasks claim
work in order, so which thread does a task never changes what it computes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)


def helpers() -> tuple[ThreadPoolExecutor | None, int]:
    """A pool of one thread fewer than torch's intra-op threads, and its size (no pool for
    one thread); remade after a fork (a forked child has none of its parent's threads)."""
    global _pool
    n = torch.get_num_threads() - 1
    if n < 1:
        return None, 0
    if _pool is None or _pool[0] != os.getpid() or _pool[1] != n:
        _pool = (os.getpid(), n, ThreadPoolExecutor(n, thread_name_prefix="nvmsim"))
    return _pool[2], n


def run_all(tasks: Sequence[Callable[[], None]], single_threaded: bool = False) -> None:
    """Run ``tasks`` on the calling thread and the helpers, each claimed by one thread.

    ``single_threaded``: every thread runs torch on one thread meanwhile (its own OpenMP and
    MKL setting; the caller's is restored), so independent chunks of work run side by side
    instead of each operation being split and joined. The first error is raised once every
    thread has stopped (tasks may write into a shared output).
    """
    pool, n = helpers() if len(tasks) > 1 else (None, 0)
    if pool is None:
        for task in tasks:
            task()
        return
    claim = itertools.count()

    def work() -> None:
        if single_threaded:
            torch.get_num_threads()  # a new thread takes torch's default at its first use
            torch.set_num_threads(1)
        for i in claim:
            if i >= len(tasks):
                return
            tasks[i]()

    threads = torch.get_num_threads()
    jobs = [pool.submit(work) for _ in range(n)]
    error: BaseException | None = None
    try:
        work()
    except BaseException as e:  # noqa: BLE001 - re-raised once the helpers have stopped
        error = e
    finally:
        if single_threaded:
            torch.set_num_threads(threads)
    for job in jobs:
        e = job.exception()
        error = error or e
    if single_threaded:
        torch.set_num_threads(threads)  # a helper's setting also sets the default of new threads
    if error is not None:
        raise error
