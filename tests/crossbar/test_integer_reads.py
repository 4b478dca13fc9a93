"""Exact reads of sliced integer arrays: bit for bit the general path (every slice and plane
read through its ADCs), for dense and convolution products, with and without collapsed
planes; the integer product where the ADCs lose nothing."""

from contextlib import nullcontext
from unittest import mock

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.crossbar import integer_reads
from nvmsim.crossbar.tile import AnalogTile
from nvmsim.nn import AnalogConv1d, AnalogConv2d, AnalogConv3d, AnalogLinear


def _config(bits, slices, per_read, encoding, mapping, rows, adc, kind="sar", per="array"):
    return AnalogConfig(
        device={"bits": bits},
        crossbar={"weight_slices": slices, "mapping": mapping, "tile_rows": rows},
        converter={"dac_bits": 6, "adc_bits": adc, "input_bits_per_read": per_read,
                   "input_encoding": encoding, "adc_model": {"kind": kind},
                   "adc_range_per": per},
    )  # fmt: skip


def _both_paths(make, x):
    """The layer's output by the exact path and by the general one (each layer calibrated on
    the same first batch), and whether the exact one collapsed any planes."""
    outs, collapsed = [], []
    real = integer_reads._Reader._collapsed

    def spy(self, *args):
        summed = real(self, *args)
        collapsed.append(summed is not None)
        return summed

    for exact in (True, False):
        general = mock.patch.object(AnalogTile, "_digitises_exactly", lambda self, x: False)
        layer = make()
        with torch.no_grad(), nullcontext() if exact else general:
            layer(x[:3])  # calibrates the ranges
            with mock.patch.object(integer_reads._Reader, "_collapsed", spy):
                outs.append(layer(x))
    return outs[0], outs[1], any(collapsed)


@settings(max_examples=40, deadline=None)
@given(
    dims=st.sampled_from([1, 2, 3]), c_in=st.integers(1, 6), c_out=st.integers(1, 5),
    kernel=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 2),
    dilation=st.integers(1, 2), groups=st.sampled_from([1, 2]), bits=st.integers(1, 2),
    slices=st.integers(1, 3), adc=st.integers(2, 9), kind=st.sampled_from(["uniform", "sar"]),
    per=st.sampled_from(["array", "column"]), rows=st.integers(3, 24),
    per_read=st.sampled_from([1, 2, 3, None]),
    encoding=st.sampled_from(["twos_complement", "unsigned"]),
    mapping=st.sampled_from(["differential", "offset"]),
    dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 1000),
)  # fmt: skip
def test_convolutions_read_exactly_as_the_general_path(
    dims, c_in, c_out, kernel, stride, padding, dilation, groups, bits, slices, adc, kind,
    per, rows, per_read, encoding, mapping, dtype, seed,
):  # fmt: skip
    """1-, 2- and 3-D; few ADC bits (rounding, LSBs above the integer unit, saturation) to
    many (the collapsed planes): the same bits as reading every slice and plane as a
    convolution."""
    if mapping == "offset" and slices * bits < 2:
        slices = 2
    if per_read is None and slices == 1:
        per_read = 6
    c_in, c_out = c_in * groups, c_out * groups
    cfg = _config(bits, slices, per_read, encoding, mapping, rows, adc, kind, per)
    torch.manual_seed(seed)
    classes = (nn.Conv1d, AnalogConv1d), (nn.Conv2d, AnalogConv2d), (nn.Conv3d, AnalogConv3d)
    conv_cls, analog_cls = classes[dims - 1]
    conv = conv_cls(c_in, c_out, kernel, stride, padding, dilation, groups).to(dtype)
    size = (9 if dims < 3 else 6,) * dims
    x = torch.randn(5, c_in, *size, dtype=dtype)
    if encoding == "unsigned":
        x = x.relu()
    exact, general, _ = _both_paths(lambda: analog_cls.from_torch(conv, cfg), x)
    assert torch.equal(exact, general)


def test_collapsed_planes_keep_every_bit():
    """A ResNet-like layer through an ISAAC-style core: most planes of most rows cannot
    saturate the 8-bit ADCs and are read together; the result is the general path's, bit for
    bit, and with ADCs wide enough to lose nothing it is the integer convolution."""
    torch.manual_seed(5)
    conv = nn.Conv2d(16, 8, 3, padding=1, bias=False).double()
    x = torch.randn(4, 16, 10, 10, dtype=torch.float64).relu()
    for adc in (8, 16):
        cfg = _config(2, 4, 1, "unsigned", "differential", 64, adc)
        exact, general, collapsed = _both_paths(lambda c=cfg: AnalogConv2d.from_torch(conv, c), x)
        assert collapsed
        assert torch.equal(exact, general)
    layer = AnalogConv2d.from_torch(conv, cfg)
    first = layer.tile.slices[0]
    codes, lsb, _, _ = first.dac_codes(x)
    w = conv.weight.detach()
    wmax = float(w.abs().max())
    q = torch.round(w / wmax * 255)
    with torch.no_grad():
        got = layer(x)
    want = F.conv2d(codes, q, padding=1) * lsb * (wmax / 255)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12 * float(want.abs().max()))


def test_half_precision_takes_the_general_path():
    """bfloat16 integers are exact only to 256: no exact path, and the same output."""
    torch.manual_seed(7)
    lin = nn.Linear(40, 6).to(torch.bfloat16)
    x = torch.randn(16, 40, dtype=torch.bfloat16)
    cfg = _config(2, 4, 1, "twos_complement", "differential", 16, 8)
    exact, general, collapsed = _both_paths(lambda: AnalogLinear.from_torch(lin, cfg), x)
    assert not collapsed and torch.equal(exact, general)
    layer = AnalogLinear.from_torch(lin, cfg)
    with torch.no_grad():
        layer(x)
    assert not any(t._digitises_exactly(x) for t in layer.tile.slices)


def test_dense_layers_collapse_planes_too():
    torch.manual_seed(6)
    lin = nn.Linear(200, 12).double()
    x = torch.randn(64, 200, dtype=torch.float64)
    x = x * (torch.rand(64, 200, dtype=torch.float64) < 0.2)  # sparse, as after a ReLU
    cfg = _config(2, 4, 1, "twos_complement", "offset", 128, 8)
    exact, general, collapsed = _both_paths(lambda: AnalogLinear.from_torch(lin, cfg), x)
    assert collapsed and torch.equal(exact, general)
