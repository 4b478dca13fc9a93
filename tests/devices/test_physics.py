"""Pure device physics against its definitions: conductance-dependent noise, 1/f and
telegraph noise, retention, nonuniform levels, dead lines, per-device bounds."""

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nvmsim.devices import drift, faults, levels, noise

N = 400_000


def test_table_std_is_piecewise_linear_interpolation():
    gp, sp = (0.1, 0.4, 1.0), (0.02, 0.05, 0.03)
    g = torch.linspace(0.0, 1.2, 101, dtype=torch.float64)
    expected = np.interp(g.numpy(), gp, sp)
    torch.testing.assert_close(noise.table_std(g, gp, sp), torch.from_numpy(expected))
    via = noise.noise_std(g, "table", 0.0, g_points=gp, sigma_points=sp)
    torch.testing.assert_close(via, torch.from_numpy(expected))
    with pytest.raises(ValueError, match="increasing"):
        noise.table_std(g, (0.5, 0.1), (0.1, 0.1))


def test_polynomial_std_and_its_floor_at_zero():
    g = torch.linspace(0, 1, 11, dtype=torch.float64)
    c = (0.01, 0.08, -0.05)
    torch.testing.assert_close(noise.polynomial_std(g, c), 0.01 + 0.08 * g - 0.05 * g**2)
    assert float(noise.polynomial_std(g, (-0.1, 0.05)).min()) == 0.0
    assert float(noise.noise_std(g, "polynomial", 0, coeffs=c)[-1]) == pytest.approx(0.04)
    for coeffs in [(0.3,), (-0.2,), (0.01, 0.2, -0.3, 0.4)]:  # constant and cubic, numpy's value
        want = np.clip(np.polynomial.polynomial.polyval(g.numpy(), coeffs), 0, None)
        torch.testing.assert_close(noise.polynomial_std(g, coeffs), torch.from_numpy(want))


def test_conductance_dependent_programming_error_has_the_tabulated_std():
    g = torch.cat([torch.full((N,), 0.2), torch.full((N,), 0.8)])
    gen = torch.Generator().manual_seed(0)
    out = noise.add_noise(g, "table", 0, gen, g_points=(0.0, 1.0), sigma_points=(0.01, 0.11))
    for k, s in ((0, 0.03), (1, 0.09)):
        part = out[k * N : (k + 1) * N] - g[k * N]
        assert abs(float(part.mean())) < 5 * s / math.sqrt(N)
        assert float(part.std()) == pytest.approx(s, rel=0.01)


def test_flicker_variance_is_k_g2_log_band():
    g = torch.tensor([0.0, 0.5, 1.0])
    std = noise.flicker_std(g, 1e-4, 10.0, 1e6)
    torch.testing.assert_close(std.square(), 1e-4 * g.square() * math.log(1e5))
    with pytest.raises(ValueError):
        noise.flicker_std(g, 1e-4, 10.0, 1.0)


@pytest.mark.parametrize(
    ("kind", "delta", "p"), [("proportional", -0.3, 0.2), ("additive", 0.1, 0.7)]
)
def test_telegraph_noise_mean_shift_and_variance(kind, delta, p):
    g = torch.full((N,), 0.6, dtype=torch.float64)
    shift = noise.telegraph_shift(g, kind, delta)
    dg = delta * (0.6 if kind == "proportional" else 1.0)
    out = noise.add_telegraph(g, shift, p, torch.Generator().manual_seed(1))
    assert sorted(torch.unique(out).tolist()) == pytest.approx(sorted([0.6, 0.6 + dg]))
    se = math.sqrt(p * (1 - p)) * abs(dg) / math.sqrt(N)
    assert float(out.mean()) == pytest.approx(0.6 + p * dg, abs=5 * se)
    assert float(out.var()) == pytest.approx(p * (1 - p) * dg**2, rel=0.02)
    m, v = noise.read_moments(
        g[:1], torch.zeros(1, dtype=g.dtype), -math.inf, math.inf, shift[:1], p
    )
    assert float(m) == pytest.approx(0.6 + p * dg) and float(v) == pytest.approx(
        p * (1 - p) * dg**2
    )


@settings(max_examples=20, deadline=None)
@given(
    mu=st.floats(0.0, 1.0),
    s=st.floats(0.0, 0.5),
    delta=st.floats(-0.8, 0.8),
    p=st.floats(0.05, 0.95),
    bounds=st.sampled_from([(0.0, math.inf), (0.1, 1.0), (-math.inf, math.inf)]),
)
@example(mu=0.0, s=0.0, delta=0.5, p=0.5007636281889447, bounds=(0.0, math.inf))  # two-point mix
def test_read_moments_match_explicit_sampling(mu, s, delta, p, bounds):
    """Gaussian + telegraph mixture, clipped: exact mean and variance against sampling."""
    lo, hi = bounds
    g = torch.full((N,), mu, dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    shift = noise.telegraph_shift(g, "additive", delta)
    x = noise.add_telegraph(noise.add_gaussian(g, torch.full_like(g, s), gen), shift, p, gen)
    x = noise.clip_to(x, lo, hi)
    m, v = noise.read_moments(g[:1], torch.tensor([s], dtype=g.dtype), lo, hi, shift[:1], p)
    sd = math.sqrt(max(float(x.var()), float(v), 1e-12))
    assert abs(float(m) - float(x.mean())) < 5 * sd / math.sqrt(N) + 1e-9
    # standard error of a sample variance: Var(s^2) = (mu4 - sigma^4 (N - 3) / (N - 1)) / N,
    # which stays positive for a two-point mix at p = 1/2 (where mu4 = sigma^4)
    fourth = float(((x - x.mean()) ** 4).mean())
    var2 = float(x.var()) ** 2
    se_var = math.sqrt(max(fourth - var2 * (N - 3) / (N - 1), 0.0) / N)
    assert abs(float(v) - float(x.var())) < 6 * se_var + 1e-9


def test_censored_moments_with_per_device_bounds():
    mu = torch.tensor([0.5, 0.5], dtype=torch.float64)
    std = torch.tensor([0.3, 0.3], dtype=torch.float64)
    lo, hi = torch.tensor([0.1, 0.2], dtype=torch.float64), torch.tensor([0.8, 1.0]).double()
    m, v = noise.censored_moments(mu, std, lo, hi)
    for i in range(2):
        mi, vi = noise.censored_moments(mu[i : i + 1], std[i : i + 1], float(lo[i]), float(hi[i]))
        torch.testing.assert_close(m[i : i + 1], mi)
        torch.testing.assert_close(v[i : i + 1], vi)
    torch.testing.assert_close(
        noise.clip_to(torch.tensor([0.0, 2.0]).double(), lo, hi), torch.tensor([0.1, 1.0]).double()
    )


def test_retention_relaxes_exponentially_towards_its_target():
    g = torch.tensor([1.0, 0.5, 0.1])
    out = drift.retention(g, 50.0, 100.0, 0.2)
    torch.testing.assert_close(out, 0.2 + (g - 0.2) * math.exp(-0.5))
    assert drift.retention(g, 50.0, math.inf, 0.2) is g
    assert drift.retention(g, 0.0, 100.0, 0.2) is g
    far = drift.retention(g, 1e6, 100.0, torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(far, torch.tensor([0.1, 0.2, 0.3]))


def test_evolve_is_drift_then_retention():
    g0, nu = torch.tensor([0.8]), torch.tensor([0.1])
    out = drift.evolve(g0, 1000.0, nu, 10.0, 500.0, 0.1)
    d = 0.8 * 100.0**-0.1
    assert float(out) == pytest.approx(0.1 + (d - 0.1) * math.exp(-2.0), rel=1e-6)
    other = (0.1 + (0.8 - 0.1) * math.exp(-2.0)) * 100.0**-0.1
    assert abs(float(out) - other) > 1e-3  # the other order is different


def test_geometric_levels_have_a_constant_ratio():
    lv = levels.geometric_levels(3, 0.01)
    assert lv.numel() == 8 and float(lv[0]) == pytest.approx(0.01) and float(lv[-1]) == 1.0
    ratios = lv[1:] / lv[:-1]
    torch.testing.assert_close(ratios, torch.full((7,), 100 ** (1 / 7), dtype=lv.dtype))
    with pytest.raises(ValueError):
        levels.geometric_levels(3, 0.0)


def test_quantize_to_a_listed_level_set():
    lv = (0.1, 0.2, 0.5, 1.0)
    g = torch.tensor([0.0, 0.14, 0.16, 0.34, 0.36, 0.74, 0.76, 2.0])
    out = levels.quantize_to(g, lv)
    torch.testing.assert_close(out, torch.tensor([0.1, 0.1, 0.2, 0.2, 0.5, 0.5, 1.0, 1.0]))
    # uniform level set = the uniform quantiser
    r = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        levels.quantize_to(r, levels.level_set(3, 0.1)), levels.quantize(r, 3, 0.1)
    )


def test_stuck_at_with_per_device_range():
    g = torch.full((50_000,), 0.5)
    s = torch.linspace(0.5, 1.5, 50_000)
    out = faults.stuck_at(g, 0.5, 0.5, 0.1 * s, s, torch.Generator().manual_seed(0))
    low = out < 0.5
    torch.testing.assert_close(out[low], 0.1 * s[low])
    torch.testing.assert_close(out[~low], s[~low])


def test_dead_lines_are_whole_rows_and_columns_of_each_array():
    rows, cols, tr, tc = 200, 300, 64, 50
    gen = torch.Generator().manual_seed(0)
    m = faults.dead_line_mask(rows, cols, tr, tc, 0.1, 0.0, gen)
    blocks = m.view(rows, cols // tc, tc)
    assert (blocks.all(2) | ~blocks.any(2)).all()  # a row of one array is dead or not, whole
    assert not (blocks.all(2).all(1)).all()  # rows are not dead across all arrays together
    assert float(blocks.all(2).double().mean()) == pytest.approx(0.1, abs=0.03)
    m = faults.dead_line_mask(rows, cols, tr, tc, 0.0, 0.2, gen)
    pad = torch.nn.functional.pad(m, (0, 0, 0, 256 - rows))  # 4 row-arrays of 64
    col_blocks = pad.view(4, tr, cols)[:3]  # the full arrays
    assert (col_blocks.all(1) | ~col_blocks.any(1)).all()
    assert float(col_blocks.all(1).double().mean()) == pytest.approx(0.2, abs=0.04)
    assert faults.dead_line_mask(rows, cols, tr, tc, 0.0, 0.0, gen) is None


def test_dead_line_rate_over_many_arrays():
    m = faults.dead_line_mask(4096, 64, 8, 8, 0.05, 0.03, torch.Generator().manual_seed(3))
    # a device is alive iff neither its row nor its column (in its array) is dead
    alive = 1 - float(m.double().mean())
    assert alive == pytest.approx(0.95 * 0.97, abs=0.006)
