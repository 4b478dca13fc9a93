"""Paper 000's Mosaics RNN is the engine's ReLU RNN on joint arrays, plus a readout."""

import copy

import pytest
import torch
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import convert
from nvmsim.nn.linear import AnalogLinear
from nvmsim.nn.mosaics import MosaicsRNN
from nvmsim.nn.recurrent import AnalogRNN
from nvmsim.seeds import spawn_seeds

NOISY = validate(AnalogConfig, {
    "device": {"preset": "reram", "read_noise": {"kind": "proportional", "sigma": 0.1}},
    "converter": {"dac_bits": 6, "adc_bits": 6},
    "crossbar": {"tile_rows": 16, "recurrent": "joint"},
})  # fmt: skip


def _mosaics() -> MosaicsRNN:
    torch.manual_seed(0)
    return MosaicsRNN(t=4, inputs=24, width=16, classes=3).double()


def test_forward_is_paper_000s_loop():
    """Oracle: the paper's loop written out, on a copy of the converted (noisy) core."""
    net = _mosaics()
    analog = convert(net, NOISY)
    x = torch.rand(5, 24, dtype=torch.float64)
    with torch.no_grad():
        analog(x)  # calibrates the converters over every step
    twin = copy.deepcopy(analog)  # the same chip, ranges and noise stream
    h = torch.zeros(5, net.hidden, dtype=torch.float64)
    for step in range(4):
        h = torch.relu(twin.core(torch.cat([x[:, 6 * step : 6 * step + 6], h], dim=1)))
    assert torch.equal(analog(x), twin.readout(h))


@pytest.mark.parametrize("cfg", [AnalogConfig(), NOISY])
def test_core_is_an_analog_relu_rnn_on_joint_arrays(cfg):
    """The core (one array set of [x_chunk; h] rows, read at every step) and an
    ``AnalogRNN(relu)`` with ``W_ih | W_hh`` = the core's columns, programmed from the same
    seed, give bit-identical states: one implementation of the joint read."""
    net = _mosaics()
    seed = 123
    core = AnalogLinear.from_torch(net.core, cfg, seed=spawn_seeds(seed, 1)[0])
    rnn = nn.RNN(6, net.hidden, nonlinearity="relu").double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(net.core.weight[:, :6])
        rnn.weight_hh_l0.copy_(net.core.weight[:, 6:])
        rnn.bias_ih_l0.copy_(net.core.bias)
        rnn.bias_hh_l0.zero_()
    joint = cfg.model_copy(
        update={"crossbar": cfg.crossbar.model_copy(update={"recurrent": "joint"})}
    )
    analog_rnn = AnalogRNN.from_torch(rnn, joint, seed=seed)
    x = torch.rand(5, 24, dtype=torch.float64)
    net.core = core
    with torch.no_grad():
        states, _ = analog_rnn(x.reshape(5, 4, 6).transpose(0, 1))
        want = net.readout(states[-1])
        got = net(x)
    assert torch.equal(got, want)
