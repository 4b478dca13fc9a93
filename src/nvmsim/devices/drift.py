"""Conductance change after programming: PCM-style power-law drift and retention loss.

Drift: ``G(t) = G0 * (t / t0) ** (-nu)`` for ``t > t0`` (no drift before ``t0``), with a
per-device exponent ``nu ~ N(nu_mean, nu_std)`` clipped at 0. Retention: relaxation towards a
state, ``G(t) = G_inf + (G - G_inf) * exp(-t / tau)``. Both at once compose as drift first,
then retention of the drifted value (:func:`evolve`).
"""

from __future__ import annotations

import math

import torch


def draw_nu(
    shape: torch.Size | tuple[int, ...],
    nu: float,
    nu_std: float,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Per-device drift exponents ``N(nu, nu_std)``, clipped at 0 (conductance never grows)."""
    if nu < 0 or nu_std < 0:
        raise ValueError(f"drift nu and nu_std must be >= 0, got {nu}, {nu_std}")
    if nu_std == 0:
        return torch.full(shape, nu, dtype=dtype, device=device)
    eps = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    return (nu + nu_std * eps).clamp_min(0.0)


def drift(g0: torch.Tensor, nu: torch.Tensor, t: float, t0: float = 1.0) -> torch.Tensor:
    """Conductance ``t`` seconds after programming; no drift before ``t0``."""
    if t < 0 or t0 <= 0:
        raise ValueError(f"need t >= 0 and t0 > 0, got t={t}, t0={t0}")
    if t <= t0:
        return g0
    return g0 * (t / t0) ** (-nu)


def retention(g: torch.Tensor, t: float, tau: float, g_inf: float | torch.Tensor) -> torch.Tensor:
    """Relaxation ``g_inf + (g - g_inf) * exp(-t / tau)``; ``tau = inf`` leaves ``g``."""
    if t < 0 or not tau > 0:
        raise ValueError(f"need t >= 0 and tau > 0, got t={t}, tau={tau}")
    if tau == math.inf or t == 0:
        return g
    return g_inf + (g - g_inf) * math.exp(-t / tau)


def evolve(
    g0: torch.Tensor,
    t: float,
    nu: torch.Tensor | None = None,
    t0: float = 1.0,
    tau: float = math.inf,
    g_inf: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Drift (if ``nu`` is given) then retention: the conductance ``t`` s after programming."""
    g = g0 if nu is None else drift(g0, nu, t, t0)
    return retention(g, t, tau, g_inf)
