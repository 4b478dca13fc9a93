"""Test-set perturbations: statistics match their definitions, seeds reproduce, bad input fails.

Statistical checks use a fixed seed and n = 200,000 draws; tolerances are 5 standard errors
(mean: sigma / sqrt(n); std: about sigma / sqrt(2 n); a fraction p: sqrt(p (1 - p) / n)).
"""

from __future__ import annotations

import math

import pytest
import torch

from nvmsim.data import KINDS, gaussian, perturb, salt_pepper, speckle

N = 200_000


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _check_normal(d: torch.Tensor, sigma: float) -> None:
    d = d.double()
    n = d.numel()
    assert abs(d.mean().item()) < 5 * sigma / math.sqrt(n)
    assert abs(d.std().item() - sigma) < 5 * sigma / math.sqrt(2 * n)


@pytest.mark.parametrize("sigma", [0.025, 0.3])
def test_gaussian_is_additive_normal(sigma):
    x = torch.rand(N, generator=_gen(1))
    y = gaussian(x, sigma, generator=_gen(2))
    _check_normal(y - x, sigma)


def test_speckle_is_multiplicative_normal():
    sigma = 0.2
    x = torch.rand(4, N // 4, generator=_gen(1)) + 0.05
    y = speckle(x, sigma, generator=_gen(2))
    _check_normal((y - x) / x, sigma)
    # constant input c: noise std c * sigma
    c = torch.full((N,), 0.5)
    _check_normal(speckle(c, sigma, generator=_gen(3)) - c, 0.5 * sigma)
    z = torch.zeros(100)
    assert torch.equal(speckle(z, sigma, generator=_gen(4)), z)


@pytest.mark.parametrize(("amount", "svp"), [(0.1, 0.5), (0.3, 0.8)])
def test_salt_pepper_fractions(amount, svp):
    x = torch.full((N,), 0.5)
    y = salt_pepper(x, amount, salt_vs_pepper=svp, generator=_gen(5))
    hit = y != 0.5
    frac = hit.double().mean().item()
    assert abs(frac - amount) < 5 * math.sqrt(amount * (1 - amount) / N)
    salt = (y[hit] == 1.0).double().mean().item()
    assert abs(salt - svp) < 5 * math.sqrt(svp * (1 - svp) / hit.sum().item())
    assert set(y[hit].unique().tolist()) <= {0.0, 1.0}


def test_salt_pepper_batch_extremes():
    x = torch.linspace(-2.0, 3.0, 1000)
    y = salt_pepper(x, 0.5, low=None, high=None, generator=_gen(0))
    changed = y[y != x]
    assert set(changed.unique().tolist()) <= {-2.0, 3.0} and changed.numel() > 0
    assert torch.equal(salt_pepper(x, 1.0, salt_vs_pepper=1.0, generator=0), torch.ones(1000))


@pytest.mark.parametrize("kind", KINDS)
def test_zero_level_is_identity(kind):
    x = torch.rand(3, 1, 5, 5, generator=_gen(0))
    y = perturb(x, kind, 0.0, generator=_gen(1))
    assert torch.equal(y, x) and y is not x


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output(kind):
    x = torch.rand(2, 3, 8, 8, generator=_gen(0))
    a = perturb(x, kind, 0.2, generator=_gen(7))
    b = perturb(x, kind, 0.2, generator=_gen(7))
    c = perturb(x, kind, 0.2, generator=7)  # an int seed is the same as a seeded generator
    d = perturb(x, kind, 0.2, generator=_gen(8))
    assert torch.equal(a, b) and torch.equal(a, c) and not torch.equal(a, d)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_and_dtype_kept(kind, dtype):
    x = torch.rand(2, 3, 4, 5).to(dtype)
    y = perturb(x, kind, 0.1, generator=0)
    assert y.shape == x.shape and y.dtype == dtype
    assert perturb(x.flatten(), kind, 0.1, generator=0).shape == (120,)


@pytest.mark.parametrize("kind", KINDS)
def test_clip(kind):
    x = torch.rand(1000, generator=_gen(0))
    y = perturb(x, kind, 0.5, clip=(0.0, 1.0), generator=1)
    assert y.min() >= 0 and y.max() <= 1
    if kind != "salt_pepper":
        assert (perturb(x, kind, 0.5, generator=1) > 1).any()


def test_input_untouched_and_none_kind():
    x = torch.rand(100)
    before = x.clone()
    for kind in KINDS:
        perturb(x, kind, 0.3, clip=(0, 1), generator=0)
    assert torch.equal(x, before)
    assert torch.equal(perturb(x, "none", 0.3), x)
    assert torch.equal(
        perturb(x, "salt-pepper", 0.3, generator=3), salt_pepper(x, 0.3, generator=3)
    )


def test_bad_parameters_name_themselves():
    x = torch.rand(10)
    with pytest.raises(ValueError, match="sigma"):
        gaussian(x, -0.1, generator=0)
    with pytest.raises(ValueError, match="sigma"):
        speckle(x, float("nan"), generator=0)
    with pytest.raises(ValueError, match="amount"):
        salt_pepper(x, 1.5, generator=0)
    with pytest.raises(ValueError, match="amount"):
        perturb(x, "salt_pepper", -0.01, generator=0)
    with pytest.raises(ValueError, match="salt_vs_pepper"):
        salt_pepper(x, 0.1, salt_vs_pepper=2, generator=0)
    with pytest.raises(ValueError, match="unknown perturbation kind 'blur'"):
        perturb(x, "blur", 0.1, generator=0)
    with pytest.raises(ValueError, match="clip"):
        gaussian(x, 0.1, clip=(1, 0), generator=0)
    with pytest.raises(TypeError, match="floating-point"):
        gaussian(torch.zeros(3, dtype=torch.uint8), 0.1, generator=0)
    with pytest.raises(TypeError, match="generator"):
        gaussian(x, 0.1, generator=None)
