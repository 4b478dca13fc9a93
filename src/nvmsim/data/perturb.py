"""Test-set perturbations: pure functions of a tensor of any shape, batched, dtype kept.

Each random draw uses the explicit ``generator`` (a ``torch.Generator`` or an int seed), so the
same seed gives the same perturbed batch. A zero level returns an unchanged copy. ``clip``
(``None`` or ``(lo, hi)``) clamps the result, e.g. back into the [0, 1] pixel range.

- ``gaussian``:    ``x + N(0, sigma)`` per element.
- ``speckle``:     ``x + x * N(0, sigma)`` per element (multiplicative noise).
- ``salt_pepper``: each element independently, with probability ``amount``, is replaced by
  ``high`` (salt, with probability ``salt_vs_pepper``) or ``low`` (pepper). Elements, not
  pixels: the channels of an RGB pixel are hit independently.
"""

from __future__ import annotations

import math

import torch

KINDS = ("gaussian", "speckle", "salt_pepper")

Seed = torch.Generator | int


def _generator(generator: Seed, device: torch.device) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(f"generator must be a torch.Generator or an int seed, got {generator!r}")
    return torch.Generator(device=device).manual_seed(generator)


def _check_float(x: torch.Tensor, fn: str) -> None:
    if not x.is_floating_point():
        raise TypeError(f"{fn} needs a floating-point tensor, got dtype {x.dtype}")


def _check_sigma(sigma: float) -> None:
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")


def _check_prob(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _clip(x: torch.Tensor, clip: tuple[float, float] | None) -> torch.Tensor:
    if clip is None:
        return x
    lo, hi = clip
    if not lo <= hi:
        raise ValueError(f"clip must be (lo, hi) with lo <= hi, got {clip}")
    return x.clamp_(lo, hi)


def gaussian(
    x: torch.Tensor,
    sigma: float,
    *,
    clip: tuple[float, float] | None = None,
    generator: Seed,
) -> torch.Tensor:
    """``x + N(0, sigma)`` element-wise (additive Gaussian noise)."""
    _check_float(x, "gaussian")
    _check_sigma(sigma)
    if sigma == 0:
        return _clip(x.clone(), clip)
    g = _generator(generator, x.device)
    eps = torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)
    return _clip(x + sigma * eps, clip)


def speckle(
    x: torch.Tensor,
    sigma: float,
    *,
    clip: tuple[float, float] | None = None,
    generator: Seed,
) -> torch.Tensor:
    """``x + x * N(0, sigma)`` element-wise (multiplicative noise; zeros stay zero)."""
    _check_float(x, "speckle")
    _check_sigma(sigma)
    if sigma == 0:
        return _clip(x.clone(), clip)
    g = _generator(generator, x.device)
    eps = torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)
    return _clip(x + x * (sigma * eps), clip)


def salt_pepper(
    x: torch.Tensor,
    amount: float,
    *,
    low: float | None = 0.0,
    high: float | None = 1.0,
    salt_vs_pepper: float = 0.5,
    clip: tuple[float, float] | None = None,
    generator: Seed,
) -> torch.Tensor:
    """Each element, with probability ``amount``, becomes ``high`` (salt) or ``low`` (pepper).

    ``low`` / ``high`` default to 0 and 1 (pixels in [0, 1]); None uses the batch's
    ``x.min()`` / ``x.max()`` (e.g. for standardised inputs). ``salt_vs_pepper`` is the
    probability that a hit element becomes ``high``.
    """
    _check_prob(amount, "amount")
    _check_prob(salt_vs_pepper, "salt_vs_pepper")
    if amount == 0 or x.numel() == 0:
        return _clip(x.clone(), clip)
    lo = x.min() if low is None else torch.as_tensor(low, dtype=x.dtype, device=x.device)
    hi = x.max() if high is None else torch.as_tensor(high, dtype=x.dtype, device=x.device)
    g = _generator(generator, x.device)
    hit = torch.rand(x.shape, generator=g, device=x.device) < amount
    salt = torch.rand(x.shape, generator=g, device=x.device) < salt_vs_pepper
    out = torch.where(hit, torch.where(salt, hi, lo), x)
    return _clip(out, clip)


_FUNCS = {"gaussian": gaussian, "speckle": speckle, "salt_pepper": salt_pepper}


def perturb(x: torch.Tensor, kind: str, level: float, **kw) -> torch.Tensor:
    """Apply the perturbation ``kind`` at ``level`` (sigma, or amount for salt & pepper).

    ``kind`` is one of :data:`KINDS` (``"salt-pepper"`` is accepted too) or ``"none"`` (an
    unchanged copy); ``kw`` goes to the function (``generator`` is required except for
    ``"none"``).
    """
    key = str(kind).lower().replace("-", "_")
    if key == "none":
        return x.clone()
    if key not in _FUNCS:
        raise ValueError(f"unknown perturbation kind {kind!r} (expected one of {KINDS} or 'none')")
    return _FUNCS[key](x, level, **kw)
