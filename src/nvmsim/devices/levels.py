"""Limited conductance resolution: a device holds one of ``2**bits`` levels."""

from __future__ import annotations

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
