"""Running a block on a given number of torch threads (per-example training is many small
operations: one thread is fastest and immune to contention)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch threads (None: leave the setting alone), then
    restore the previous count."""
    old = torch.get_num_threads()
    change = threads is not None and threads != old  # the call alone slows some kernels
    if change:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(old)
