"""The moment identity against explicit per-device sampling (``read_noise_mode = "sample"``),
through the layers, for every read path: whole-array moments (scalar and per-weight variance),
ADC row blocks (channel-aligned and straddling kernels), the offset mapping's shared
reference columns and the analog bias row.

One input is repeated ``N`` times in the batch; every output (each position of a
convolution) is a read with fresh noise. Tolerances: means within 5 standard errors of the
difference; variances within 10 % (the standard error of a sample variance over ``N`` reads
is ``sqrt(2 / N)``, 1.8 % for ``N = 6000``, so the difference of two has 2.6 %: 10 % is about
4 of them). Both paths see the same programmed chip (same seed), different noise streams.
With an ADC both quantise identically distributed partial sums (fixed range), so their
quantised outputs have the same mean and variance too.
"""

import pytest
import torch
from torch import nn

import nvmsim
from nvmsim.config import AnalogConfig, validate

N = 6000

ADD = {"read_noise": {"kind": "additive", "sigma": 0.1}, "clip": "none"}
ADD_CLIPPED = {"read_noise": {"kind": "additive", "sigma": 0.15}, "on_off_ratio": 10}
PROP = {"read_noise": {"kind": "proportional", "sigma": 0.3}, "on_off_ratio": 10}


def _layer(kind):
    torch.manual_seed(7)
    if kind == "linear":
        return nn.Linear(20, 6), (20,)
    if kind == "linear16":
        return nn.Linear(16, 5), (16,)
    if kind == "conv1d":
        return nn.Conv1d(3, 4, 3, padding=1), (3, 6)
    if kind == "conv1d_dw":
        return nn.Conv1d(4, 4, 3, padding=1, groups=4), (4, 6)
    if kind == "conv2d":
        return nn.Conv2d(2, 3, 3, padding=1), (2, 4, 4)
    if kind == "conv2d_g2":
        return nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2), (4, 5, 5)
    if kind == "conv3d":
        return nn.Conv3d(2, 2, 2), (2, 3, 3, 3)
    raise AssertionError(kind)


CASES = {
    # name: (layer, device, crossbar, adc)
    "linear-additive": ("linear", ADD, {}, False),
    "linear-additive-clipped": ("linear", ADD_CLIPPED, {"bias": "analog"}, False),
    "linear-prop-adc-blocks-bias": ("linear", PROP, {"tile_rows": 8, "bias": "analog"}, True),
    "linear-additive-adc-blocks-bias": ("linear", ADD, {"tile_rows": 7, "bias": "analog"}, True),
    "linear-offset-prop-adc": ("linear", PROP, {"tile_rows": 8, "tile_cols": 4,
                                                "mapping": "offset"}, True),
    "linear-offset-additive-bias": ("linear", ADD, {"tile_cols": 4, "mapping": "offset",
                                                    "bias": "analog"}, False),
    "conv1d-prop-adc-aligned": ("conv1d", PROP, {"tile_rows": 6}, True),
    "conv1d-additive-adc-bias": ("conv1d", ADD, {"tile_rows": 6, "bias": "analog"}, True),
    "conv2d-additive": ("conv2d", ADD, {}, False),
    "conv2d-prop-bias": ("conv2d", PROP, {"bias": "analog"}, False),
    "conv2d-prop-adc-one-block": ("conv2d", PROP, {}, True),
    "conv2d-additive-adc-straddling": ("conv2d", ADD, {"tile_rows": 4}, True),
    "conv2d-offset-additive-adc-straddling-bias": (
        "conv2d", ADD, {"tile_rows": 4, "tile_cols": 2, "mapping": "offset", "bias": "analog"},
        True,
    ),
    "conv2d-g2-prop": ("conv2d_g2", PROP, {}, False),
    "conv2d-g2-prop-adc-aligned": ("conv2d_g2", PROP, {"tile_rows": 9}, True),
    "conv2d-g2-additive-adc-packed": ("conv2d_g2", ADD, {"tile_rows": 8, "conv_rows": "packed"},
                                      True),
    "conv2d-g2-offset-prop-adc-bias": (
        "conv2d_g2", PROP, {"tile_rows": 9, "mapping": "offset", "bias": "analog"}, True,
    ),
    "conv3d-prop-adc-bias": ("conv3d", PROP, {"tile_rows": 8, "bias": "analog"}, True),
    "conv3d-additive": ("conv3d", ADD, {}, False),
    # the bias row in an array of its own (the kernel rows fill whole arrays)
    "linear16-prop-adc-bias-own-array": ("linear16", PROP, {"tile_rows": 8, "bias": "analog"},
                                         True),
    "conv2d-offset-prop-adc-bias-own-array": (
        "conv2d", PROP, {"tile_rows": 9, "mapping": "offset", "bias": "analog"}, True,
    ),
    # dead rows and columns (open devices) on several arrays
    "conv2d-offset-prop-adc-dead-lines": (
        "conv2d", {**PROP, "dead_rows": 0.2, "dead_cols": 0.2},
        {"tile_rows": 6, "tile_cols": 2, "mapping": "offset", "bias": "analog"}, True,
    ),
    "conv1d-depthwise-prop-adc-straddling": (
        "conv1d_dw", PROP, {"tile_rows": 2, "bias": "analog"}, True,
    ),
}  # fmt: skip


def _pair(ref, device, crossbar, adc_range):
    out = []
    for mode in ("moment", "sample"):
        data = {"read_noise_mode": mode, "device": device, "crossbar": crossbar}
        if adc_range is not None:
            data["converter"] = {"adc_bits": 8, "adc_range": adc_range}
        out.append(nvmsim.convert(ref, validate(AnalogConfig, data)))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_moment_reads_match_explicit_sampling(case):
    kind, device, crossbar, adc = CASES[case]
    ref, shape = _layer(kind)
    gen = torch.Generator().manual_seed(11)
    x = (torch.rand(1, *shape, generator=gen) * 2 - 0.5).expand(N, *shape).contiguous()
    adc_range = None
    if adc:  # a fixed range that covers every partial sum with room for the noise
        with torch.no_grad():
            full = ref.weight.abs().sum() * x.abs().max() + ref.bias.abs().max()
        adc_range = float(full) / 2
    moment, sample = _pair(ref, device, crossbar, adc_range)
    assert torch.equal(moment.tile.g0, sample.tile.g0)  # one chip, two ways to read it
    if adc and crossbar.get("tile_rows", 256) < ref.weight[0].numel():
        assert moment.tile.row_blocks > 1
    sample.reseed(12345)
    with torch.no_grad():
        a = moment(x).reshape(N, -1).double()
        b = sample(x).reshape(N, -1).double()
    ma, mb, va, vb = a.mean(0), b.mean(0), a.var(0), b.var(0)
    se = ((va + vb) / N).sqrt()
    assert (vb > 0).all()
    assert ((ma - mb).abs() <= 5 * se + 1e-7).all(), (ma - mb).abs().div(se).max()
    torch.testing.assert_close(va, vb, rtol=0.1, atol=1e-9)
    if crossbar.get("mapping") == "offset" and kind == "linear":
        # columns of one array share its reference device: their noise is correlated alike
        ca, cb = torch.corrcoef(a.T), torch.corrcoef(b.T)
        assert (ca - cb).abs().max() < 0.07
        assert cb[0, 1] > 0.05


def test_analog_bias_row_adds_its_own_noise():
    """An analog bias row is one more noisy device pair per column: with x = 0 the only
    current is the bias row's, whose read variance both paths agree on."""
    torch.manual_seed(3)
    ref = nn.Linear(5, 4)
    x = torch.zeros(N, 5)
    for device in (ADD, PROP):
        moment, sample = _pair(ref, device, {"bias": "analog"}, None)
        sample.reseed(99)
        with torch.no_grad():
            a, b = moment(x).double(), sample(x).double()
        assert (b.var(0) > 0).all()
        torch.testing.assert_close(a.var(0), b.var(0), rtol=0.1, atol=0)
        se = ((a.var(0) + b.var(0)) / N).sqrt()
        assert ((a.mean(0) - b.mean(0)).abs() <= 5 * se).all()
        digital = nvmsim.convert(ref, moment.config.model_copy(
            update={"crossbar": moment.config.crossbar.model_copy(update={"bias": "digital"})}
        ))  # fmt: skip
        with torch.no_grad():
            assert (digital(x).double().var(0) == 0).all()  # x = 0: no current, no noise
