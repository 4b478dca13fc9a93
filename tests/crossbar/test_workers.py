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


def test_every_task_runs_once_on_the_helpers_too_and_single_threaded(three_threads):
    seen: dict[int, tuple[int, int]] = {}
    start = threading.Barrier(3, timeout=10)  # three tasks must run at once to pass

    def task(i: int) -> None:
        if i < 3:
            start.wait()
        seen[i] = (threading.get_ident(), torch.get_num_threads())

    workers.run_all([lambda i=i: task(i) for i in range(20)], single_threaded=True)
    assert sorted(seen) == list(range(20))
    assert len({ident for ident, _ in seen.values()}) == 3
    assert {n for _, n in seen.values()} == {1}
    assert torch.get_num_threads() == 3  # the caller's setting is back


def test_an_error_is_raised_once_all_threads_stop_and_threads_are_restored(three_threads):
    done = []

    def task(i: int) -> None:
        if i == 4:
            raise ValueError("task 4 failed")
        done.append(i)

    with pytest.raises(ValueError, match="task 4 failed"):
        workers.run_all([lambda i=i: task(i) for i in range(12)], single_threaded=True)
    assert sorted(done) == [i for i in range(12) if i != 4]
    assert torch.get_num_threads() == 3


def test_one_thread_runs_the_tasks_in_order_on_the_caller():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        order = []
        workers.run_all([lambda i=i: order.append((i, threading.get_ident())) for i in range(5)])
    finally:
        torch.set_num_threads(threads)
    assert [i for i, _ in order] == list(range(5))
    assert {ident for _, ident in order} == {threading.get_ident()}
