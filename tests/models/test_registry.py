import pytest
import torch

import nvmsim
from nvmsim.models import build, count_parameters


@pytest.mark.parametrize(
    ("name", "kwargs", "params", "input_shape"),
    [
        ("mlp128", {}, 101_770, (2, 1, 28, 28)),
        ("mlp300", {}, 785 * 300 + 301 * 10, (2, 1, 28, 28)),
        ("cnn000", {}, 119_322, (2, 1, 28, 28)),
        ("mosaics_rnn", {"t": 7}, 118_378, (2, 1, 28, 28)),
        ("mosaics_rnn", {"t": 56}, 158_656, (2, 1, 28, 28)),
        ("mlp528", {}, 164_885, (2, 1, 22, 24)),
        ("fc_tanh", {"n_fe": 50, "hidden_layers": 2}, 785 * 50 + 51 * 50 + 51 * 10, (2, 784)),
        ("cifar_cnn", {}, None, (2, 3, 32, 32)),
    ],
)
def test_paper_models_shapes_and_parameter_counts(name, kwargs, params, input_shape):
    model = build(name, **kwargs)
    if params is not None:
        assert count_parameters(model) == params
    y = model(torch.rand(input_shape))
    assert y.shape == (2, 10)
    analog = nvmsim.convert(model)
    torch.testing.assert_close(
        analog(torch.ones(input_shape)), model(torch.ones(input_shape)), rtol=1e-4, atol=1e-4
    )


def test_mosaics_rnn_divisors_and_errors():
    for t in (7, 14, 16, 28, 49, 56):
        rnn = build("mosaics_rnn", t=t)
        assert rnn.hidden == 400 - 784 // t
    with pytest.raises(ValueError, match="divisor"):
        build("mosaics_rnn", t=5)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build("nope")


def test_bounded_rnn_keeps_its_hidden_state_in_the_unit_interval():
    torch.manual_seed(0)
    rnn = build("mosaics_rnn", t=7, bounded=True)
    with torch.no_grad():
        rnn.core.weight.mul_(50)  # pre-activations far outside [0, 1]
    states = []
    rnn.act.register_forward_hook(lambda m, i, o: states.append(o))
    rnn(torch.rand(4, 1, 28, 28))
    h = torch.stack(states)
    assert len(states) == 7 and h.min() == 0 and h.max() == 1
    plain = build("mosaics_rnn", t=7)
    assert isinstance(plain.act, torch.nn.ReLU)
    assert count_parameters(rnn) == count_parameters(plain) == 118_378
