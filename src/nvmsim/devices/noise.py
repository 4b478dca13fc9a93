"""Programming error and read noise as pure functions of conductance tensors.

Conductances are normalised so that ``Gmax == 1``; ``sigma`` is relative to ``Gmax``
(additive) or to ``G`` itself (proportional).
"""

from __future__ import annotations

import math

import torch

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def noise_std(g: torch.Tensor, kind: str, sigma: float, g_max: float = 1.0) -> torch.Tensor:
    """Per-device standard deviation of Gaussian conductance noise."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if kind == "additive":
        return torch.full_like(g, sigma * g_max)
    if kind == "proportional":
        return sigma * g.abs()
    raise ValueError(f"unknown noise kind {kind!r} (expected 'additive' or 'proportional')")


def add_noise(
    g: torch.Tensor, kind: str, sigma: float, generator: torch.Generator | None
) -> torch.Tensor:
    """One draw of ``g + N(0, std(g))`` (programming error, or one explicit read)."""
    if sigma == 0:
        return g.clone()
    eps = torch.randn(g.shape, generator=generator, dtype=g.dtype, device=g.device)
    return g + noise_std(g, kind, sigma) * eps


def weight_error(w: torch.Tensor, alpha: float, generator: torch.Generator | None) -> torch.Tensor:
    """Paper 003's programming error on the weight itself: ``(1 + alpha * N(0, 1)) * w``."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return w.clone()
    eps = torch.randn(w.shape, generator=generator, dtype=w.dtype, device=w.device)
    return (1.0 + alpha * eps) * w


def clip_bounds(mode: str, g_min: float, g_max: float = 1.0) -> tuple[float, float]:
    """Lower and upper bound that a physical conductance is clipped to."""
    if mode == "zero":
        return 0.0, math.inf
    if mode == "range":
        return g_min, g_max
    if mode == "none":
        return -math.inf, math.inf
    raise ValueError(f"unknown clip mode {mode!r} (expected 'zero', 'range' or 'none')")


def clip(g: torch.Tensor, mode: str, g_min: float, g_max: float = 1.0) -> torch.Tensor:
    """Clip conductances: at 0 (``zero``), to ``[Gmin, Gmax]`` (``range``) or not (``none``)."""
    lo, hi = clip_bounds(mode, g_min, g_max)
    return g if mode == "none" else g.clamp(lo, hi)


def _phi(z: torch.Tensor) -> torch.Tensor:
    return _INV_SQRT_2PI * torch.exp(-0.5 * z * z)


def _Phi(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / _SQRT2)


def censored_moments(
    mu: torch.Tensor, std: torch.Tensor, lo: float, hi: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``clamp(N(mu, std**2), lo, hi)`` in closed form (float64 inside).

    ``lo`` / ``hi`` may be infinite. With ``std == 0`` the result is ``clamp(mu)`` and 0.
    """
    dtype = mu.dtype
    mu64, s64 = torch.broadcast_tensors(mu.double(), std.double())
    safe = torch.where(s64 > 0, s64, torch.ones_like(s64))
    lo_in, hi_in = lo != -math.inf, hi != math.inf
    a = (lo - mu64) / safe if lo_in else None
    b = (hi - mu64) / safe if hi_in else None
    pa, fa = (_Phi(a), _phi(a)) if a is not None else (0.0, 0.0)
    pb, fb = (_Phi(b), _phi(b)) if b is not None else (1.0, 0.0)
    mass = pb - pa
    # Terms of an infinite bound vanish (their limits are 0).
    lo_t, lo_t2, afa = (lo * pa, lo * lo * pa, a * fa) if lo_in else (0.0, 0.0, 0.0)
    hi_t, hi_t2, bfb = (hi * (1 - pb), hi * hi * (1 - pb), b * fb) if hi_in else (0.0, 0.0, 0.0)
    mean = lo_t + hi_t + mu64 * mass + safe * (fa - fb)
    second = lo_t2 + hi_t2 + (mu64**2 + safe**2) * mass + 2 * mu64 * safe * (fa - fb)
    second = second + safe**2 * (afa - bfb)
    var = (second - mean**2).clamp_min(0.0)
    exact = s64 == 0
    if exact.any():
        mean = torch.where(exact, mu64.clamp(lo, hi), mean)
        var = torch.where(exact, torch.zeros_like(var), var)
    return mean.to(dtype), var.to(dtype)
