import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import nvmsim
from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import AnalogLinear, NoisyActivation


@settings(max_examples=40, deadline=None)
@given(
    n_in=st.integers(1, 70),
    n_out=st.integers(1, 40),
    batch=st.integers(1, 5),
    tile=st.integers(1, 64),
    bias=st.booleans(),
    analog_bias=st.booleans(),
    mode=st.sampled_from(["differential", "offset"]),
    g_min=st.sampled_from([0.0, 0.1]),
)
def test_ideal_analog_linear_equals_torch(n_in, n_out, batch, tile, bias, analog_bias, mode, g_min):
    torch.manual_seed(n_in * 100 + n_out)
    ref = nn.Linear(n_in, n_out, bias=bias)
    cfg = validate(
        AnalogConfig,
        {
            "device": {"on_off_ratio": 1 / g_min if g_min else float("inf")},
            "crossbar": {
                "tile_rows": tile,
                "tile_cols": tile,
                "mapping": mode,
                "bias": "analog" if analog_bias else "digital",
            },
        },
    )
    layer = nvmsim.convert(ref, cfg)
    x = torch.randn(batch, 3, n_in)
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-5, atol=1e-5)


def test_state_dict_keys_match_torch_and_reload_reprograms():
    ref = nn.Linear(8, 3)
    layer = AnalogLinear(8, 3)
    assert layer.state_dict().keys() == ref.state_dict().keys()
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8)
    torch.testing.assert_close(layer(x), ref(x))
    with torch.no_grad():
        layer.weight.mul_(2)  # an optimiser step: the next forward reprograms
    torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias))


def test_convert_leaves_original_untouched_and_is_reproducible():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = validate(AnalogConfig, {"device": "reram", "seed": 3})
    a, b = nvmsim.convert(model, cfg), nvmsim.convert(model, cfg)
    assert isinstance(model[0], nn.Linear) and not isinstance(model[0], AnalogLinear)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    x = torch.randn(5, 10)
    assert torch.equal(a(x), b(x))  # same seed: same devices, same read-noise stream
    assert not torch.equal(a(x), a(x))  # read noise is fresh on every read
    assert a[0].seed != a[2].seed


def test_bad_inputs():
    layer = AnalogLinear(4, 2)
    with pytest.raises(ValueError, match="last dimension 4"):
        layer(torch.zeros(3, 5))
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        layer(torch.zeros(3, 4))


def test_inputs_get_gradients():
    layer = nvmsim.convert(nn.Linear(4, 2), validate(AnalogConfig, {"device": "reram"}))
    x = torch.randn(3, 4, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_noisy_activation_only_in_training():
    act = NoisyActivation(nn.ReLU(), sigma=0.5, generator=torch.Generator().manual_seed(0))
    x = torch.randn(10_000)
    act.eval()
    assert torch.equal(act(x), x.relu())
    act.train()
    y = act(torch.full((100_000,), 10.0))
    assert abs(float(y.std()) - 0.5) < 0.01


def test_drift_scales_outputs():
    cfg = validate(AnalogConfig, {"device": {"drift_nu": 0.1, "drift_t0": 1.0}})
    layer = nvmsim.convert(nn.Linear(6, 3, bias=False), cfg)
    x = torch.randn(2, 6)
    y0 = layer(x)
    layer.drift_to(1000.0)
    torch.testing.assert_close(layer(x), y0 * 1000.0**-0.1)
