"""Bit-sliced weights and bit-serial inputs: exact integer products with ideal devices,
explicit sampling with noisy ones, chips, counters and summaries that know the slices."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.crossbar.sliced import SlicedTile, input_planes, weight_digits
from nvmsim.energy.counters import count_ops
from nvmsim.io.chip import load_chip, save_chip
from nvmsim.nn import AnalogConv2d, AnalogLinear, convert, summary


def _config(bits, slices, dac, per_read, encoding, mapping, rows, adc=16, **extra):
    return AnalogConfig(
        device={"bits": bits, **extra.pop("device", {})},
        crossbar={"weight_slices": slices, "mapping": mapping, "tile_rows": rows},
        converter={"dac_bits": dac, "adc_bits": adc, "input_bits_per_read": per_read,
                   "input_encoding": encoding},
        **extra,
    )  # fmt: skip


def _integers(layer, x, bits, slices, dac, encoding, mapping):
    """The oracle: DAC codes and integer weights in int64, their product exactly."""
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    wmax = float(w.abs().max())
    top = 2 ** (slices * bits - 1) - 1 if mapping == "offset" else 2 ** (slices * bits) - 1
    q = torch.round(w / wmax * top).to(torch.int64)
    r = x.abs().max()
    if encoding == "unsigned":
        lsb = r / (2**dac - 1)
        codes = torch.round((x / lsb).clamp(0, 2**dac - 1)).to(torch.int64)
    else:
        s = 2 ** (dac - 1) - 1
        lsb = r / s
        codes = torch.round((x / lsb).clamp(-s, s)).to(torch.int64)
    return codes, q, lsb * (wmax / top)


@settings(max_examples=40, deadline=None)
@given(
    n_in=st.integers(1, 70), n_out=st.integers(1, 20), bits=st.integers(1, 4),
    slices=st.integers(1, 4), dac=st.integers(2, 6), serial=st.integers(0, 6),
    encoding=st.sampled_from(["twos_complement", "unsigned"]),
    mapping=st.sampled_from(["differential", "offset"]), rows=st.integers(4, 32),
    seed=st.integers(0, 1000),
)  # fmt: skip
def test_ideal_sliced_serial_reads_equal_the_integer_product(
    n_in, n_out, bits, slices, dac, serial, encoding, mapping, rows, seed
):
    if mapping == "offset" and slices * bits < 2:
        slices = 2
    per_read = None if serial == 0 or serial > dac else serial
    if per_read is None and slices == 1:
        per_read = dac  # a sliced or serial tile either way
    torch.manual_seed(seed)
    torch_layer = nn.Linear(n_in, n_out).double()
    cfg = _config(bits, slices, dac, per_read, encoding, mapping, rows)
    layer = AnalogLinear.from_torch(torch_layer, cfg)
    assert isinstance(layer.tile, SlicedTile)
    x = torch.randn(9, n_in, dtype=torch.float64)
    codes, q, unit = _integers(layer, x, bits, slices, dac, encoding, mapping)
    want = (codes @ q.T).double() * unit + torch_layer.bias
    with torch.no_grad():
        got = layer(x)
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12 * float(want.abs().max()))
    # the same reads rounded to whole integer units: exact
    ints = torch.round((got - torch_layer.bias) / unit).to(torch.int64)
    assert torch.equal(ints, codes @ q.T)
    with torch.no_grad():  # later reads, ranges known, may digitise straight from products
        assert torch.equal(layer(x), got)
    # they do where every slice's cell weights are exact integers
    slices = layer.tile.slices
    used = [t._exact_cache is not None for t in slices]
    assert all(used) == all(t._integer_weights for t in slices) and len(set(used)) == 1


@settings(max_examples=30, deadline=None)
@given(
    n_in=st.integers(1, 70), n_out=st.integers(1, 20), bits=st.integers(1, 2),
    slices=st.integers(1, 3), adc=st.integers(2, 8), kind=st.sampled_from(["uniform", "sar"]),
    per=st.sampled_from(["array", "column"]), rows=st.integers(4, 32),
    encoding=st.sampled_from(["twos_complement", "unsigned"]),
    mapping=st.sampled_from(["differential", "offset"]), seed=st.integers(0, 1000),
)  # fmt: skip
def test_reads_digitised_from_the_products_equal_the_general_path(
    n_in, n_out, bits, slices, adc, kind, per, rows, encoding, mapping, seed
):
    """Ideal 1- and 2-bit cells (exact integer weights in float64), few ADC bits (rounding
    and saturation everywhere): the exact path gives the general path's result bit for
    bit."""
    from contextlib import nullcontext
    from unittest import mock

    from nvmsim.crossbar.tile import AnalogTile

    if mapping == "offset" and slices * bits < 2:
        slices = 2
    cfg = _config(bits, slices, 6, 1, encoding, mapping, rows, adc=adc).model_dump()
    cfg["converter"] |= {"adc_model": {"kind": kind}, "adc_range_per": per}
    cfg = AnalogConfig.model_validate(cfg)
    torch.manual_seed(seed)
    torch_layer = nn.Linear(n_in, n_out).double()
    x = torch.randn(40, n_in, dtype=torch.float64)
    outs = []
    for exact in (True, False):
        general = mock.patch.object(AnalogTile, "_digitises_exactly", lambda self, x: False)
        layer = AnalogLinear.from_torch(torch_layer, cfg)
        with torch.no_grad(), nullcontext() if exact else general:
            layer(x[:7])  # calibrates the ranges
            outs.append(layer(x))
        used = [t._exact_cache is not None for t in layer.tile.slices]
        assert all(used) == exact
    assert torch.equal(outs[0], outs[1])


def test_too_few_adc_bits_lose_the_low_bits_of_each_read():
    torch.manual_seed(0)
    lin = nn.Linear(64, 8).double()
    x = torch.randn(16, 64, dtype=torch.float64)
    exact = AnalogLinear.from_torch(lin, _config(2, 4, 8, 1, "twos_complement", "differential", 64))
    few = AnalogLinear.from_torch(
        lin, _config(2, 4, 8, 1, "twos_complement", "differential", 64, adc=4)
    )
    codes, q, unit = _integers(exact, x, 2, 4, 8, "twos_complement", "differential")
    want = (codes @ q.T).double() * unit + lin.bias
    with torch.no_grad():
        assert torch.allclose(exact(x), want, rtol=1e-12)
        err = (few(x) - want).abs().max()
    assert err > 10 * unit  # a 4-bit ADC on 64-row partial sums drops bits


def test_conv_slices_equal_the_integer_convolution():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1, groups=1).double()
    cfg = _config(2, 3, 5, 2, "unsigned", "offset", 18)
    layer = AnalogConv2d.from_torch(conv, cfg)
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    codes, q, unit = _integers(layer, x, 2, 3, 5, "unsigned", "offset")
    want = F.conv2d(codes.double(), q.double().view(4, 3, 3, 3), padding=1)  # small integers
    with torch.no_grad():
        got = layer(x) - conv.bias.view(1, -1, 1, 1)
    assert torch.equal(torch.round(got / unit), want)
    assert torch.allclose(got, want * unit, rtol=1e-12)


def test_planes_and_digits_reassemble():
    codes = torch.arange(-31, 32, dtype=torch.float64)
    for per in (1, 2, 3, 6):
        for encoding, c in (("twos_complement", codes), ("unsigned", codes + 31)):
            planes, weights = input_planes(c, 6, per, encoding)
            planes = planes.view(len(weights), -1)
            assert torch.equal(sum(w * p for w, p in zip(weights, planes, strict=True)), c)
            assert planes[:-1].numel() == 0 or (
                planes[:-1].min() >= 0 and planes[:-1].max() < 2**per
            )
    q = torch.arange(-255, 256, dtype=torch.float64)
    assert torch.equal(sum(4**j * d for j, d in enumerate(weight_digits(q, 4, 2, False))), q)
    d = weight_digits(torch.arange(-127, 128, dtype=torch.float64), 4, 2, True)
    assert torch.equal(sum(4**j * v for j, v in enumerate(d)), torch.arange(-127, 128) + 0.5)


def test_noisy_slices_match_explicit_sampling():
    torch.manual_seed(2)
    lin = nn.Linear(24, 5).double()
    x = torch.randn(1, 24, dtype=torch.float64).expand(4000, 24)
    noisy = {"read_noise": {"kind": "additive", "sigma": 0.03},
             "programming_error": {"kind": "additive", "sigma": 0.02}}  # fmt: skip
    stats = []
    for mode in ("moment", "sample"):
        cfg = _config(2, 2, 6, 2, "twos_complement", "differential", 16, adc=None,
                      device=noisy, read_noise_mode=mode)  # fmt: skip
        layer = AnalogLinear.from_torch(lin, cfg)
        with torch.no_grad():
            y = layer(x)
        stats.append((y.mean(0), y.var(0)))
    (m1, v1), (m2, v2) = stats
    se = (v1 / x.shape[0]).sqrt()
    assert float(((m1 - m2).abs() / se).max()) < 5  # the same chip, mean within noise
    assert torch.allclose(v1, v2, rtol=0.15)


def test_every_slice_holds_one_read():
    """A held read of a sliced layer: each slice reads one draw of its devices, so reads
    repeat exactly (and differ from the noisy read) until a drift reads afresh."""
    torch.manual_seed(3)
    noisy = {"read_noise": {"kind": "additive", "sigma": 0.03}}
    cfg = _config(2, 2, 6, 2, "twos_complement", "differential", 16, adc=None, device=noisy)
    layer = AnalogLinear.from_torch(nn.Linear(24, 5).double(), cfg)
    x = torch.randn(3, 24, dtype=torch.float64)
    with torch.no_grad():
        layer.hold_read()
        assert layer.tile.held and all(t.held for t in layer.tile.slices)
        a, b = layer(x), layer(x)
        assert torch.equal(a, b)
        layer.drift_to(0.0)
        assert not layer.tile.held and not torch.equal(layer(x), layer(x))


def test_chip_round_trip_and_counters_know_slices(tmp_path):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 4))
    cfg = _config(2, 4, 8, 1, "twos_complement", "differential", 32, adc=8,
                  device={"read_noise": {"kind": "additive", "sigma": 0.02}})  # fmt: skip
    chip = convert(model, cfg)
    x = torch.randn(8, 40)
    with torch.no_grad():
        chip(x)
        save_chip(chip, tmp_path / "c.safetensors")
        first = chip(x)  # the read after the save: the saved read-noise stream goes on
    fresh = convert(model, cfg)
    load_chip(fresh, tmp_path / "c.safetensors")
    with torch.no_grad():
        assert torch.equal(fresh(x), first)
        assert not torch.equal(convert(model, cfg)(x), first)
    ops = count_ops(chip, x[:1])
    plain = count_ops(convert(model, AnalogConfig(crossbar={"tile_rows": 32})), x[:1])
    a, b = ops.layers[0], plain.layers[0]
    assert a.adc_conversions == 4 * 8 * b.adc_conversions  # 4 slices x 8 one-bit reads
    assert a.devices == 4 * b.devices and a.macs == b.macs
    text = str(summary(chip))
    assert "4 slices x 2 bits" in text and "inputs 1 bit/read" in text


def test_slicing_errors():
    with pytest.raises(ValueError, match="weight_slices > 1 needs device.bits"):
        validate(AnalogConfig, {"crossbar": {"weight_slices": 2}})
    with pytest.raises(ValueError, match="keep the bias digital"):
        validate(
            AnalogConfig,
            {"device": {"bits": 2}, "crossbar": {"weight_slices": 2, "bias": "analog"}},
        )
    with pytest.raises(ValueError, match="input_bits_per_read needs dac_bits"):
        validate(AnalogConfig, {"converter": {"input_bits_per_read": 1}})
    with pytest.raises(ValueError, match="at most 24"):
        validate(AnalogConfig, {"device": {"bits": 8}, "crossbar": {"weight_slices": 4}})


def test_sliced_layers_train_straight_through_and_follow_casts():
    torch.manual_seed(4)
    lin = nn.Linear(20, 3)
    layer = AnalogLinear.from_torch(lin, _config(2, 4, 8, 1, "twos_complement", "offset", 8))
    x = torch.randn(5, 20, requires_grad=True)
    layer(x).sum().backward()
    q_weight = layer.tile.w_read  # the quantised weights the slices hold
    assert torch.allclose(x.grad, q_weight.sum(0).expand(5, 20))
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    layer = layer.double()
    xd = torch.randn(4, 20, dtype=torch.float64)
    with torch.no_grad():
        y = layer(xd)
    assert y.dtype == torch.float64 and torch.allclose(y, lin.double()(xd), atol=0.05)
