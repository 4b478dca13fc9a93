"""The moment identity against explicit per-device sampling, and the tile's periphery."""

import math

import pytest
import torch

from nvmsim.config import AnalogConfig, validate
from nvmsim.crossbar.converters import quantize_symmetric
from nvmsim.crossbar.tile import AnalogTile, NotProgrammedError, add_reads

REPEATS = 20_000


def make_cfg(mode, **device):
    return validate(
        AnalogConfig,
        {
            "device": device,
            "crossbar": {"mapping": mode, "tile_cols": 4, "tile_rows": 8},
        },
    )


def read_many(tile, x, mode, seed):
    tile.config = tile.config.model_copy(update={"read_noise_mode": mode})
    g = torch.Generator().manual_seed(seed)
    xs = x.repeat_interleave(REPEATS, dim=0)
    return tile.read(xs, g).view(x.shape[0], REPEATS, -1)


@pytest.mark.parametrize(
    ("mode", "device"),
    [
        (
            "differential",
            {"read_noise": {"kind": "proportional", "sigma": 0.5}, "on_off_ratio": 10},
        ),
        ("differential", {"read_noise": {"kind": "additive", "sigma": 0.2}, "on_off_ratio": 20}),
        ("differential", {"read_noise": {"kind": "additive", "sigma": 0.1}, "clip": "none"}),
        ("offset", {"read_noise": {"kind": "proportional", "sigma": 0.3}, "on_off_ratio": 5}),
        (
            "offset",
            {"read_noise": {"kind": "additive", "sigma": 0.3}, "clip": "range", "on_off_ratio": 4},
        ),
    ],
)
def test_moment_identity_matches_explicit_sampling(mode, device):
    """Mean, variance and (for the shared reference column) covariance of the outputs agree.

    Tolerances: 5 standard errors for means; variances within 5 % (the standard error of a
    sample variance over 20,000 reads is about 1 %), covariances within 0.06 of the variance.
    """
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(6, 20, generator=gen)
    x = torch.rand(3, 20, generator=gen) * 2 - 0.5
    tile = AnalogTile(make_cfg(mode, **device))
    tile.program(w, torch.Generator().manual_seed(0))
    ym = read_many(tile, x, "moment", 1)
    ys = read_many(tile, x, "sample", 2)
    for k in range(x.shape[0]):
        a, b = ym[k], ys[k]
        se = (b.var(0) / REPEATS).sqrt()
        assert ((a.mean(0) - b.mean(0)).abs() <= 5 * se * 1.5).all()
        torch.testing.assert_close(a.var(0), b.var(0), rtol=0.05, atol=0)
        ca, cb = torch.cov(a.T), torch.cov(b.T)
        scale = cb.diagonal().sqrt()
        corr_a = ca / scale[:, None] / scale[None, :]
        corr_b = cb / scale[:, None] / scale[None, :]
        assert (corr_a - corr_b).abs().max() < 0.06
    if mode == "offset":
        # outputs 0..3 share array 0's reference column: their noise is correlated
        c = torch.corrcoef(ys[0].T)
        assert c[0, 1] > 0.05 and abs(float(c[0, 5])) < 0.05


def test_zero_noise_is_exact_and_uses_no_variance():
    w = torch.randn(5, 300)
    tile = AnalogTile(validate(AnalogConfig, {"device": {"on_off_ratio": 100}}))
    tile.program(w)
    x = torch.randn(4, 300)
    torch.testing.assert_close(tile.read(x), x @ w.T, rtol=1e-5, atol=1e-5)
    assert not tile.noisy


def test_additive_noise_takes_the_scalar_path():
    cfg = validate(
        AnalogConfig,
        {"device": {"read_noise": {"kind": "additive", "sigma": 0.02}, "clip": "none"}},
    )
    tile = AnalogTile(cfg)
    tile.program(torch.randn(4, 10))
    assert tile.var_const is not None and tile.w_var is None
    # two devices per weight, each with std sigma * Gmax, in weight units
    assert tile.var_const == pytest.approx(2 * (0.02 * tile.scale) ** 2)


def test_adc_quantises_each_array_partial_sum():
    cfg = validate(
        AnalogConfig,
        {"converter": {"adc_bits": 4, "adc_range": 2.0}, "crossbar": {"tile_rows": 8}},
    )
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 20, generator=gen) * 0.3
    x = torch.rand(5, 20, generator=gen)
    tile = AnalogTile(cfg)
    tile.program(w)
    expected = sum(
        quantize_symmetric(x[:, s : s + 8] @ w[:, s : s + 8].T, 4, 2.0) for s in (0, 8, 16)
    )
    torch.testing.assert_close(tile.read(x), expected)


def test_programming_error_is_drawn_once_and_reproducible():
    cfg = validate(AnalogConfig, {"device": {"programming_error": {"sigma": 0.1}}})
    w = torch.randn(4, 6)
    a, b = AnalogTile(cfg), AnalogTile(cfg)
    a.program(w, torch.Generator().manual_seed(5))
    b.program(w, torch.Generator().manual_seed(5))
    x = torch.randn(2, 6)
    assert torch.equal(a.read(x), a.read(x))
    assert torch.equal(a.read(x), b.read(x))
    assert not torch.allclose(a.read(x), x @ w.T)


def test_weight_error_of_paper_003():
    cfg = validate(
        AnalogConfig, {"device": {"programming_error": {"kind": "weight", "sigma": 0.4}}}
    )
    w = torch.randn(50, 40)
    tile = AnalogTile(cfg)
    tile.program(w, torch.Generator().manual_seed(1))
    eps = torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(tile.w_mean[0].t(), (1 + 0.4 * eps) * w, rtol=1e-5, atol=1e-5)


def test_errors():
    tile = AnalogTile()
    with pytest.raises(NotProgrammedError):
        tile.read(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="NaN"):
        tile.program(torch.tensor([[1.0, float("nan")]]))
    tile.program(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        tile.read(torch.zeros(1, 4))


def test_ir_drop_tile_equals_per_array_circuit_solves():
    """Each array (G+ and G- separately, 8x4 blocks) is solved exactly; the tile's read is
    the difference of the arrays' column currents, in weight units."""
    from nvmsim.crossbar.mapping import to_conductances, weight_range
    from nvmsim.crossbar.parasitics import solve_currents

    cfg = validate(
        AnalogConfig,
        {
            "device": {"on_off_ratio": 10, "g_max_siemens": 1e-4},
            "crossbar": {"tile_rows": 8, "tile_cols": 4, "r_row": 2.0, "r_col": 3.0},
        },
    )
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 10, generator=gen)
    x = torch.rand(3, 10, generator=gen)
    tile = AnalogTile(cfg)
    tile.program(w)
    y = tile.read(x).double()
    g = to_conductances(w.t().double(), "differential", weight_range(w), 0.1) * 1e-4
    expected = torch.zeros(3, 6, dtype=torch.float64)
    for r0 in (0, 8):
        for c0 in (0, 4):
            xs = x[:, r0 : r0 + 8].double()
            for k, sign in ((0, 1.0), (1, -1.0)):
                block = g[k, r0 : r0 + 8, c0 : c0 + 4]
                expected[:, c0 : c0 + 4] += sign * solve_currents(block, xs, 2.0, 3.0)
    expected *= tile.scale / 1e-4
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)
    ideal = x @ w.T
    assert not torch.allclose(y.float(), ideal, atol=1e-3)  # the wires do cost accuracy


def test_sample_mode_refuses_parasitics():
    from nvmsim.config import ConfigError

    with pytest.raises(ConfigError, match="IR drop"):
        validate(AnalogConfig, {"read_noise_mode": "sample", "crossbar": {"r_row": 1.0}})


# ---------------------------------------------------------------- device physics in the tile


def _tile(device, w, seed=0, **analog):
    cfg = validate(AnalogConfig, {"device": device, **analog})
    tile = AnalogTile(cfg)
    tile.program(w, torch.Generator().manual_seed(seed))
    return tile


@pytest.mark.parametrize(
    ("mode", "device"),
    [
        (
            "differential",
            {
                "read_noise": {
                    "kind": "table",
                    "g_points": [0, 0.5, 1],
                    "sigma_points": [0.3, 0.05, 0.2],
                },
                "on_off_ratio": 10,
            },
        ),
        (
            "offset",
            {"read_noise": {"kind": "polynomial", "coeffs": [0.05, 0.3, -0.1]}, "clip": "range"},
        ),
        ("differential", {"flicker_noise": {"k": 0.01, "f_min": 1, "f_max": 1e4}}),
        (
            "differential",
            {
                "telegraph_noise": {"kind": "proportional", "delta": -0.6, "p": 0.3},
                "read_noise": {"kind": "additive", "sigma": 0.05},
                "on_off_ratio": 10,
                "clip": "range",
            },
        ),
        ("offset", {"telegraph_noise": {"kind": "additive", "delta": 0.4, "p": 0.5}}),
        (
            "differential",
            {
                "read_noise": {"kind": "proportional", "sigma": 0.3},
                "range_std": 0.3,
                "clip": "range",
                "on_off_ratio": 5,
            },
        ),
        (
            "offset",
            {
                "read_noise": {"kind": "additive", "sigma": 0.1},
                "dead_rows": 0.2,
                "dead_cols": 0.2,
                "clip": "range",
                "on_off_ratio": 10,
            },
        ),
        (
            "differential",
            {
                "read_noise": {"kind": "proportional", "sigma": 0.2},
                "drift_nu": 0.1,
                "drift_nu_std": 0.05,
                "retention": {"tau": 1e4, "target": "mid"},
                "drift_compensation": True,
                "on_off_ratio": 10,
            },
        ),
    ],
)
def test_new_read_effects_moment_identity_matches_explicit_sampling(mode, device):
    """Every per-read effect, alone and combined with the others: the moment path's output
    mean and variance equal explicit per-device sampling (telegraph as a Bernoulli draw)."""
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(6, 20, generator=gen)
    x = torch.rand(3, 20, generator=gen) * 2 - 0.5
    tile = AnalogTile(make_cfg(mode, **device))
    tile.program(w, torch.Generator().manual_seed(0))
    tile.drift_to(3600.0)
    assert tile.noisy
    ym = read_many(tile, x, "moment", 1)
    ys = read_many(tile, x, "sample", 2)
    for k in range(x.shape[0]):
        a, b = ym[k], ys[k]
        se = (b.var(0) / REPEATS).sqrt()
        assert ((a.mean(0) - b.mean(0)).abs() <= 7.5 * se + 1e-6).all()
        torch.testing.assert_close(a.var(0), b.var(0), rtol=0.06, atol=1e-9)


HELD_DEVICES = {
    "telegraph, clipped, offset": (
        "offset",
        {
            "telegraph_noise": {"kind": "proportional", "delta": -0.6, "p": 0.3},
            "read_noise": {"kind": "additive", "sigma": 0.1},
            "clip": "range",
            "on_off_ratio": 5,
        },
    ),
    "drift, compensated": (
        "differential",
        {
            "read_noise": {"kind": "proportional", "sigma": 0.3},
            "drift_nu": 0.1,
            "drift_nu_std": 0.05,
            "drift_compensation": True,
            "on_off_ratio": 10,
        },
    ),
    "drift, per-column compensation, offset": (
        "offset",
        {
            "read_noise": {"kind": "proportional", "sigma": 0.3},
            "drift_nu": 0.1,
            "drift_nu_std": 0.05,
            "drift_compensation": "column",
            "on_off_ratio": 10,
        },
    ),
}


@pytest.mark.parametrize("case", HELD_DEVICES)
def test_a_held_read_is_one_draw_with_the_moments_of_a_read(case):
    """``hold_read``: reads repeat exactly while held; over many holds an output has the mean
    and variance of one read by the moment identity (the oracle here is the moment path:
    the held draw samples every device explicitly); drift compensation keeps its factor."""
    mode, device = HELD_DEVICES[case]
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(6, 20, generator=gen, dtype=torch.float64)
    x = torch.rand(2, 20, generator=gen, dtype=torch.float64) * 2 - 0.5
    tile = AnalogTile(make_cfg(mode, **device))
    tile.program(w, torch.Generator().manual_seed(0))
    tile.drift_to(3600.0)
    factor, draws = tile.compensation, torch.Generator().manual_seed(1)
    alpha = None if tile._alpha is None else tile._alpha.clone()
    ym = read_many(tile, x, "moment", 2)
    held = []
    for _ in range(4000):
        tile.hold_read(draws)
        held.append(tile.read(x, torch.Generator().manual_seed(9)))
    assert tile.held and not tile.noisy and tile.compensation == factor
    assert alpha is None or torch.equal(tile._alpha, alpha)  # the expected read's factors
    torch.testing.assert_close(tile.read(x, None), held[-1], rtol=0, atol=0)
    yh = torch.stack(held, 1)  # (inputs, holds, outputs)
    for k in range(x.shape[0]):
        se = (ym[k].var(0) / yh.shape[1]).sqrt()
        assert ((yh[k].mean(0) - ym[k].mean(0)).abs() <= 5 * se).all()
        torch.testing.assert_close(yh[k].var(0), ym[k].var(0), rtol=0.1, atol=0)
    tile.drift_to(3600.0)  # a drift (like programming) reads with fresh noise again
    assert not tile.held and tile.noisy
    tile.drift_to(3600.0, hold=torch.Generator().manual_seed(7))  # held at once: the same
    at_once = tile.w_mean.clone()
    tile.drift_to(3600.0)
    tile.hold_read(torch.Generator().manual_seed(7))
    assert torch.equal(tile.w_mean, at_once) and tile.compensation == factor
    fresh = AnalogTile(tile.config)  # programmed held: as programmed, then held
    fresh.program(w, torch.Generator().manual_seed(0), hold=torch.Generator().manual_seed(7))
    tile.program(w, torch.Generator().manual_seed(0))
    tile.hold_read(torch.Generator().manual_seed(7))
    assert fresh.held and torch.equal(fresh.w_mean, tile.w_mean)


def test_effects_off_are_exact_and_cost_nothing():
    """Every new effect at its zero setting: analog == torch, no variance, no extra state."""
    w = torch.randn(5, 40)
    x = torch.randn(4, 40)
    device = {
        "on_off_ratio": 100,
        "flicker_noise": {"k": 0.0},
        "telegraph_noise": {"delta": 0.0, "p": 0.5},
        "retention": {"tau": math.inf},
        "range_std": 0.0,
        "dead_rows": 0.0,
        "dead_cols": 0.0,
        "drift_compensation": True,  # no drift: the ratio is exactly 1
        "read_noise": {"kind": "polynomial", "coeffs": [0.0]},
    }
    tile = _tile(device, w)
    tile.drift_to(1e6)
    torch.testing.assert_close(tile.read(x), x @ w.T, rtol=1e-5, atol=1e-5)
    assert not tile.noisy and tile.w_var is None and tile.var_const is None
    assert tile.compensation == 1.0 and tile.dead is None and tile.range_factor is None
    # the random draws of effects that are on do not change when others are switched off
    a = _tile({"programming_error": {"sigma": 0.1}}, w, seed=3)
    b = _tile({"programming_error": {"sigma": 0.1}, "flicker_noise": {"k": 0}}, w, seed=3)
    assert torch.equal(a.g0, b.g0)


def test_additive_noise_keeps_the_scalar_path_with_new_fields_present():
    cfg = {"read_noise": {"kind": "additive", "sigma": 0.02}, "clip": "none"}
    tile = _tile(
        {**cfg, "retention": {"tau": math.inf}, "drift_compensation": True}, torch.randn(4, 10)
    )
    assert tile.var_const == pytest.approx(2 * (0.02 * tile.scale) ** 2) and tile.w_var is None


def test_conductance_dependent_programming_error():
    """Every device programmed to one target: the spread of g0 is the table's std there."""
    w = torch.ones(200, 500)  # G+ = 1, G- = Gmin = 0.1
    dev = {
        "on_off_ratio": 10,
        "clip": "none",
        "programming_error": {
            "kind": "table",
            "g_points": [0.1, 1.0],
            "sigma_points": [0.01, 0.05],
        },
    }
    tile = _tile(dev, w)
    for k, (target, std) in enumerate(((1.0, 0.05), (0.1, 0.01))):
        d = tile.g0[k] - target
        assert abs(float(d.mean())) < 5 * std / math.sqrt(d.numel())
        assert float(d.std()) == pytest.approx(std, rel=0.01)
    poly = _tile(
        {"clip": "none", "programming_error": {"kind": "polynomial", "coeffs": [0.02, 0.02]}}, w
    )
    assert float((poly.g0[0] - 1).std()) == pytest.approx(0.04, rel=0.01)
    assert float(poly.g0[1].std()) == pytest.approx(0.02, rel=0.01)


def test_device_range_variability():
    """Each device's [Gmin, Gmax] is scaled by a lognormal factor drawn at programming."""
    w = torch.rand(300, 300, generator=torch.Generator().manual_seed(0)) * 2 - 1
    tile = _tile({"range_std": 0.2, "on_off_ratio": 10, "clip": "range"}, w)
    s = tile.range_factor
    assert float(s.log().mean()) == pytest.approx(0.0, abs=0.002)
    assert float(s.log().std()) == pytest.approx(0.2, rel=0.01)
    from nvmsim.crossbar.mapping import to_conductances

    target = to_conductances(w.t(), "differential", float(w.abs().max()), 0.1)
    torch.testing.assert_close(
        tile.g0[:, 0], target * s[:, 0]
    )  # target fraction of the device's own range
    # stuck devices stick at their own extremes
    stuck = _tile({"range_std": 0.2, "on_off_ratio": 10, "stuck_at_gmax": 1.0}, w)
    torch.testing.assert_close(stuck.g0, stuck.range_factor)


@pytest.mark.parametrize("state", ["open", "gmin"])
def test_dead_rows_and_columns(state):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(40, 64, generator=gen)
    x = torch.randn(5, 64, generator=gen)
    dev = {"dead_rows": 0.1, "dead_cols": 0.05, "dead_state": state, "on_off_ratio": 10}
    tile = _tile(dev, w, crossbar={"tile_rows": 16, "tile_cols": 8})
    dead = tile.dead  # (2, in, out)
    if state == "open":
        assert (tile.g0[dead] == 0).all()
    else:
        assert torch.allclose(tile.g0[dead], torch.tensor(0.1))
    alive = ~dead
    assert torch.equal(tile.g0[alive], _tile({"on_off_ratio": 10}, w).g0[alive])
    # the read is exactly the matmul with the faulty conductances
    g = tile.g0[0, 0] - tile.g0[1, 0]
    torch.testing.assert_close(tile.read(x), x @ (g * tile.scale), rtol=1e-5, atol=1e-5)
    rate = 1 - (1 - 0.1) * (1 - 0.05)
    assert float(dead.double().mean()) == pytest.approx(rate, abs=0.04)
    # whole lines of one array: a dead row of an 8-column array covers its 8 columns
    rows_dead = dead[0].view(64, 5, 8).all(2)
    assert rows_dead.any()
    # open devices carry no read noise
    noisy = _tile({**dev, "read_noise": {"kind": "additive", "sigma": 0.1}}, w,
                  crossbar={"tile_rows": 16, "tile_cols": 8})  # fmt: skip
    if state == "open":
        v = noisy._mask(noisy._moments(noisy.g, noisy._bounds)[1], "dead")
        assert (v[dead] == 0).all() and (v[alive] > 0).all()


@pytest.mark.parametrize(("target", "g_inf"), [("gmin", 0.1), ("mid", 0.55), (0.3, 0.3)])
def test_retention_in_the_tile(target, g_inf):
    w = torch.randn(8, 12)
    tile = _tile({"on_off_ratio": 10, "retention": {"tau": 100.0, "target": target}}, w)
    g0 = tile.g.clone()
    tile.drift_to(250.0)
    torch.testing.assert_close(tile.g, g_inf + (g0 - g_inf) * math.exp(-2.5))
    tile.drift_to(1e6)
    torch.testing.assert_close(tile.g, torch.full_like(g0, g_inf))


def test_drift_compensation_restores_uniform_drift_exactly():
    gen = torch.Generator().manual_seed(2)
    w, x = torch.randn(10, 30, generator=gen), torch.randn(6, 30, generator=gen)
    dev = {"on_off_ratio": 10, "drift_nu": 0.06, "drift_t0": 10.0}
    plain = _tile(dev, w)
    comp = _tile({**dev, "drift_compensation": True}, w)
    t = 1e7
    plain.drift_to(t)
    comp.drift_to(t)
    factor = (t / 10.0) ** -0.06
    torch.testing.assert_close(plain.read(x), factor * (x @ w.T), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(comp.read(x), x @ w.T, rtol=1e-4, atol=1e-5)
    assert comp.compensation == pytest.approx(1 / factor, rel=1e-5)
    # the ratio is measured with an all-ones read: sum |y(0)| / sum |y(t)|
    ones = torch.ones(1, 30)
    y0 = (ones @ w.T).abs().sum()
    yt = (ones @ plain.w_mean).abs().sum()
    assert comp.compensation == pytest.approx(float(y0 / yt), rel=1e-5)
    # and it scales the read noise too (a gain on the whole tile)
    noisy = {**dev, "read_noise": {"kind": "additive", "sigma": 0.05}, "clip": "none"}
    a, b = _tile(noisy, w), _tile({**noisy, "drift_compensation": True}, w)
    a.drift_to(t), b.drift_to(t)
    assert b.var_const == pytest.approx(a.var_const * b.compensation**2)


def test_drift_compensation_helps_with_spread_drift():
    gen = torch.Generator().manual_seed(5)
    w, x = torch.randn(20, 100, generator=gen), torch.randn(50, 100, generator=gen)
    dev = {"on_off_ratio": 10, "drift_nu": 0.1, "drift_nu_std": 0.005, "drift_t0": 1.0}
    ref = x @ w.T
    errs = {}
    for comp in (False, True):
        tile = _tile({**dev, "drift_compensation": comp}, w)
        tile.drift_to(3e7)
        errs[comp] = float((tile.read(x) - ref).norm() / ref.norm())
    assert errs[True] < 0.3 * errs[False]


def _per_column_nu(like: torch.Tensor, seed: int) -> torch.Tensor:
    """Drift exponents that vary between physical columns but not down a column."""
    gen = torch.Generator().manual_seed(seed)
    nu = 0.02 + 0.1 * torch.rand(*like.shape[:-2], 1, like.shape[-1], generator=gen)
    return nu.expand_as(like).contiguous()


@pytest.mark.parametrize("mapping", ["differential", "offset"])
def test_per_column_compensation_undoes_column_wise_drift_exactly(mapping):
    """Each physical column is calibrated with an all-ones read: with one drift exponent per
    column, its gain (t / t0) ** nu is recovered exactly; a global gain cannot."""
    gen = torch.Generator().manual_seed(4)
    w, x = torch.randn(12, 40, generator=gen), torch.randn(7, 40, generator=gen)
    dev = {"on_off_ratio": 10, "drift_nu": 0.05, "drift_t0": 1.0}
    xb = {"mapping": mapping, "tile_rows": 16, "tile_cols": 5}
    errs = {}
    for comp in (True, "column"):
        tile = _tile({**dev, "drift_compensation": comp}, w, crossbar=xb)
        tile.nu = _per_column_nu(tile.nu, 9)
        if tile.nu_ref is not None:
            tile.nu_ref = _per_column_nu(tile.nu_ref, 10)
        tile.drift_to(0.0)
        want = tile.read(x)
        tile.drift_to(1e6)
        errs[comp] = float((tile.read(x) - want).abs().max())
        if comp == "column":  # every column's all-ones current is back to its t = 0 value
            g = tile.g * tile._alpha
            torch.testing.assert_close(
                g.double().sum(-2), tile.cal_local[..., 0, :].double(), rtol=1e-5, atol=1e-9
            )
    assert errs["column"] < 1e-4 < errs[True]


def test_per_array_compensation_uses_one_gain_per_array():
    gen = torch.Generator().manual_seed(6)
    w, x = torch.randn(10, 50, generator=gen), torch.randn(5, 50, generator=gen)
    dev = {
        "on_off_ratio": 10,
        "drift_nu": 0.06,
        "drift_nu_std": 0.02,
        "drift_compensation": "array",
    }
    tile = _tile(dev, w, crossbar={"tile_rows": 16, "tile_cols": 4})
    tile.drift_to(1e7)
    a = tile._alpha  # (stacks, G, rows, cols): constant over each array
    for s, e in tile.partition():
        for c0 in range(0, tile.cols, 4):
            block = a[:, :, s:e, c0 : c0 + 4]
            assert torch.allclose(block, block[:, :, :1, :1].expand_as(block))
    # the array's all-ones current after compensation is its current right after programming
    g = (tile.g * a).double()
    (s, e) = tile.partition()[0]
    torch.testing.assert_close(g[0, 0, s:e, 0:4].sum(), tile.cal_local[0, 0, 0, 0].double())
    # explicit sampling reads the same compensated devices (oracle of the moment read)
    noisy = {**dev, "read_noise": {"kind": "additive", "sigma": 0.02}}
    moment = _tile(noisy, w, crossbar={"tile_rows": 16, "tile_cols": 4})
    sample = _tile(noisy, w, crossbar={"tile_rows": 16, "tile_cols": 4}, read_noise_mode="sample")
    moment.drift_to(1e7), sample.drift_to(1e7)
    xs = x[:1].expand(4000, -1)
    ys = sample.read(xs, generator=torch.Generator().manual_seed(1))
    ym = moment.read(xs, generator=torch.Generator().manual_seed(2))
    se = ym.std(0) / len(xs) ** 0.5  # means within 5 standard errors, stds within 10 %
    assert bool(((ys.mean(0) - ym.mean(0)).abs() < 5 * se).all())
    torch.testing.assert_close(ys.std(0), ym.std(0), rtol=0.1, atol=0.01)


def test_geometric_and_listed_levels_in_the_tile():
    w = torch.rand(30, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    tile = _tile({"on_off_ratio": 100, "bits": 3, "level_spacing": "geometric"}, w)
    lv = 0.01 * 100 ** (torch.arange(8) / 7)
    dist = (tile.g0.unsqueeze(-1) - lv).abs().min(-1).values
    assert float(dist.max()) < 1e-6
    listed = (0.0, 0.1, 0.3, 1.0)
    tile = _tile({"levels": listed}, w)
    dist = (tile.g0.unsqueeze(-1) - torch.tensor(listed)).abs().min(-1).values
    assert float(dist.max()) < 1e-7 and len(torch.unique(tile.g0)) == 4


def test_effects_compose_in_the_documented_order():
    """program (quantise -> programming error -> faults -> clip) -> drift -> retention ->
    read noise -> clip -> compensation -> ADC. Each step is pinned by a deterministic
    construction that a different order would break."""
    w = torch.rand(16, 24, generator=torch.Generator().manual_seed(0)) + 0.1  # all positive
    # quantisation, then programming error: values are near levels, not on them
    t = _tile(
        {"bits": 2, "on_off_ratio": 4, "programming_error": {"kind": "additive", "sigma": 0.01}}, w
    )
    lv = torch.tensor([0.25, 0.5, 0.75, 1.0])
    dist = (t.g0[0].unsqueeze(-1) - lv).abs().min(-1).values
    assert float(dist.min()) > 0 and float(dist.max()) < 0.06
    # faults after programming error: a stuck device is exactly at Gmax
    t = _tile({"stuck_at_gmax": 1.0, "programming_error": {"kind": "additive", "sigma": 0.3}}, w)
    assert torch.equal(t.g0, torch.ones_like(t.g0))
    # faults, then drift: the stuck device drifts as well
    t = _tile({"stuck_at_gmax": 1.0, "drift_nu": 0.1, "drift_t0": 1.0}, w)
    t.drift_to(100.0)
    torch.testing.assert_close(t.g, torch.full_like(t.g, 100.0**-0.1))
    # drift, then retention of the drifted value
    t = _tile(
        {"drift_nu": 0.1, "retention": {"tau": 100.0, "target": 0.2}, "stuck_at_gmax": 1.0}, w
    )
    t.drift_to(100.0)
    expected = 0.2 + (100.0**-0.1 - 0.2) * math.exp(-1.0)
    torch.testing.assert_close(t.g, torch.full_like(t.g, expected))
    # read noise acts on the drifted conductance: a deterministic telegraph step (p = 1) of
    # -50 % of G, then the clip at Gmin (range) -- G+ at 1 drifts to 0.631 and steps to 0.316
    dev = {
        "drift_nu": 0.1, "stuck_at_gmax": 1.0, "on_off_ratio": 2.5, "clip": "range",
        "telegraph_noise": {"kind": "proportional", "delta": -0.5, "p": 1.0},
    }  # fmt: skip
    t = _tile(dev, w)
    t.drift_to(100.0)
    g_read = max(0.5 * 100.0**-0.1, 0.4)  # clip after the step, at Gmin = 0.4
    mean_g = t.w_mean / t.scale  # G+ - G- with both devices stuck at Gmax
    torch.testing.assert_close(mean_g, torch.zeros_like(mean_g))
    m, _ = t._moments(t.g, t._bounds)
    torch.testing.assert_close(m, torch.full_like(m, g_read))
    # compensation, then ADC: outputs of a compensated read lie on the ADC's grid
    dev = {"drift_nu": 0.2, "drift_compensation": True, "on_off_ratio": 10}
    t = _tile(dev, w, converter={"adc_bits": 5, "adc_range": 8.0})
    t.drift_to(1e4)
    assert t.compensation > 1.5
    y = t.read(torch.rand(7, 24, generator=torch.Generator().manual_seed(1)))
    lsb = 8.0 / 15
    torch.testing.assert_close(y / lsb, (y / lsb).round(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", ["additive", "proportional"])
@pytest.mark.parametrize("mapping", ["differential", "offset"])
@pytest.mark.parametrize("clip", ["zero", "none"])  # additive + none: the constant-variance path
def test_blocked_noisy_reads_match_explicit_sampling(kind, mapping, clip):
    """With an ADC every row-block is read (and noisy) on its own: the moment path agrees
    with per-device sampling in mean and variance (fine ADC, 4,000 reads, fixed seeds)."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(3, 20, generator=gen) * 0.3
    x = torch.rand(1, 20, generator=gen).expand(4000, 20)
    reads = {}
    for mode in ("moment", "sample"):
        cfg = validate(
            AnalogConfig,
            {
                "device": {
                    "on_off_ratio": 10,
                    "clip": clip,
                    "read_noise": {"kind": kind, "sigma": 0.05},
                },
                "crossbar": {"tile_rows": 8, "mapping": mapping},
                "converter": {"adc_bits": 16, "adc_range": 20.0},
                "read_noise_mode": mode,
            },
        )
        tile = AnalogTile(cfg)
        tile.program(w)
        reads[mode] = tile.read(x, torch.Generator().manual_seed(11))
    m, s = reads["moment"], reads["sample"]
    std = s.std(0)
    assert (m.mean(0) - s.mean(0)).abs().max() < 4 * std.max() / math.sqrt(4000)
    torch.testing.assert_close(m.var(0), s.var(0), rtol=0.1, atol=0)


@pytest.mark.parametrize(
    ("product", "shape", "adc"),
    [
        (None, (200, 20), True),
        (None, (200, 20), False),
        ("conv", (40, 3, 9, 9), True),
        ("conv", (40, 3, 9, 9), False),
    ],
)
@pytest.mark.parametrize("kind", ["additive", "proportional"])
@pytest.mark.parametrize("stream", ["blocked", "serial"])
def test_chunked_reads_draw_exactly_the_numbers_of_one_read(
    monkeypatch, product, shape, adc, kind, stream
):
    """A batch read in cache-sized chunks gives bit-identical outputs to one whole read
    (blocked: blocks of 97 normals, so chunks and blocks do not line up), on any number of
    threads (blocked dense chunks are read side by side)."""
    from nvmsim.crossbar import normals
    from nvmsim.crossbar import tile as tile_mod
    from nvmsim.crossbar.products import Product

    monkeypatch.setattr(normals, "BLOCK", 97)
    monkeypatch.setattr(normals, "MIN_BLOCKED", 200)

    conv = {"dac_bits": 6, "adc_bits": 6} if adc else {}
    cfg = validate(
        AnalogConfig,
        {
            "device": {"read_noise": {"kind": kind, "sigma": 0.1}, "on_off_ratio": 10},
            "crossbar": {"tile_rows": 8},
            "converter": conv,
            "read_noise_stream": stream,
        },
    )
    p = Product((3, 3), (1, 1), (1, 1), (1, 1)) if product else Product()
    w = torch.randn(6, 27 if product else 20, generator=torch.Generator().manual_seed(1))
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(2))
    outs, threads = [], torch.get_num_threads()
    for elements, n in ((1 << 30, threads), (64, threads), (64, 1), (64, 3)):  # chunks of 16
        monkeypatch.setattr(tile_mod, "CHUNK_ELEMENTS", elements)
        t = AnalogTile(cfg, p)
        t.program(w, torch.Generator().manual_seed(0))
        g = torch.Generator().manual_seed(3)
        t.read(x, g)  # calibrates the converters on the whole batch
        assert t._chunk_rows(x) == (x.shape[0] if elements > 64 else 16)
        torch.set_num_threads(n)
        try:
            outs.append(t.read(x, g))
        finally:
            torch.set_num_threads(threads)
    assert all(torch.equal(outs[0], out) for out in outs[1:])


@pytest.mark.parametrize(("adc", "side"), [(True, True), (False, False)])
def test_reads_digitised_per_array_run_their_chunks_side_by_side(monkeypatch, adc, side):
    """A noisy dense read whose ADC digitises several row arrays (several normals per output)
    hands its chunks to helper threads; one normal per output stays with torch."""
    from nvmsim.crossbar import normals, workers
    from nvmsim.crossbar import tile as tile_mod

    monkeypatch.setattr(normals, "MIN_BLOCKED", 200)
    calls = []
    run = workers.run_side_by_side
    monkeypatch.setattr(
        workers, "run_side_by_side", lambda tasks: (calls.append(len(tasks)), run(tasks))
    )
    monkeypatch.setattr(tile_mod, "CHUNK_ELEMENTS", 4096)
    cfg = validate(AnalogConfig, {
        "device": {"read_noise": {"kind": "proportional", "sigma": 0.1}, "on_off_ratio": 10},
        "crossbar": {"tile_rows": 16},
        "converter": {"dac_bits": 6, "adc_bits": 6} if adc else {},
    })  # fmt: skip
    t = AnalogTile(cfg)
    t.program(torch.randn(8, 40, generator=torch.Generator().manual_seed(0)), torch.Generator())
    x = torch.rand(3000, 40, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    t.read(x, g)  # calibrates the converters on the whole batch
    calls.clear()
    t.read(x, g)
    assert bool(calls and calls[0] > 1) == side


@pytest.mark.parametrize("kind", ["additive", "proportional"])
@pytest.mark.parametrize("bias", ["analog", "digital"])
def test_a_read_by_its_moments_is_the_read(kind, bias):
    """``add_reads`` of one read's moments draws what ``read`` draws from the same generator:
    the same outputs and the same input gradient (noise term included)."""
    cfg = validate(AnalogConfig, {
        "device": {"read_noise": {"kind": kind, "sigma": 0.1}, "on_off_ratio": 10},
        "crossbar": {"bias": bias}, "read_noise_stream": "serial",
    })  # fmt: skip
    t = AnalogTile(cfg, bias_row=bias == "analog")
    g = torch.Generator().manual_seed(0)
    t.program(torch.randn(5, 7 + (bias == "analog"), generator=g), g)
    b = None if bias == "analog" else torch.randn(5, generator=g)
    outs, grads = [], []
    for how in ("read", "moments"):
        x = torch.rand(9, 7, generator=torch.Generator().manual_seed(1)).requires_grad_()
        gen = torch.Generator().manual_seed(2)
        if how == "read":
            y = t.read(x, gen, bias=b)
        else:
            y = add_reads([t.read_moments(x, b)], gen, "serial")
        y.square().sum().backward()
        outs.append(y.detach())
        grads.append(x.grad)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_reads_with_converters_have_no_moments_to_add():
    cfg = validate(AnalogConfig, {"converter": {"adc_bits": 6}})
    t = AnalogTile(cfg)
    t.program(torch.randn(3, 4), torch.Generator().manual_seed(0))
    assert not t.sums_by_moments
    with pytest.raises(ValueError, match="needs a read that is its mean plus Gaussian noise"):
        t.read_moments(torch.rand(2, 4))
    ideal = AnalogTile(AnalogConfig())
    ideal.program(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"input must have shape \(batch, 4\)"):
        ideal.read_moments(torch.rand(2, 5))
