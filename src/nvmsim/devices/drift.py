"""PCM-style power-law conductance drift ``G(t) = G0 * (t / t0) ** (-nu)``."""

from __future__ import annotations

import torch


def draw_nu(
    shape: torch.Size | tuple[int, ...],
    nu: float,
    nu_std: float,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-device drift exponents ``N(nu, nu_std)``, clipped at 0 (conductance never grows)."""
    if nu < 0 or nu_std < 0:
        raise ValueError(f"drift nu and nu_std must be >= 0, got {nu}, {nu_std}")
    if nu_std == 0:
        return torch.full(shape, nu, dtype=dtype)
    return (nu + nu_std * torch.randn(shape, generator=generator, dtype=dtype)).clamp_min(0.0)


def drift(g0: torch.Tensor, nu: torch.Tensor, t: float, t0: float = 1.0) -> torch.Tensor:
    """Conductance ``t`` seconds after programming; no drift before ``t0``."""
    if t < 0 or t0 <= 0:
        raise ValueError(f"need t >= 0 and t0 > 0, got t={t}, t0={t0}")
    if t <= t0:
        return g0
    return g0 * (t / t0) ** (-nu)
