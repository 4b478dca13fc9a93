import multiprocessing

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from nvmsim.crossbar import normals
from nvmsim.crossbar.normals import BlockedNormals, for_read, standard_normal


def _take(seed: int, sizes: list[int], dtype=torch.float32) -> torch.Tensor:
    stream = BlockedNormals(torch.Generator().manual_seed(seed))
    return torch.cat([stream.take(torch.empty(n, dtype=dtype)) for n in sizes])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 3 * 97), min_size=1, max_size=6))
def test_a_stream_taken_in_pieces_is_the_stream_taken_at_once(sizes):
    """Chunks of a read draw exactly the numbers of the whole read, wherever they split."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(normals, "BLOCK", 97)
        assert torch.equal(_take(5, sizes), _take(5, [sum(sizes)]))


def test_pieces_of_a_stream_are_its_takes_in_turn():
    """``split`` hands out the next numbers of the stream in pieces that any thread may take
    (in any order); the stream goes on after them, and a piece gives no more than its share."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(normals, "BLOCK", 97)
        sizes = [150, 40, 300, 7]
        want = _take(6, sizes + [50])
        stream = BlockedNormals(torch.Generator().manual_seed(6))
        pieces = stream.split(sizes)
        got = [pieces[i].take(torch.empty(sizes[i])) for i in (2, 0, 3, 1)]
        got = [got[1], got[3], got[0], got[2], stream.take(torch.empty(50))]
        assert torch.equal(torch.cat(got), want)
        with pytest.raises(RuntimeError, match="has 0 normals left, not 1"):
            pieces[0].take(torch.empty(1))


def test_numbers_do_not_depend_on_the_thread_count():
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            outs.append(_take(7, [normals.BLOCK * 5 + 123]))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_blocks_are_standard_normal_and_independent():
    """Moments, the Kolmogorov-Smirnov distance to N(0, 1), and no correlation between
    neighbouring blocks (seeded from consecutive counters) or between two read streams."""
    n = normals.BLOCK * 16
    z = _take(1, [n], torch.float64).numpy()
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    blocks = z.reshape(16, -1)
    corr = np.corrcoef(blocks)[np.triu_indices(16, 1)]
    assert np.abs(corr).max() < 5 / np.sqrt(normals.BLOCK)
    other = _take(2, [n], torch.float64).numpy()
    assert abs(np.corrcoef(z, other)[0, 1]) < 5 / np.sqrt(n)


def test_reproducible_from_the_generator_and_one_draw_from_it_per_read():
    g = torch.Generator().manual_seed(3)
    before = g.get_state()
    a = BlockedNormals(g).take(torch.empty(normals.MIN_BLOCKED))
    b = BlockedNormals(g).take(torch.empty(normals.MIN_BLOCKED))
    assert not torch.equal(a, b)  # the next read draws the next base seed
    g.set_state(before)
    assert torch.equal(BlockedNormals(g).take(torch.empty(normals.MIN_BLOCKED)), a)


def test_small_reads_serial_streams_and_other_devices_keep_torchs_stream():
    like = torch.empty(3, 1000)
    big = torch.empty(normals.MIN_BLOCKED)
    for x, stream in ((like, "blocked"), (big, "serial")):
        got = standard_normal(x, torch.Generator().manual_seed(4), stream)
        want = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
        assert torch.equal(got, want)
    assert isinstance(for_read(torch.Generator(), normals.MIN_BLOCKED, "blocked"), BlockedNormals)
    assert for_read(None, normals.MIN_BLOCKED, "blocked") is None
    blocked = standard_normal(big, torch.Generator().manual_seed(4), "blocked")
    assert not torch.equal(
        blocked, torch.randn(big.shape, generator=torch.Generator().manual_seed(4))
    )


def _checksum() -> float:
    # no torch op that runs on OpenMP threads: GNU OpenMP hangs in a forked child
    z = BlockedNormals(torch.Generator().manual_seed(9)).take(torch.empty(normals.BLOCK * 3))
    return float(z.numpy().sum(dtype=np.float64))


def _child(queue) -> None:
    queue.put(_checksum())


def test_a_forked_child_draws_the_same_numbers():
    """A pool made before a fork has no threads in the child: the child makes its own."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        here = _checksum()  # makes the pool in this process
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child, args=(queue,))
        child.start()
        got = queue.get(timeout=60)
        child.join(timeout=60)
    finally:
        torch.set_num_threads(threads)
    assert got == here
