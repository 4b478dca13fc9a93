"""Weight <-> conductance mapping: differential pair or offset (reference) column.

Conductances are normalised (``Gmax == 1``). A weight ``w`` in ``[-Wmax, Wmax]`` becomes

* differential: ``G+ = Gmin + (1 - Gmin) * max(w, 0) / Wmax`` and ``G-`` likewise for
  ``max(-w, 0)``; ``w = (G+ - G-) * Wmax / (1 - Gmin)``;
* offset: ``G = Gmin + (1 - Gmin) * (w + Wmax) / (2 Wmax)`` against a reference device
  ``Gref = (1 + Gmin) / 2`` on every row; ``w = (G - Gref) * 2 Wmax / (1 - Gmin)``.
"""

from __future__ import annotations

import math

import torch


def weight_range(w: torch.Tensor, percentile: float | None = None) -> float:
    """``Wmax = max|W|`` of a layer, or a percentile of ``|W|`` (larger weights are clipped)."""
    a = w.detach().abs().flatten()
    if a.numel() == 0:
        return 1.0
    top = float(a.max())  # NaN and inf propagate: one reduction checks them all
    if not math.isfinite(top):
        raise ValueError("weights contain NaN or inf")
    wmax = top if percentile is None else float(torch.quantile(a.double(), percentile / 100))
    return wmax if wmax > 0 else 1.0


def scale(mapping: str, wmax: float, g_min: float) -> float:
    """Factor that turns a conductance difference back into weight units."""
    span = 1.0 - g_min
    if mapping == "differential":
        return wmax / span
    if mapping == "offset":
        return 2.0 * wmax / span
    raise ValueError(f"unknown mapping {mapping!r} (expected 'differential' or 'offset')")


def to_conductances(w: torch.Tensor, mapping: str, wmax: float, g_min: float) -> torch.Tensor:
    """Target conductances, stacked on a leading axis: ``(G+, G-)`` or ``(G,)``."""
    wc = w.clamp(-wmax, wmax).div_(wmax)
    span = 1.0 - g_min
    if mapping == "differential":  # the positive part on G+, the negative part on G-
        g = w.new_empty(2, *w.shape)
        torch.clamp_min(wc, 0, out=g[0]).mul_(span).add_(g_min)
        torch.clamp_max(wc, 0, out=g[1]).mul_(-span).add_(g_min)
        return g
    if mapping == "offset":
        return (g_min + span * (wc + 1) / 2).unsqueeze(0)
    raise ValueError(f"unknown mapping {mapping!r} (expected 'differential' or 'offset')")


def reference_level(g_min: float) -> float:
    """Conductance of the offset mapping's reference devices (weight zero)."""
    return (1.0 + g_min) / 2
