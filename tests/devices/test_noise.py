import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvmsim.devices import drift, faults, levels, noise


def sample_censored(mu, s, lo, hi, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = mu + s * torch.randn(n, generator=g, dtype=torch.float64)
    return x.clamp(lo, hi)


@settings(max_examples=25, deadline=None)
@given(
    mu=st.floats(-1.0, 2.0),
    s=st.floats(0.01, 1.0),
    bounds=st.sampled_from([(0.0, math.inf), (0.1, 1.0), (-math.inf, math.inf), (-math.inf, 0.5)]),
)
def test_censored_moments_match_explicit_sampling(mu, s, bounds):
    lo, hi = bounds
    if hi <= lo:
        return
    n = 400_000
    x = sample_censored(mu, s, lo, hi, n)
    m, v = noise.censored_moments(
        torch.tensor([mu], dtype=torch.float64), torch.tensor([s], dtype=torch.float64), lo, hi
    )
    se_mean = math.sqrt(max(float(x.var()), float(v)) / n)
    assert abs(float(m) - float(x.mean())) < 5 * se_mean + 1e-9
    # variance of the sample variance ~ 2 s^4 / n for near-Gaussian data; 6 standard errors
    assert abs(float(v) - float(x.var())) < 6 * math.sqrt(2.0 / n) * s**2 + 1e-9


def test_censored_moments_limits():
    mu = torch.tensor([0.3, 0.7, 2.0])
    m, v = noise.censored_moments(mu, torch.zeros(3), 0.0, 1.0)
    assert torch.equal(m, torch.tensor([0.3, 0.7, 1.0])) and torch.equal(v, torch.zeros(3))
    m, v = noise.censored_moments(mu, torch.full((3,), 0.1), -math.inf, math.inf)
    torch.testing.assert_close(m, mu)
    torch.testing.assert_close(v, torch.full((3,), 0.01))


def _quad_moments(mu: float, s: float, lo: float, hi: float) -> tuple[float, float]:
    """Moments of the clamped Gaussian by 50-digit quadrature (the oracle)."""
    import mpmath

    mpmath.mp.dps = 50
    m_, s_, lo_, hi_ = (mpmath.mpf(v) for v in (mu, s, lo, hi))

    def moment(k):
        body = mpmath.quad(lambda x: x**k * mpmath.npdf(x, m_, s_), [lo_, m_, hi_])
        return lo_**k * mpmath.ncdf(lo_, m_, s_) + hi_**k * (1 - mpmath.ncdf(hi_, m_, s_)) + body

    e1 = moment(1)
    return float(e1), float(moment(2) - e1**2)


@pytest.mark.parametrize(
    ("mu", "s"),
    [(1.0006376476716552, 1.8462710723718946e-4), (0.5, 0.2), (0.1, 0.02), (-0.3, 0.05)],
)
def test_censored_moments_are_precise_when_mostly_clamped(mu, s):
    """Moments about the clamped mean: no cancellation, in float64 and float32."""
    m_true, v_true = _quad_moments(mu, s, 0.1, 1.0)
    m, v = noise.censored_moments(
        torch.tensor([mu], dtype=torch.float64), torch.tensor([s], dtype=torch.float64), 0.1, 1.0
    )
    assert abs(float(m) - m_true) <= 1e-12 * s + 1e-15
    assert abs(float(v) - v_true) <= 1e-9 * s**2
    m32, v32 = noise.censored_moments(torch.tensor([mu]), torch.tensor([s]), 0.1, 1.0)
    assert abs(float(m32) - m_true) <= 1e-5 * s + 2e-7 * abs(m_true)
    assert abs(float(v32) - v_true) <= 1e-5 * s**2


def test_noise_std_and_add_noise():
    g = torch.linspace(0, 1, 5)
    assert torch.equal(noise.noise_std(g, "additive", 0.1), torch.full((5,), 0.1))
    torch.testing.assert_close(noise.noise_std(g, "proportional", 0.1), 0.1 * g)
    with pytest.raises(ValueError, match="sigma"):
        noise.noise_std(g, "additive", -1)
    gen = torch.Generator().manual_seed(1)
    big = torch.full((200_000,), 0.5)
    out = noise.add_noise(big, "proportional", 0.2, gen)
    assert abs(float(out.std()) - 0.1) < 0.001
    assert torch.equal(noise.add_noise(big, "additive", 0.0, gen), big)


def test_weight_error_is_multiplicative():
    w = torch.full((100_000,), -2.0)
    out = noise.weight_error(w, 0.5, torch.Generator().manual_seed(0))
    assert abs(float(out.mean()) + 2.0) < 0.01
    assert abs(float(out.std()) - 1.0) < 0.01
    assert torch.equal(noise.weight_error(torch.zeros(10), 0.5, None), torch.zeros(10))


def test_quantize_levels():
    g = torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    q = levels.quantize(g, 3, 0.1)
    assert len(torch.unique(q)) == 8
    assert float(q.min()) == pytest.approx(0.1) and float(q.max()) == pytest.approx(1.0)
    step = 0.9 / 7
    assert float((q - g.clamp(0.1, 1)).abs().max()) <= step / 2 + 1e-6
    assert levels.quantize(g, None, 0.1) is g


def test_stuck_at_fault_rates():
    g = torch.full((100_000,), 0.5)
    out = faults.stuck_at(g, 0.1, 0.05, 0.01, 1.0, torch.Generator().manual_seed(0))
    p_min = float((out == 0.01).double().mean())
    p_max = float((out == 1.0).double().mean())
    # binomial standard error ~ 1e-3
    assert abs(p_min - 0.1) < 0.005 and abs(p_max - 0.05) < 0.004
    assert float((out == 0.5).double().mean()) == pytest.approx(1 - p_min - p_max)


def test_drift_power_law():
    g0 = torch.tensor([1.0, 0.5])
    nu = torch.tensor([0.1, 0.0])
    out = drift.drift(g0, nu, 100.0, t0=1.0)
    torch.testing.assert_close(out, torch.tensor([100.0**-0.1, 0.5]))
    assert drift.drift(g0, nu, 0.5, t0=1.0) is g0
