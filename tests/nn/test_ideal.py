"""With no non-ideality every converted layer computes exactly what torch computes.

Layers are float64 here (the reference nets also float32) so that the comparison is about
the mapping, not float32 round-off; tolerances are relative (``rtol`` 1e-5 and an ``atol``
of 1e-5 of the output's magnitude).
"""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import nvmsim
from nvmsim.config import AnalogConfig, validate
from nvmsim.models import mobilenet, resnet18
from nvmsim.nn import AnalogConv1d, AnalogConv2d, AnalogConv3d, AnalogLinear, analog_layers

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
ANALOG = {1: AnalogConv1d, 2: AnalogConv2d, 3: AnalogConv3d}
SIZES = {1: (13,), 2: (9, 8), 3: (6, 5, 7)}


def close(got, want, rtol=1e-5):
    scale = float(want.detach().abs().max()) if want.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(scale, 1e-12))


def cfg(**crossbar):
    return validate(AnalogConfig, {"crossbar": crossbar})


def test_default_config_is_ideal():
    c = AnalogConfig()
    dev = c.device
    assert not dev.read_noise.active and not dev.programming_error.active
    assert dev.g_min == 0.0 and c.converter.adc_bits is None and c.converter.dac_bits is None
    assert AnalogConfig().device == validate(AnalogConfig, {"device": "ideal"}).device.model_copy(
        update={"name": "custom", "citation": ""}
    )


@settings(max_examples=30, deadline=None)
@given(
    n_in=st.integers(1, 40),
    n_out=st.integers(1, 20),
    bias=st.booleans(),
    analog_bias=st.booleans(),
    tile_rows=st.sampled_from([1, 3, 7, 256]),
    mapping=st.sampled_from(["differential", "offset"]),
    lead=st.sampled_from([(), (4,), (2, 3)]),
)
def test_linear_equals_torch(n_in, n_out, bias, analog_bias, tile_rows, mapping, lead):
    torch.manual_seed(n_in * 37 + n_out)
    ref = nn.Linear(n_in, n_out, bias=bias, dtype=torch.float64)
    c = cfg(tile_rows=tile_rows, mapping=mapping, bias="analog" if analog_bias else "digital")
    layer = nvmsim.convert(ref, c)
    assert isinstance(layer, AnalogLinear)
    assert layer.tile.bias_row == (bias and analog_bias)
    x = torch.randn(*lead, n_in, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (*lead, n_out) and y.dtype == torch.float64
    close(y, ref(x))


@settings(max_examples=40, deadline=None)
@given(
    dims=st.sampled_from([1, 2, 3]),
    cg_in=st.integers(1, 3),
    cg_out=st.integers(1, 3),
    groups=st.sampled_from([1, 2, 3, "depthwise"]),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.sampled_from([0, 1, 2, "same"]),
    dilation=st.integers(1, 2),
    padding_mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    bias=st.sampled_from(["none", "digital", "analog"]),
    tile_rows=st.sampled_from([2, 5, 256]),
    batched=st.booleans(),
)
def test_conv_equals_torch(
    dims, cg_in, cg_out, groups, k, stride, padding, dilation, padding_mode, bias, tile_rows,
    batched,
):  # fmt: skip
    if groups == "depthwise":  # groups == in_channels, a multiplier cg_out per channel
        groups, c_in, c_out = 2 * cg_in, 2 * cg_in, 2 * cg_in * cg_out
    else:
        c_in, c_out = cg_in * groups, cg_out * groups
    if padding == "same":
        stride = 1
    torch.manual_seed(dims * 1000 + c_in * 10 + c_out)
    ref = CONVS[dims](
        c_in, c_out, k, stride, padding, dilation, groups, bias != "none", padding_mode,
        dtype=torch.float64,
    )  # fmt: skip
    c = cfg(tile_rows=tile_rows, bias="analog" if bias == "analog" else "digital")
    layer = nvmsim.convert(ref, c)
    assert type(layer) is ANALOG[dims]
    x = torch.randn(2, c_in, *SIZES[dims], dtype=torch.float64)
    if not batched:
        x = x[0]
    want = ref(x)
    got = layer(x)
    assert got.shape == want.shape
    close(got, want)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("conv_rows", ["channel", "packed"])
def test_small_row_arrays_do_not_change_the_ideal_result(dims, conv_rows):
    """Several row arrays (and kernels straddling arrays) leave the ideal result unchanged,
    also on the ADC path, where every array's partial sum is digitised (16 bits: the only
    difference is the quantisation, at most half an LSB per array)."""
    torch.manual_seed(dims)
    ref = CONVS[dims](6, 4, 3, 1, 1, groups=2, dtype=torch.float64)
    x = torch.randn(2, 6, *SIZES[dims], dtype=torch.float64)
    want = ref(x)
    for tile_rows in (1, 2, 4, 7, 256):  # 4 < 9 = unit (3x3): kernel rows straddle arrays
        plain = nvmsim.convert(ref, cfg(tile_rows=tile_rows, conv_rows=conv_rows))
        close(plain(x), want)
        c = validate(
            AnalogConfig,
            {
                "crossbar": {"tile_rows": tile_rows, "conv_rows": conv_rows, "bias": "analog"},
                "converter": {"adc_bits": 16},
            },
        )
        adc = nvmsim.convert(ref, c)
        nb = adc.tile.row_blocks
        if tile_rows < 9 * 3:
            assert nb > 1
        bound = ref.weight.detach().abs().amax() * x.abs().amax() * (9 * 3 + 1)
        tol = float(nb * bound / (2**15 - 1))
        torch.testing.assert_close(adc(x), want, rtol=0, atol=tol)


def test_linear_adc_row_blocks_sum_to_the_product():
    torch.manual_seed(0)
    ref = nn.Linear(23, 5, dtype=torch.float64)
    x = torch.randn(4, 23, dtype=torch.float64)
    for bias in ("digital", "analog"):
        c = validate(
            AnalogConfig,
            {"crossbar": {"tile_rows": 4, "bias": bias}, "converter": {"adc_bits": 16}},
        )
        layer = nvmsim.convert(ref, c)
        assert layer.tile.row_blocks == 6
        tol = float(6 * 24 * ref.weight.detach().abs().max() * x.abs().max() / (2**15 - 1))
        torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=tol)


def _calibrated(model, shape, dtype):
    """Non-trivial batch-norm statistics, then eval mode."""
    torch.manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *shape, dtype=dtype))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize(
    ("build", "n_analog"),
    [(lambda: resnet18(width=8), 21), (lambda: mobilenet(width=0.25, depth=4), 10)],
    ids=["resnet18", "mobilenet"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reference_nets_equal_torch(build, n_analog, dtype):
    torch.manual_seed(0)
    model = _calibrated(build().to(dtype), (3, 32, 32), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # everything with weights converts (norms are periphery)
        analog = nvmsim.convert(model, cfg(tile_rows=64, tile_cols=16))
    assert len(list(analog_layers(analog))) == n_analog
    assert not analog.training
    x = torch.randn(3, 3, 32, 32, dtype=dtype)
    with torch.no_grad():
        y = analog(x)
        assert y.dtype == dtype
        close(y, model(x))
