"""Seeds derived from seeds: every random stream of a result follows from the seed it names."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts (a hash: stable across processes and
    machines, and independent streams for different parts)."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def spawn_seeds(base: int, n: int) -> list[int]:
    """``n`` independent, reproducible 62-bit seeds from one ``base`` seed (one per layer)."""
    g = torch.Generator().manual_seed(base)
    return [int(s) for s in torch.randint(0, 2**62, (n,), generator=g)]


def onchip_seed(*parts: Any) -> int:
    """A 62-bit seed from parts joined by ``":"`` (their ``str``) for on-chip training.

    A different formula from :func:`derive_seed`, kept as it is because stored on-chip study
    results (and their resume keys) were produced with these numbers."""
    h = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 2


def generator_on(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """``generator`` itself if it draws on ``device``'s type, else a generator there seeded by
    one draw from it: a CPU generator can program a chip on a GPU, reproducibly."""
    if generator.device.type == torch.device(device).type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)
