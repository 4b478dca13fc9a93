"""Today's reference nets: CIFAR ResNet-18 and MobileNet v1 (32x32 inputs)."""

import pytest
import torch
from torch import nn

from nvmsim.models import (
    INPUT_SHAPES,
    REGISTRY,
    MobileNet,
    ResNet,
    build,
    count_parameters,
    mobilenet,
    resnet18,
)
from nvmsim.nn.activations import NoisyActivation


@pytest.mark.parametrize(
    ("name", "cls", "params"),
    [("resnet18", ResNet, 11_173_962), ("mobilenet", MobileNet, 3_217_226)],
)
def test_full_size_parameter_counts_and_registry(name, cls, params):
    model = build(name)
    assert type(model) is cls and REGISTRY[name] in (resnet18, mobilenet)
    assert count_parameters(model) == params
    assert INPUT_SHAPES[name] == (3, 32, 32)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet18", {}),
        ("resnet18", {"width": 8, "num_classes": 7}),
        ("resnet18", {"width": 4, "in_channels": 1}),
        ("mobilenet", {}),
        ("mobilenet", {"width": 0.25, "depth": 4, "num_classes": 100}),
        ("mobilenet", {"width": 0.5, "depth": 13, "in_channels": 1}),
    ],
)
def test_output_shapes(name, kwargs):
    model = build(name, **kwargs).eval()
    x = torch.rand(2, kwargs.get("in_channels", 3), 32, 32)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, kwargs.get("num_classes", 10))
    assert torch.isfinite(y).all()


def test_resnet18_topology():
    model = resnet18(width=8)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20
    assert sum(m.kernel_size == (3, 3) for m in convs) == 17
    assert sum(m.kernel_size == (1, 1) for m in convs) == 3  # projection shortcuts
    assert model.fc.in_features == 8 * 8
    assert [m.out_channels for m in convs][-1] == 64


def test_resnet18_neuron_noise_in_training_only():
    """Paper 000's sigma_neu before each of the 17 ReLUs: the same weights, noisy outputs in
    training, the plain network in eval."""
    torch.manual_seed(0)
    plain = resnet18(width=4, in_channels=1)
    noisy = resnet18(width=4, in_channels=1, sigma_neu=0.5)
    noisy.load_state_dict(plain.state_dict())
    assert sum(isinstance(m, NoisyActivation) for m in noisy.modules()) == 9  # stem + 8 blocks
    x = torch.rand(3, 1, 16, 16)
    plain.eval(), noisy.eval()
    with torch.no_grad():
        assert torch.equal(noisy(x), plain(x))
    plain.train(), noisy.train()
    with torch.no_grad():
        assert not torch.allclose(noisy(x), plain(x), atol=1e-3)
    assert not any(isinstance(m, NoisyActivation) for m in plain.modules())


def test_mobilenet_topology():
    model = mobilenet(width=0.25, depth=4)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 4
    depthwise = convs[1::2]
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert [m.out_channels for m in convs[2::2]] == [16, 32, 32, 64]
    assert model.fc.in_features == 64
    # channels never drop below 8
    assert mobilenet(width=0.01, depth=1).features[0].out_channels == 8


def test_unknown_name():
    with pytest.raises(ValueError, match=r"unknown model 'resnet50'; known: .*mobilenet.*resnet18"):
        build("resnet50")
