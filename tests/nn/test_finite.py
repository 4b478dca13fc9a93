"""Never a non-finite result without an error: overflowing noise, NaN state, tiny on/off."""

import pytest
import torch
from torch import nn

import nvmsim
from nvmsim.config import MIN_ON_OFF_RATIO, WEIGHT_RTOL, AnalogConfig, validate
from nvmsim.nn import NonFiniteError


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def cfg(**device) -> AnalogConfig:
    return validate(AnalogConfig, {"device": device})


@pytest.mark.parametrize("kind", ["proportional", "additive"])
def test_overflowing_read_noise_is_refused_at_convert(kind):
    with pytest.raises(
        NonFiniteError,
        match=r"layer '0': read-noise variance overflows float32: "
        r"device\.read_noise\.sigma = 1e\+20 is too large",
    ):
        nvmsim.convert(mlp(), cfg(read_noise={"kind": kind, "sigma": 1e20}))


def test_the_limit_is_the_dtype_s():
    analog = nvmsim.convert(mlp().double(), cfg(read_noise={"sigma": 1e20}))
    assert torch.isfinite(analog(torch.randn(5, 8, dtype=torch.float64))).all()


def test_overflowing_programming_error_is_refused_at_convert():
    with pytest.raises(
        NonFiniteError,
        match=r"layer '0': programmed conductance overflows float32: "
        r"device\.programming_error\.sigma = 1e\+40 is too large",
    ):
        nvmsim.convert(mlp(), cfg(programming_error={"sigma": 1e40}))


def test_huge_programming_error_in_the_device_range_reads_finite():
    analog = nvmsim.convert(mlp(), cfg(programming_error={"sigma": 1e30}, clip="range"))
    y = analog(torch.randn(5, 8))
    assert torch.isfinite(y).all()


def test_huge_programming_error_without_upper_clip_fails_at_the_read():
    analog = nvmsim.convert(mlp(), cfg(programming_error={"sigma": 1e30}))
    with pytest.raises(
        NonFiniteError,
        match=r"layer '2': read output overflows float32: finite inputs up to .*; "
        r"likely device\.programming_error\.sigma = 1e\+30 is too large",
    ):
        analog(torch.randn(5, 8))


def test_nan_input_is_not_an_error():
    y = nvmsim.convert(mlp())(torch.full((2, 8), float("nan")))
    assert torch.isnan(y).all()


def test_nan_in_a_digital_batchnorm_buffer_is_refused():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    model[1].running_var[1] = float("nan")
    with pytest.raises(
        NonFiniteError, match=r"layer '1': buffer 'running_var' contains NaN or inf"
    ):
        nvmsim.convert(model)


def test_inf_in_an_excluded_layer_is_refused_but_minus_inf_masks_are_kept():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].register_buffer("mask", torch.tensor([0.0, -float("inf")]))
    nvmsim.convert(model, exclude=["1"], on_unconverted="ignore")
    with torch.no_grad():
        model[1].bias[0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"layer '1': parameter 'bias' contains NaN or inf"):
        nvmsim.convert(model, exclude=["1"], on_unconverted="ignore")


def test_on_off_ratio_too_close_to_one_is_refused_with_the_limit():
    limit = r"device\.on_off_ratio = 1\.000000001: .*must be >= 1\.0121: float32 rounding"
    with pytest.raises(ValueError, match=limit):
        cfg(on_off_ratio=1 + 1e-9)


@pytest.mark.parametrize("mapping", ["differential", "offset"])
def test_on_off_ratio_at_the_limit_keeps_weights_to_the_stated_tolerance(mapping):
    torch.manual_seed(1)
    ref = nn.Linear(300, 50)
    c = validate(
        AnalogConfig,
        {
            "device": {"on_off_ratio": MIN_ON_OFF_RATIO * (1 + 1e-9)},
            "crossbar": {"mapping": mapping},
        },
    )
    layer = nvmsim.convert(ref, c)
    w = ref.weight.detach()
    wmax = float(w.abs().max())
    assert (layer.tile.w_mean[0].T - w).abs().max() <= WEIGHT_RTOL * wmax
    x = torch.randn(20, 300)
    exact = x.double() @ w.double().T + ref.bias.detach().double()
    bound = WEIGHT_RTOL * wmax * x.abs().sum(1, keepdim=True).double()
    assert ((layer(x).double() - exact).abs() <= bound).all()
