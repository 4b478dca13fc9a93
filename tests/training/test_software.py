"""Software training helpers."""

import math

import pytest
import torch
from torch import nn

from nvmsim.training.software import keras_init


def test_keras_init_is_glorot_uniform_with_zero_biases():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 5), nn.Flatten(), nn.Linear(400, 300))
    keras_init(model)
    conv, lin = model[0], model[2]
    for w, fan_in, fan_out in ((conv.weight, 3 * 25, 8 * 25), (lin.weight, 400, 300)):
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert float(w.abs().max()) <= bound
        # uniform on [-b, b]: variance b^2 / 3 (120,000 draws for the linear layer)
        assert float(w.var()) == pytest.approx(bound**2 / 3, rel=0.1)
    assert not conv.bias.any() and not lin.bias.any()


def test_predict_builds_no_autograd_graph():
    from nvmsim.training.software import predict

    out = predict(nn.Linear(4, 3), torch.rand(5, 4))
    assert out.shape == (5, 3) and not out.requires_grad
