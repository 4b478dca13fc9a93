"""Software training helpers."""

import math

import pytest
import torch
from torch import nn

from nvmsim.training.software import keras_init, make_optimizer, train


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


def test_optimizers_and_training_seeds():
    model = nn.Linear(4, 3)
    rms = make_optimizer(model, "rmsprop", 1e-3, momentum=0.5)
    assert isinstance(rms, torch.optim.RMSprop)
    assert rms.defaults["alpha"] == 0.9 and rms.defaults["eps"] == 1e-7  # Keras's, not torch's
    assert make_optimizer(model, "sgd", 0.1, momentum=0.9).defaults["momentum"] == 0.9
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer(model, "adam", 1e-3, momentum=0.9)
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        make_optimizer(model, "lbfgs", 1e-3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)

    def trained(seed: int, optimizer: str) -> torch.Tensor:
        torch.manual_seed(0)
        m = nn.Linear(4, 3)
        train(m, x, y, epochs=2, batch_size=8, lr=1e-2, optimizer=optimizer, seed=seed)
        return m.weight.detach()

    assert torch.equal(trained(1, "rmsprop"), trained(1, "rmsprop"))
    assert not torch.equal(trained(1, "rmsprop"), trained(2, "rmsprop"))  # other shuffling
