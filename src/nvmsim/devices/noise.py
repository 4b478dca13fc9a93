"""Programming error and read noise as pure functions of conductance tensors.

Conductances are normalised so that ``Gmax == 1``; ``sigma`` is relative to ``Gmax``
(additive) or to ``G`` itself (proportional); ``table`` and ``polynomial`` give the std as a
function of ``G`` directly (in units of Gmax).

Per-read noise of one device is ``G + N(0, s(G)**2) + B * dG`` clipped to ``[lo, hi]``, where
the Gaussian part ``s**2`` sums the read noise and 1/f noise variances and ``B ~ Bernoulli(p)``
is random telegraph noise. :func:`read_moments` gives this device's mean and variance exactly
(a two-component mixture of censored Gaussians); the tile's moment identity then treats the
column sum as Gaussian with those moments, while explicit sampling (the oracle) draws every
term as defined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Bound = float | torch.Tensor

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_ZMAX = 40.0


def table_std(
    g: torch.Tensor, g_points: Sequence[float], sigma_points: Sequence[float]
) -> torch.Tensor:
    """Std interpolated piecewise-linearly in a table ``g_points -> sigma_points``.

    ``g_points`` must increase strictly; beyond the ends the std is the end value (as
    ``numpy.interp``).
    """
    xp = torch.tensor(list(g_points), dtype=torch.float64, device=g.device)
    fp = torch.tensor(list(sigma_points), dtype=torch.float64, device=g.device)
    if xp.numel() < 2 or xp.numel() != fp.numel() or bool((xp[1:] <= xp[:-1]).any()):
        raise ValueError("need >= 2 strictly increasing g_points and as many sigma_points")
    if bool((fp < 0).any()):
        raise ValueError("sigma_points must be >= 0")
    x = g.detach().double().clamp(float(xp[0]), float(xp[-1]))
    i = torch.bucketize(x, xp).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return (f0 + (x - x0) / (x1 - x0) * (f1 - f0)).to(g.dtype)


def polynomial_std(g: torch.Tensor, coeffs: Sequence[float]) -> torch.Tensor:
    """Std ``max(0, sum_k coeffs[k] * g**k)`` (aihwkit's PCM programming-noise form)."""
    if not coeffs:
        raise ValueError("a polynomial needs at least one coefficient")
    *rest, last = coeffs
    if not rest:
        return torch.full_like(g, max(0.0, last))
    out = (g * last).add_(rest[-1])
    for c in reversed(rest[:-1]):  # Horner, in place
        out.mul_(g).add_(c)
    return out.clamp_min_(0.0)


def noise_std(
    g: torch.Tensor,
    kind: str,
    sigma: float,
    g_max: float = 1.0,
    *,
    g_points: Sequence[float] = (),
    sigma_points: Sequence[float] = (),
    coeffs: Sequence[float] = (),
) -> torch.Tensor:
    """Per-device standard deviation of Gaussian conductance noise.

    ``additive``: ``sigma * g_max``; ``proportional``: ``sigma * |g|``; ``table`` and
    ``polynomial``: a function of ``g`` (see :func:`table_std`, :func:`polynomial_std`).
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if kind == "additive":
        return torch.full_like(g, sigma * g_max)
    if kind == "proportional":
        return g.abs().mul_(sigma)
    if kind == "table":
        return table_std(g, g_points, sigma_points)
    if kind == "polynomial":
        return polynomial_std(g, coeffs)
    raise ValueError(
        f"unknown noise kind {kind!r} (expected 'additive', 'proportional', 'table' or "
        "'polynomial')"
    )


def add_noise(
    g: torch.Tensor,
    kind: str,
    sigma: float,
    generator: torch.Generator | None,
    **table: Sequence[float],
) -> torch.Tensor:
    """One draw of ``g + N(0, std(g))`` (programming error, or one explicit read)."""
    if kind in ("additive", "proportional") and sigma == 0:
        return g.clone()
    return add_gaussian(g, noise_std(g, kind, sigma, **table), generator)


def add_gaussian(
    g: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """One draw of ``g + N(0, std**2)`` elementwise."""
    eps = torch.randn(g.shape, generator=generator, dtype=g.dtype, device=g.device)
    return eps.mul_(std).add_(g)


def flicker_std(g: torch.Tensor, k: float, f_min: float, f_max: float) -> torch.Tensor:
    """Std of 1/f noise integrated over ``[f_min, f_max]``: ``|g| * sqrt(k * ln(f_max/f_min))``.

    The power spectral density ``S(f) = k * G**2 / f`` integrates to ``k G**2 ln(f_max/f_min)``
    (Joshi et al., Nat. Commun. 11, 2473, 2020; aihwkit's PCM read noise).
    """
    if k < 0 or not 0 < f_min < f_max:
        raise ValueError(f"need k >= 0 and 0 < f_min < f_max, got {k}, {f_min}, {f_max}")
    return g.abs() * math.sqrt(k * math.log(f_max / f_min))


def telegraph_shift(g: torch.Tensor, kind: str, delta: float, g_max: float = 1.0) -> torch.Tensor:
    """Conductance step ``dG`` of random telegraph noise: ``delta * g_max`` or ``delta * g``."""
    if kind == "additive":
        return torch.full_like(g, delta * g_max)
    if kind == "proportional":
        return delta * g
    raise ValueError(f"unknown telegraph noise kind {kind!r}")


def add_telegraph(
    g: torch.Tensor, shift: torch.Tensor, p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """One draw of ``g + B * shift`` with ``B ~ Bernoulli(p)`` per device."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    u = torch.rand(g.shape, generator=generator, dtype=g.dtype, device=g.device)
    return g + torch.where(u < p, shift, torch.zeros_like(shift))


def read_moments(
    g: torch.Tensor,
    std: torch.Tensor,
    lo: Bound,
    hi: Bound,
    shift: torch.Tensor | None = None,
    p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and variance of one read ``clamp(g + N(0, std**2) + B * shift, lo, hi)``.

    Without telegraph noise this is :func:`censored_moments`; with it, the read is a mixture
    (weight ``1 - p`` at ``g``, ``p`` at ``g + shift``) of two censored Gaussians, whose first
    two moments combine exactly.
    """
    if shift is None or p == 0:
        return censored_moments(g, std, lo, hi)
    m0, v0 = censored_moments(g.double(), std.double(), lo, hi)
    m1, v1 = censored_moments((g + shift).double(), std.double(), lo, hi)
    mean = (1 - p) * m0 + p * m1
    var = (1 - p) * (v0 + m0 * m0) + p * (v1 + m1 * m1) - mean * mean
    return mean.to(g.dtype), var.clamp_min(0.0).to(g.dtype)


def weight_error(w: torch.Tensor, alpha: float, generator: torch.Generator | None) -> torch.Tensor:
    """Paper 003's programming error on the weight itself: ``(1 + alpha * N(0, 1)) * w``."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return w.clone()
    eps = torch.randn(w.shape, generator=generator, dtype=w.dtype, device=w.device)
    return (1.0 + alpha * eps) * w


def clip_bounds(mode: str, g_min: Bound, g_max: Bound = 1.0) -> tuple[Bound, Bound]:
    """Lower and upper bound that a physical conductance is clipped to.

    ``g_min`` / ``g_max`` may be per-device tensors (devices with their own range).
    """
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
    return g if mode == "none" else clip_to(g, lo, hi)


def clip_to(g: torch.Tensor, lo: Bound, hi: Bound) -> torch.Tensor:
    """``g`` clamped to ``[lo, hi]``; bounds are numbers (maybe infinite) or tensors."""
    lo_t, hi_t = _is_tensor_or_finite(lo, -math.inf), _is_tensor_or_finite(hi, math.inf)
    if not lo_t and not hi_t:
        return g
    if isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor):
        return g.clamp(
            torch.as_tensor(lo, dtype=g.dtype) if lo_t else None,
            torch.as_tensor(hi, dtype=g.dtype) if hi_t else None,
        )
    return g.clamp(lo if lo_t else None, hi if hi_t else None)


def _is_tensor_or_finite(b: Bound, inf: float) -> bool:
    return isinstance(b, torch.Tensor) or b != inf


def _phi(z: torch.Tensor) -> torch.Tensor:
    return _INV_SQRT_2PI * torch.exp(-0.5 * z * z)


def _Phi(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / _SQRT2)


_FAR = 12.0  # Phi(-12) ~ 2e-33: a bound this many stds away changes nothing in float64


def _all_far(mu: torch.Tensor, std: torch.Tensor, lo: Bound, hi: Bound) -> bool:
    """Every bound is at least ``_FAR`` stds away (for a device without noise: not crossed):
    the moments are the Gaussian's own."""
    reach = _FAR * std
    for bound, side in ((lo, 1.0), (hi, -1.0)):
        if not _is_tensor_or_finite(bound, -side * math.inf):
            continue
        gap = mu - bound if side > 0 else bound - mu
        if not bool((gap >= reach).all()):
            return False
    return True


def censored_moments(
    mu: torch.Tensor, std: torch.Tensor, lo: Bound, hi: Bound
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``clamp(N(mu, std**2), lo, hi)`` in closed form.

    ``lo`` / ``hi`` may be infinite, or finite per-device tensors. With ``std == 0`` the result
    is ``clamp(mu)`` and 0. The moments are taken about ``m0 = clamp(mu, lo, hi)`` and the
    masses in the tails use ``erfc`` on the side where they are small, so no term cancels
    and the tensor's own precision suffices (float32 agrees with float64 to ~1e-5 of ``std**2``).
    """
    mu, std = torch.broadcast_tensors(mu, std)
    if _all_far(mu, std, lo, hi):
        return mu.clone(), std.square()
    lo_in, hi_in = _is_tensor_or_finite(lo, -math.inf), _is_tensor_or_finite(hi, math.inf)
    positive = bool((std > 0).all())
    safe = std if positive else torch.where(std > 0, std, torch.ones_like(std))
    m0 = clip_to(mu, lo, hi)
    e_mu = mu - m0  # 0 inside the range
    var_g = std.square()
    # Standardised bounds, clamped where Phi and phi are exactly 0 / 1 (a denormal std would
    # otherwise give inf * 0 = NaN). Each bound adds its tail's terms to E[D], E[D^2] of
    # D = clamp(X) - m0; the mass inside comes from the smaller tail.
    zmax = _ZMAX if mu.dtype == torch.float64 else 15.0
    ed = torch.zeros_like(mu)
    ed2 = torch.zeros_like(mu)
    z_of = {}
    for bound, sign in ((lo, -1.0), (hi, 1.0)):
        if not (lo_in if sign < 0 else hi_in):
            continue
        e = bound - m0
        z = z_of[sign] = ((bound - mu) / safe).clamp_(-zmax, zmax)
        tail = _Phi(-sign * z)  # mass beyond the bound, clamped onto it
        f = _phi(z)
        ed += e * tail
        ed -= sign * std * f  # the Gaussian part's own tail
        ed2 += e.square() * tail
        ed2 -= sign * (2 * e_mu * std * f + var_g * z * f)
    a, b = z_of.get(-1.0), z_of.get(1.0)
    if a is not None and b is not None:  # mass inside from the smaller tail: no cancellation
        inside = torch.where(a > 0, _Phi(-a) - _Phi(-b), _Phi(b) - _Phi(a))
    elif a is not None:
        inside = _Phi(-a)
    else:
        inside = _Phi(b)
    ed += e_mu * inside
    ed2 += (e_mu.square() + var_g) * inside
    mean = m0 + ed
    var = (ed2 - ed.square()).clamp_min_(0.0)
    if not positive:
        exact = std == 0
        mean = torch.where(exact, m0, mean)
        var = torch.where(exact, torch.zeros_like(var), var)
    return mean, var
