"""The moment identity against explicit per-device sampling, and the tile's periphery."""

import pytest
import torch

from nvmsim.config import AnalogConfig, validate
from nvmsim.crossbar.converters import quantize_symmetric
from nvmsim.crossbar.tile import AnalogTile, NotProgrammedError

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
    torch.testing.assert_close(tile.w_mean_t, (1 + 0.4 * eps) * w, rtol=1e-5, atol=1e-5)


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
