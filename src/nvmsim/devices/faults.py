"""Stuck-at faults: a fraction of devices is frozen at Gmin or at Gmax."""

from __future__ import annotations

import torch


def stuck_at(
    g: torch.Tensor,
    rate_gmin: float,
    rate_gmax: float,
    g_min: float,
    g_max: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Each device independently sticks at Gmin (prob. ``rate_gmin``) or Gmax (``rate_gmax``)."""
    if rate_gmin < 0 or rate_gmax < 0 or rate_gmin + rate_gmax > 1:
        raise ValueError(f"fault rates must be >= 0 with sum <= 1, got {rate_gmin}, {rate_gmax}")
    if rate_gmin == 0 and rate_gmax == 0:
        return g
    u = torch.rand(g.shape, generator=generator, dtype=g.dtype, device=g.device)
    out = torch.where(u < rate_gmin, torch.full_like(g, g_min), g)
    return torch.where(
        (u >= rate_gmin) & (u < rate_gmin + rate_gmax), torch.full_like(g, g_max), out
    )
