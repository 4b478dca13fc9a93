"""Helper threads beside torch's own: for work torch runs on one thread, or runs badly split.

torch draws CPU random numbers on one thread, and a batched read in cache-sized chunks is a
chain of small operations, each split over torch's OpenMP team and joined again. The pool here
has as many threads as torch's intra-op threads. Tasks claim work in order, so which thread
does a task never changes what it computes.

Side by side (:func:`run_side_by_side`), each helper runs torch on one thread: its own OpenMP
setting (through threadpoolctl) and, where torch keeps one per thread, its own MKL setting.
No other thread's setting changes: ``torch.set_num_threads`` would also switch MKL's dynamic
threading off for the whole process, and that slows some of torch's own kernels (measured:
CPU flash attention 18 -> 27 ms).
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from threadpoolctl import ThreadpoolController

_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)
_local = threading.local()
_openmp: ThreadpoolController | None = None
_default_changed = threading.Event()  # a helper had to call torch.set_num_threads


def helpers() -> tuple[ThreadPoolExecutor | None, int]:
    """A pool of as many threads as torch's intra-op threads, and that count (no pool for
    one thread): side by side all of them work, beside a caller one fewer. Remade after a
    fork (a forked child has none of its parent's threads)."""
    global _pool
    n = torch.get_num_threads()
    if n < 2:
        return None, 0
    if _pool is None or _pool[0] != os.getpid() or _pool[1] != n:
        if _pool is not None and _pool[0] == os.getpid():
            _pool[2].shutdown(wait=False)  # its threads end once idle
        _pool = (os.getpid(), n, ThreadPoolExecutor(n, thread_name_prefix="nvmsim"))
    return _pool[2], n


def _threads_here(library: str) -> int | None:
    """This thread's thread count of ``"omp"`` or ``"mkl"`` as torch reports it (None: torch
    has no such library)."""
    info = torch.__config__.parallel_info()
    found = re.search(rf"{library}_get_max_threads\(\) : (\d+)", info)
    return None if found is None else int(found.group(1))


def _openmp_runtimes() -> ThreadpoolController:
    global _openmp
    if _openmp is None:
        _openmp = ThreadpoolController().select(user_api="openmp")
    return _openmp


@functools.cache
def _per_thread_openmp() -> bool:
    """Whether torch runs on OpenMP and threadpoolctl finds its runtime."""
    return _threads_here("omp") is not None and bool(_openmp_runtimes().lib_controllers)


def _single_threaded() -> None:
    """Make this helper thread run torch on one thread (once per thread)."""
    if getattr(_local, "single", False):
        return
    torch.get_num_threads()  # a new thread takes torch's setting at its first use
    _openmp_runtimes().limit(limits=1)  # this thread's OpenMP setting only
    if _threads_here("mkl") not in (None, 1):
        # torch.set_num_threads was called before: MKL then keeps a count in every thread,
        # which only torch sets. What else that call changes for the whole process is done
        # already, but for the default of new threads, which run_side_by_side puts back.
        torch.set_num_threads(1)
        _default_changed.set()
    _local.single = True


def _claimer(tasks: Sequence[Callable[[], object]], setup: Callable[[], None] | None = None):
    claim = itertools.count()

    def work() -> None:
        if setup is not None:
            setup()
        for i in claim:
            if i >= len(tasks):
                return
            tasks[i]()

    return work


def _wait(jobs: list, error: BaseException | None = None) -> None:
    """Wait for every job, then raise the first error (tasks may write a shared output)."""
    for job in jobs:
        raised = job.exception()  # waits for the job
        error = error or raised
    if error is not None:
        raise error


def side_by_side() -> bool:
    """Whether :func:`run_side_by_side` can run tasks here: more than one torch thread, on
    OpenMP, whose runtime threadpoolctl finds (to set each helper's own count)."""
    return torch.get_num_threads() > 1 and _per_thread_openmp()


def run_side_by_side(tasks: Sequence[Callable[[], object]]) -> None:
    """Run ``tasks`` on the helpers, each running torch on one thread, while the calling
    thread waits (one after another where :func:`side_by_side` says it cannot be done)."""
    pool, n = helpers() if len(tasks) > 1 and side_by_side() else (None, 0)
    if pool is None:
        for task in tasks:
            task()
        return
    threads = torch.get_num_threads()
    work = _claimer(tasks, _single_threaded)  # every helper sets itself up before its tasks
    jobs = [pool.submit(work) for _ in range(n)]
    try:
        _wait(jobs)
    finally:
        if _default_changed.is_set():
            _default_changed.clear()
            torch.set_num_threads(threads)
