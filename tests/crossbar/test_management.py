"""aihwkit's noise and bound management and output noise, against explicit per-vector oracles."""

import pytest
import torch
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import AnalogLinear


def _layer(**conv) -> tuple[nn.Linear, AnalogLinear]:
    torch.manual_seed(0)
    lin = nn.Linear(40, 6).double()
    cfg = AnalogConfig(converter=conv, crossbar={"tile_rows": 64})
    return lin, AnalogLinear.from_torch(lin, cfg)


def _x() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    scale = torch.logspace(-2, 1, 30, dtype=torch.float64).unsqueeze(1)
    return torch.randn(30, 40, generator=g, dtype=torch.float64) * scale


def test_abs_max_alone_changes_nothing_and_zero_inputs_read_zero():
    lin, layer = _layer(noise_management="abs_max", output_noise=0.1)
    x = _x()
    x[3] = 0
    with torch.no_grad():
        y = layer(x)
    assert torch.equal(y[3], lin.bias.detach())  # no read of a zero vector: no noise either
    _, quiet = _layer(noise_management="abs_max")
    with torch.no_grad():
        assert torch.allclose(quiet(x), lin(x), rtol=1e-12, atol=1e-12)


def test_abs_max_dac_and_adc_follow_the_per_vector_oracle():
    lin, layer = _layer(noise_management="abs_max", dac_bits=7, adc_bits=9, adc_range=12.0)
    x = _x()
    w = lin.weight.detach()
    alpha = x.abs().amax(1, keepdim=True)
    xq = torch.round(x / alpha * 63) / 63
    lsb = 12.0 / 255
    yq = torch.round((xq @ w.T / lsb).clamp(-255, 255)) * lsb
    with torch.no_grad():
        assert torch.allclose(layer(x), yq * alpha + lin.bias, rtol=1e-10, atol=1e-12)


def test_output_noise_is_in_normalised_units():
    lin, layer = _layer(noise_management="abs_max", output_noise=0.05)
    x = _x()[[2, 25]].repeat_interleave(20_000, 0)
    with torch.no_grad():
        err = (layer(x) - lin(x)).view(2, 20_000, 6)
    alpha = x.abs().amax(1).view(2, 20_000)[:, 0]
    std = err.std(1) / alpha.unsqueeze(1)  # (2, 6): sigma for both scales of input
    assert torch.allclose(std, torch.full_like(std, 0.05), rtol=0.03)


def test_iterative_bound_management_follows_the_per_vector_oracle():
    bound, factor = 0.3, 8.0  # about half the vectors saturate at first
    lin, layer = _layer(
        noise_management="abs_max", dac_bits=7, adc_bits=6, adc_range=bound,
        bound_management="iterative", max_bound_factor=factor,
    )  # fmt: skip
    x = _x()
    w = lin.weight.detach()
    s, lsb = 31, bound / 31
    want = []
    for xi in x:
        a = xi.abs().max()
        r = 1.0
        while True:
            xq = torch.round(xi / a / r * 63) / 63
            codes = torch.round((w @ xq / lsb).clamp(-s, s))
            if codes.abs().max() < s or r * 2 > factor:
                break
            r *= 2
        want.append(codes * lsb * r * a)
    with torch.no_grad():
        got = layer(x) - lin.bias
    assert torch.allclose(got, torch.stack(want), rtol=1e-10, atol=1e-12)
    _, plain = _layer(noise_management="abs_max", dac_bits=7, adc_bits=6, adc_range=bound)
    with torch.no_grad():  # saturation loses more than the coarser steps of smaller inputs
        assert (plain(x) - lin(x)).abs().mean() > 2 * (got + lin.bias - lin(x)).abs().mean()


def test_management_errors():
    with pytest.raises(ValueError, match="bound_management needs adc_bits"):
        validate(AnalogConfig, {"converter": {"bound_management": "iterative"}})
    with pytest.raises(ValueError, match="DAC range is 1"):
        validate(
            AnalogConfig,
            {"converter": {"dac_bits": 4, "dac_range": 2.0, "noise_management": "abs_max"}},
        )
    with pytest.raises(ValueError, match="integer codes"):
        validate(
            AnalogConfig,
            {"device": {"bits": 2}, "crossbar": {"weight_slices": 2},
             "converter": {"noise_management": "abs_max"}},
        )  # fmt: skip
