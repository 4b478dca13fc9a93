"""Training through analog layers: the weights get the digital product's gradient."""

import copy

import pytest
import torch
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import convert


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, groups=2, padding="same", padding_mode="reflect"),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
    ).double()


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return model


@pytest.mark.parametrize("bias", ["digital", "analog"])
def test_ideal_training_step_equals_torch_step(bias):
    net = _net()
    cfg = validate(AnalogConfig, {"crossbar": {"bias": bias, "tile_rows": 16}})
    analog = convert(copy.deepcopy(net), cfg)
    x = torch.rand(8, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 5
    _step(net, x, y), _step(analog, x, y)
    for (name, p), q in zip(net.named_parameters(), analog.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-10), name
    with torch.no_grad():  # the reprogrammed chip reads the new weights
        assert torch.allclose(analog(x), net(x), rtol=1e-10, atol=1e-10)


def test_weight_gradient_under_read_noise_is_unbiased():
    """With additive read noise the mean weight gradient of a squared loss over many draws is
    the noise-free gradient (the noise has mean zero; the loss is quadratic in it)."""
    torch.manual_seed(0)
    lin = nn.Linear(6, 3).double()
    x = torch.rand(4, 6, dtype=torch.float64)
    target = torch.rand(4, 3, dtype=torch.float64)
    device = {"read_noise": {"kind": "additive", "sigma": 0.05}, "clip": "none"}  # unbiased reads
    noisy = validate(AnalogConfig, {"device": device})

    def grad(layer):
        layer.zero_grad()
        (layer(x) - target).square().sum().backward()
        return layer.weight.grad.clone()

    clean = grad(convert(copy.deepcopy(lin), AnalogConfig()))
    layer = convert(copy.deepcopy(lin), noisy)
    draws = torch.stack([grad(layer) for _ in range(4000)])
    sem = draws.std(0) / 4000**0.5
    assert (draws.std(0) > 0).all()  # the noise does reach the gradient
    assert ((draws.mean(0) - clean).abs() <= 5 * sem + 1e-12).all()


@pytest.mark.parametrize("converters", [{}, {"dac_bits": 6, "adc_bits": 6}])
@pytest.mark.parametrize("rows", [256, 3])
def test_offset_mapping_with_read_noise_trains(converters, rows):
    """The reference columns' noise of a layer whose input needs a gradient (every layer
    after the first) is scaled out of place: backward works and gives finite gradients."""
    cfg = validate(AnalogConfig, {
        "crossbar": {"mapping": "offset", "tile_rows": rows},
        "device": {"read_noise": {"kind": "proportional", "sigma": 0.05}},
        "converter": converters,
    })  # fmt: skip
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(18, 4),
        nn.ReLU(), nn.Linear(4, 3),
    )  # fmt: skip
    analog = convert(net, cfg)
    analog(torch.rand(5, 2, 7, 7)).square().sum().backward()
    grads = [p.grad for p in analog.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert all(float(g.abs().sum()) > 0 for g in grads)
