"""Standard normals for analog reads: torch's one CPU stream, or seeded blocks on every core.

torch draws CPU normals on one thread (a Mersenne twister, about 5 ns a number), and a noisy
read needs one per output: on a CPU that is most of what read noise costs. With
``read_noise_stream = "blocked"`` the normals of a large read (at least ``MIN_BLOCKED``) are
one virtual stream of ``BLOCK``-sized blocks; block ``k`` is drawn by its own generator, seeded
from ``(base, k)``, where ``base`` is one draw from the layer's generator per read. The blocks
are filled on all of torch's intra-op threads, and the numbers depend on neither the thread
count nor how a read is split into chunks (:class:`BlockedNormals` continues where the last
chunk stopped; chunks read side by side each take their own piece,
:meth:`~BlockedNormals.split`). Smaller reads, reads without a generator and reads off the
CPU (CUDA draws in parallel already) take torch's own stream, as ``"serial"`` does for every
read.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Literal

import torch

from nvmsim.crossbar import workers

#: Normals per block: every block is drawn whole (torch's fill is not prefix-stable).
BLOCK = 1 << 16
#: Reads with fewer normals take the layer generator's own stream.
MIN_BLOCKED = 1 << 17

Stream = Literal["blocked", "serial"]
_MASK = (1 << 64) - 1


def block_seed(base: int, k: int) -> int:
    """Seed of block ``k`` of a stream: splitmix64 of ``base + k`` (63 bits)."""
    z = (base + (k + 1) * 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) >> 1


def _fill(tasks: list[tuple[int, torch.Tensor, int]], claim: Iterator[int]) -> None:
    """Draw the blocks ``(seed, destination, skip)`` this thread claims (a whole block, or
    ``skip:`` of one) until none is left: which thread draws a block never changes it."""
    g = torch.Generator()
    scratch = None
    for i in claim:
        if i >= len(tasks):
            return
        seed, dst, skip = tasks[i]
        g.manual_seed(seed)
        if skip == 0 and dst.numel() == BLOCK:
            dst.normal_(generator=g)
            continue
        if scratch is None:
            scratch = torch.empty(BLOCK, dtype=dst.dtype)
        scratch.normal_(generator=g)
        dst.copy_(scratch[skip : skip + dst.numel()])


class BlockedNormals:
    """The normals of one read as one stream of blocks (see the module docstring).

    ``take`` continues the stream, so a read taken in chunks gets exactly the numbers of
    the whole read taken at once. The base seed is drawn from ``generator`` at the first take.
    """

    def __init__(self, generator: torch.Generator | None, base: int | None = None) -> None:
        self.generator = generator
        self._base = base
        self._pos = 0
        self._end: int | None = None  # a piece (see split) takes no further, on one thread

    def _base_seed(self) -> int:
        """The stream's base seed: one draw from the generator, at the first use."""
        if self._base is None:
            self._base = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return self._base

    def split(self, counts: Sequence[int]) -> list[BlockedNormals]:
        """Streams for the next ``counts[i]`` normals each, to be taken on any threads: piece
        ``i`` gives exactly what ``take`` would give in turn, drawn on the thread that takes
        it. This stream continues after them. Pieces have no generator (no other draws)."""
        base, pieces = self._base_seed(), []
        for n in counts:
            piece = BlockedNormals(None, base)
            piece._pos, piece._end = self._pos, self._pos + n
            self._pos += n
            pieces.append(piece)
        return pieces

    def take(self, like: torch.Tensor) -> torch.Tensor:
        """The next ``like.numel()`` normals, shaped and typed as ``like`` (on the CPU)."""
        base = self._base_seed()
        out = torch.empty(like.shape, dtype=like.dtype)
        flat, n, pos = out.view(-1), out.numel(), self._pos
        if self._end is not None and pos + n > self._end:
            left = self._end - pos
            raise RuntimeError(f"a piece of a read stream has {left} normals left, not {n}")
        tasks, done = [], 0
        while done < n:
            k, skip = divmod(pos + done, BLOCK)
            m = min(BLOCK - skip, n - done)
            tasks.append((block_seed(base, k), flat[done : done + m], skip))
            done += m
        self._pos += n
        pool, threads = workers.helpers() if len(tasks) > 1 and self._end is None else (None, 0)
        claim = itertools.count()  # blocks are claimed in order, one at a time
        jobs = [pool.submit(_fill, tasks, claim) for _ in range(threads - 1)] if pool else []
        _fill(tasks, claim)  # this thread draws too: threads busy elsewhere cost nothing
        for job in jobs:
            job.result()
        return out


Source = torch.Generator | BlockedNormals | None


def for_read(generator: torch.Generator | None, normals: int, stream: Stream) -> Source:
    """What a read of ``normals`` normals in all draws from: a :class:`BlockedNormals` where
    the blocked stream applies (a CPU generator, at least ``MIN_BLOCKED``), else
    ``generator``."""
    if (
        stream == "blocked"
        and generator is not None
        and generator.device.type == "cpu"
        and normals >= MIN_BLOCKED
    ):
        return BlockedNormals(generator)
    return generator


def standard_normal(like: torch.Tensor, source: Source, stream: Stream) -> torch.Tensor:
    """Standard normals shaped, typed and placed as ``like``, from ``source``: a read's
    :class:`BlockedNormals`, or a generator (blocked itself where :func:`for_read` says so)."""
    if not isinstance(source, BlockedNormals) and like.device.type == "cpu":
        source = for_read(source, like.numel(), stream)
    if isinstance(source, BlockedNormals):
        return source.take(like)
    return torch.randn(like.shape, generator=source, dtype=like.dtype, device=like.device)


def generator_of(source: Source) -> torch.Generator | None:
    """The generator behind ``source`` (for draws that are not read noise)."""
    return source.generator if isinstance(source, BlockedNormals) else source
