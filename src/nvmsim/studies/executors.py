"""Where runs execute: in this process, a local process pool, or a Ray cluster.

Every task runs with the same number of torch threads under every executor (one per worker
when there are several), so the same study gives bit-identical numbers under each.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

Task = tuple[str, dict[str, Any], str]  # (kind, run config, train_key)


def threads_per_task(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers) if workers == 1 else 1


def run_task(task: Task, cache_dir: str, threads: int) -> tuple[dict[str, Any], float, float]:
    """Execute one task; returns (result, start time, seconds).

    A failure comes back as ``{"error": message}`` so that one bad run does not stop the
    others; the study reports it and stores nothing for that run.
    """
    import traceback

    import torch

    from nvmsim.studies import runner

    torch.set_num_threads(threads)
    kind, tree, key = task
    start = time.time()
    t0 = time.perf_counter()
    try:
        if kind == "train":
            runner.trained_model(tree, key, Path(cache_dir))
            result: dict[str, Any] = {}
        else:
            result = runner.evaluate(tree, key, Path(cache_dir))
    except Exception as err:  # reported per run by the caller
        last = traceback.extract_tb(err.__traceback__)[-1]
        where = f"{Path(last.filename).name}:{last.lineno}"
        result = {"error": f"{type(err).__name__}: {err} (at {where})"}
    return result, start, time.perf_counter() - t0


def execute(
    tasks: list[Task], cache_dir: Path, executor: str, workers: int
) -> Iterator[tuple[int, dict[str, Any], float, float]]:
    """Yield ``(task index, result, start, seconds)`` as tasks finish."""
    threads = threads_per_task(workers)
    if executor == "ray":
        yield from _ray(tasks, cache_dir, workers, threads)
    elif executor != "local":
        raise ValueError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    elif workers <= 1:
        for i, task in enumerate(tasks):
            yield (i, *run_task(task, str(cache_dir), threads))
    else:
        yield from _pool(tasks, cache_dir, workers, threads)


def die_with_parent(parent: int, poll: float = 0.5) -> None:
    """Make this (worker) process exit once ``parent`` is gone, however it ended: a study
    killed with SIGTERM or SIGKILL must not leave workers computing for nobody."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _pool(tasks: list[Task], cache_dir: Path, workers: int, threads: int):
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        pending = {
            pool.submit(run_task, t, str(cache_dir), threads): i for i, t in enumerate(tasks)
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                yield (i, *fut.result())


def _ray(tasks: list[Task], cache_dir: Path, workers: int, threads: int):
    try:
        import ray
    except ImportError:
        raise RuntimeError("the Ray executor needs ray: pip install 'nvmsim[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    remote: Callable = ray.remote(num_cpus=1)(run_task)
    try:
        refs = {remote.remote(t, str(cache_dir), threads): i for i, t in enumerate(tasks)}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                i = refs.pop(ref)
                yield (i, *ray.get(ref))
    finally:
        if started_here:
            ray.shutdown()
