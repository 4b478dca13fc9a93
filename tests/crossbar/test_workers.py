import subprocess
import sys
import threading

import pytest
import torch

from nvmsim.crossbar import workers


@pytest.fixture
def three_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(threads)


def _threads_of(run, n_tasks: int) -> dict[int, tuple[int, int]]:
    """Which thread ran each task, and torch's thread count there."""
    seen: dict[int, tuple[int, int]] = {}

    def task(i: int) -> None:
        seen[i] = (threading.get_ident(), torch.get_num_threads())

    run([lambda i=i: task(i) for i in range(n_tasks)])
    return seen


def test_side_by_side_every_task_runs_once_on_a_single_threaded_helper(three_threads):
    assert workers.side_by_side()
    start = threading.Barrier(3, timeout=10)  # three tasks must run at once to get past it
    ran = []

    def task(i: int) -> None:
        if i < 3:
            start.wait()
        ran.append((i, threading.get_ident(), torch.get_num_threads()))

    workers.run_side_by_side([lambda i=i: task(i) for i in range(20)])
    assert sorted(i for i, _, _ in ran) == list(range(20))
    idents = {ident for _, ident, _ in ran}
    assert len(idents) == 3 and threading.get_ident() not in idents  # the caller waits
    assert {n for _, _, n in ran} == {1}
    assert torch.get_num_threads() == 3  # the caller's setting is untouched


def test_an_error_is_raised_once_all_threads_stop(three_threads):
    run = workers.run_side_by_side
    done = []

    def task(i: int) -> None:
        if i == 4:
            raise ValueError("task 4 failed")
        done.append(i)

    with pytest.raises(ValueError, match="task 4 failed"):
        run([lambda i=i: task(i) for i in range(12)])
    assert sorted(done) == [i for i in range(12) if i != 4]
    assert torch.get_num_threads() == 3


def test_one_thread_runs_the_tasks_in_order_on_the_caller():
    run = workers.run_side_by_side
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seen = _threads_of(run, 5)
    finally:
        torch.set_num_threads(threads)
    assert list(seen) == list(range(5))
    assert {ident for ident, _ in seen.values()} == {threading.get_ident()}


def test_helpers_go_single_threaded_without_torch_set_num_threads():
    """In a process that never called ``torch.set_num_threads`` the helpers set only their
    own OpenMP count (that call would switch MKL's dynamic threads off for every thread)."""
    script = """
import threading, torch
from nvmsim.crossbar import workers
calls = []
torch.set_num_threads = lambda n: calls.append(n)
seen = []
workers.run_side_by_side([lambda: seen.append(torch.get_num_threads()) for _ in range(8)])
x = torch.rand(300, 300)
workers.run_side_by_side([lambda: seen.append(float((x @ x).sum()) > 0) for _ in range(8)])
assert calls == [] and seen[:8] == [1] * 8 and all(seen[8:]), (calls, seen)
print("ok")
"""
    env_threads = "2"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "OMP_NUM_THREADS": env_threads},
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
