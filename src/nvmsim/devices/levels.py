"""Limited conductance resolution: a device holds one of a finite set of levels.

Levels are uniform (``2**bits`` levels evenly spaced in ``[Gmin, Gmax]``), geometric
(``2**bits`` levels with a constant ratio from Gmin to Gmax, denser at low conductance, as in
devices whose programming steps scale with ``G``) or an explicit list.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def quantize(g: torch.Tensor, bits: int | None, g_min: float, g_max: float = 1.0) -> torch.Tensor:
    """Round conductances to the nearest of ``2**bits`` uniform levels in ``[Gmin, Gmax]``.

    ``bits=None`` leaves ``g`` unchanged (infinite precision). Values outside the range are
    clamped first: a device cannot be programmed beyond its extreme states.
    """
    if bits is None:
        return g
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    steps = 2**bits - 1
    span = g_max - g_min
    u = ((g.clamp(g_min, g_max) - g_min) / span * steps).round()
    return g_min + u * (span / steps)


def geometric_levels(bits: int, g_min: float, g_max: float = 1.0) -> torch.Tensor:
    """``2**bits`` levels ``g_min * r**k`` with ``r = (g_max / g_min) ** (1 / (2**bits - 1))``."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    if not 0 < g_min < g_max:
        raise ValueError(f"geometric levels need 0 < g_min < g_max, got {g_min}, {g_max}")
    n = 2**bits
    k = torch.arange(n, dtype=torch.float64) / (n - 1)
    out = g_min * (g_max / g_min) ** k
    out[-1] = g_max
    return out


def quantize_to(g: torch.Tensor, levels: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Round every conductance to the nearest of ``levels`` (increasing; ties go up).

    Values beyond the extreme levels go to those levels.
    """
    lv = torch.as_tensor(levels, dtype=torch.float64, device=g.device).flatten()
    if lv.numel() < 1 or bool((lv[1:] <= lv[:-1]).any()):
        raise ValueError("levels must be strictly increasing")
    if lv.numel() == 1:
        return torch.full_like(g, float(lv[0]))
    mid = (lv[1:] + lv[:-1]) / 2
    idx = torch.bucketize(g.detach().double(), mid, right=True)  # float64 ties, exactly
    return lv[idx].to(g.dtype)


def level_set(
    bits: int | None,
    g_min: float,
    spacing: str = "uniform",
    levels: Sequence[float] | None = None,
    g_max: float = 1.0,
) -> torch.Tensor | None:
    """The device's levels as a tensor, or ``None`` for infinite precision."""
    if levels is not None:
        return torch.as_tensor(list(levels), dtype=torch.float64)
    if bits is None:
        return None
    if spacing == "geometric":
        return geometric_levels(bits, g_min, g_max)
    if spacing == "uniform":
        n = 2**bits
        return g_min + torch.arange(n, dtype=torch.float64) * ((g_max - g_min) / (n - 1))
    raise ValueError(f"unknown level spacing {spacing!r} (expected 'uniform' or 'geometric')")
