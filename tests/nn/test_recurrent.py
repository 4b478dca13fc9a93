"""Analog RNN / LSTM / GRU: torch's results with ideal devices, a fresh read every step."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import analog_layers, convert
from nvmsim.nn.recurrent import AnalogGRU, AnalogLSTM, AnalogRNN


def _torch_layer(kind: str, size: int, hidden: int, layers: int, bidi: bool, first: bool,
                 bias: bool, proj: int) -> nn.Module:  # fmt: skip
    kw = {"num_layers": layers, "bidirectional": bidi, "batch_first": first, "bias": bias}
    if kind == "lstm":
        return nn.LSTM(size, hidden, proj_size=proj, **kw)
    if kind == "gru":
        return nn.GRU(size, hidden, **kw)
    return nn.RNN(size, hidden, nonlinearity=kind.removeprefix("rnn_"), **kw)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["lstm", "gru", "rnn_tanh", "rnn_relu"]),
    size=st.integers(1, 6),
    hidden=st.integers(1, 6),
    layers=st.integers(1, 3),
    bidi=st.booleans(),
    first=st.booleans(),
    bias=st.booleans(),
    proj=st.integers(0, 3),
    steps=st.integers(1, 5),
    batch=st.integers(1, 3),
    with_state=st.booleans(),
    tile_rows=st.sampled_from([2, 256]),
)
def test_ideal_recurrent_layers_equal_torch(
    kind, size, hidden, layers, bidi, first, bias, proj, steps, batch, with_state, tile_rows
):
    proj = proj if kind == "lstm" and proj < hidden else 0
    torch.manual_seed(0)
    ref = _torch_layer(kind, size, hidden, layers, bidi, first, bias, proj).double()
    cfg = validate(AnalogConfig, {"crossbar": {"tile_rows": tile_rows}})
    analog = convert(ref, cfg)
    assert type(analog).__name__.startswith("Analog")
    assert analog.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn((batch, steps, size) if first else (steps, batch, size), dtype=torch.float64)
    hx = None
    if with_state:
        n, h_out = layers * (2 if bidi else 1), proj or hidden
        h0 = torch.randn(n, batch, h_out, dtype=torch.float64)
        hx = (h0, torch.randn(n, batch, hidden, dtype=torch.float64)) if kind == "lstm" else h0
    want, want_state = ref(x, hx)
    got, got_state = analog(x, hx)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-9)
    for g, w in zip(
        got_state if kind == "lstm" else (got_state,),
        want_state if kind == "lstm" else (want_state,),
        strict=True,
    ):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-9)


def test_unbatched_input_and_its_errors():
    ref = nn.GRU(3, 4).double()
    analog = convert(ref, AnalogConfig())
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(analog(x)[0], ref(x)[0])
    with pytest.raises(ValueError, match=r"expects \(seq, batch, 3\)"):
        analog(torch.randn(5, 2, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"h0 must have shape \(1, 2, 4\)"):
        analog(torch.randn(5, 2, 3, dtype=torch.float64), torch.zeros(1, 3, 4))
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3), [5, 3])
    with pytest.raises(TypeError, match="packed sequences"):
        analog(packed)


def test_every_step_is_a_fresh_noisy_read():
    """Read noise on the recurrent matrix only: a sequence of identical zero inputs still
    gets different noise at every step (a static perturbation would give a fixed point)."""
    cfg = validate(AnalogConfig, {"device": {"read_noise": {"kind": "additive", "sigma": 0.1}}})
    analog = convert(nn.RNN(2, 3, bias=False), cfg)
    arrays = dict(analog.arrays.items())
    assert set(arrays) == {"ih_l0", "hh_l0"}
    h0 = torch.full((1, 1, 3), 0.5)
    out, _ = analog(torch.zeros(6, 1, 2), h0)
    steps = out[:, 0]
    assert not torch.allclose(steps[1:], steps[:-1])
    a, _ = analog(torch.zeros(6, 1, 2), h0)
    assert not torch.equal(a, out)  # and the next call reads afresh
    assert len(list(analog_layers(analog))) == 2


def test_recurrent_layers_are_torch_state_and_train():
    ref = nn.LSTM(3, 4, num_layers=2, proj_size=2).double()
    cfg = validate(AnalogConfig, {"device": {"programming_error": {"sigma": 0.05}}})
    analog = convert(ref, cfg)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    y = analog(x)[0]
    twin = copy.deepcopy(analog)
    torch.testing.assert_close(twin(x)[0], y, rtol=0, atol=0)  # the same chip
    back = copy.deepcopy(analog).float().double()
    torch.testing.assert_close(back(x)[0], y, rtol=1e-6, atol=1e-7)
    y.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in analog.parameters())
    opt = torch.optim.SGD(analog.parameters(), lr=0.1)
    opt.step()
    assert not torch.allclose(analog(x)[0], y)  # reprogrammed with the new weights


@pytest.mark.parametrize("cls", [AnalogRNN, AnalogLSTM, AnalogGRU])
def test_constructor_takes_torch_arguments(cls):
    layer = cls(4, 5, num_layers=2, batch_first=True, bidirectional=True, dtype=torch.float64)
    ref = getattr(nn, cls.__name__.removeprefix("Analog"))(4, 5, num_layers=2, batch_first=True,
                                                           bidirectional=True)  # fmt: skip
    assert layer.state_dict().keys() == ref.state_dict().keys()
    assert layer(torch.randn(2, 3, 4, dtype=torch.float64))[0].shape == (2, 3, 10)
