"""Analog RNN / LSTM / GRU: torch's results with ideal devices, a fresh read every step."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import analog_layers, convert
from nvmsim.nn.recurrent import (
    AnalogGRU,
    AnalogLSTM,
    AnalogRNN,
    physical_tiles,
    uncalibrated,
)


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
    joint=st.booleans(),
    grad=st.booleans(),
)
def test_ideal_recurrent_layers_equal_torch(
    kind,
    size,
    hidden,
    layers,
    bidi,
    first,
    bias,
    proj,
    steps,
    batch,
    with_state,
    tile_rows,
    joint,
    grad,
):
    """Split and joint arrays; with gradients on (out of place) and off (in place)."""
    proj = proj if kind == "lstm" and proj < hidden else 0
    joint = joint and kind != "gru"
    torch.manual_seed(0)
    ref = _torch_layer(kind, size, hidden, layers, bidi, first, bias, proj).double()
    xb = {"tile_rows": tile_rows, "recurrent": "joint" if joint else "split"}
    analog = convert(ref, validate(AnalogConfig, {"crossbar": xb}))
    assert type(analog).__name__.startswith("Analog")
    assert analog.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn((batch, steps, size) if first else (steps, batch, size), dtype=torch.float64)
    hx = None
    if with_state:
        n, h_out = layers * (2 if bidi else 1), proj or hidden
        h0 = torch.randn(n, batch, h_out, dtype=torch.float64)
        hx = (h0, torch.randn(n, batch, hidden, dtype=torch.float64)) if kind == "lstm" else h0
    want, want_state = ref(x, hx)
    with torch.set_grad_enabled(grad):
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


def _joint(**device) -> AnalogConfig:
    return validate(AnalogConfig, {"device": device, "crossbar": {"recurrent": "joint"}})


def test_joint_arrays_hold_input_and_recurrent_rows():
    ref = nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    analog = convert(ref, _joint())
    assert set(analog.arrays) == {
        f"{p}_l{k}{d}" for p in ("joint", "hr") for k in (0, 1) for d in ("", "_reverse")
    }
    joint = analog.arrays["joint_l1_reverse"]
    assert joint.weight.shape == (16, 2 * 2 + 2)  # [W_ih | W_hh] of the second layer
    torch.testing.assert_close(
        joint.bias, ref.bias_ih_l1_reverse + ref.bias_hh_l1_reverse, rtol=0, atol=0
    )
    assert analog.state_dict().keys() == ref.state_dict().keys()
    with pytest.raises(ValueError, match="candidate gate scales its recurrent part"):
        convert(nn.GRU(3, 4), _joint())


def _pre_activations(analog, x, h0, draws: int) -> torch.Tensor:
    """``draws`` one-step outputs of a ReLU RNN whose large bias keeps ReLU linear."""
    with torch.no_grad():
        return torch.stack([analog(x, h0)[0][0] for _ in range(draws)])


@pytest.mark.parametrize("noise", ["additive", "proportional"])
def test_joint_read_is_one_read_of_the_stacked_arrays(noise):
    """With per-device read noise (digital bias, no converters) a joint read has the
    distribution of the split reads (the variances add either way) and of explicit
    per-device sampling, with half the draws: checked in mean and variance."""
    torch.manual_seed(3)
    ref = nn.RNN(5, 4, nonlinearity="relu").double()
    with torch.no_grad():
        ref.bias_ih_l0.fill_(3.0)
    x, h0 = torch.rand(1, 2, 5, dtype=torch.float64), torch.rand(1, 2, 4, dtype=torch.float64)
    device = {"read_noise": {"kind": noise, "sigma": 0.1}, "on_off_ratio": 10, "clip": "none"}
    reads = {}
    for name, mode, rec, stream in [
        ("joint", "moment", "joint", "blocked"),
        ("sampled", "sample", "joint", "blocked"),
        ("split", "moment", "split", "blocked"),  # two reads added, one draw
        ("split_serial", "moment", "split", "serial"),  # two reads, two draws
    ]:
        cfg = validate(AnalogConfig, {"device": device, "read_noise_mode": mode,
                                      "crossbar": {"recurrent": rec},
                                      "read_noise_stream": stream})  # fmt: skip
        reads[name] = _pre_activations(convert(ref, cfg), x, h0, 4000)
    assert reads["joint"].min() > 0  # ReLU stayed linear
    n = 4000
    for other in ("sampled", "split", "split_serial"):
        a, b = reads["joint"], reads[other]
        se_mean = (a.var(0) / n + b.var(0) / n).sqrt()
        assert ((a.mean(0) - b.mean(0)).abs() < 5 * se_mean).all()
        # variance: standard error of a sample variance ~ var * sqrt(2 / n)
        se_var = (a.var(0) + b.var(0)) * (2 / n) ** 0.5
        assert ((a.var(0) - b.var(0)).abs() < 5 * se_var).all()
    assert (reads["joint"].var(0) > 0).all()


def test_joint_and_added_split_reads_draw_once_per_gate_column_and_step(monkeypatch):
    """Joint arrays read once per step; split arrays read twice, but on the blocked stream
    their two reads (mean plus Gaussian noise each, nothing after) are drawn as one."""
    from nvmsim.crossbar import normals

    drawn = []
    draw = normals.standard_normal

    def counted(like, source, stream):
        drawn.append(like.numel())
        return draw(like, source, stream)

    monkeypatch.setattr(normals, "standard_normal", counted)
    x = torch.rand(5, 2, 3)  # 5 steps, batch 2; 4 gates of 4 units
    for rec, stream, per_step in (
        ("joint", "blocked", 1), ("split", "blocked", 1), ("split", "serial", 2)
    ):  # fmt: skip
        cfg = validate(AnalogConfig, {
            "device": {"read_noise": {"kind": "additive", "sigma": 0.1}},
            "crossbar": {"recurrent": rec}, "read_noise_stream": stream,
        })  # fmt: skip
        drawn.clear()
        convert(nn.LSTM(3, 4), cfg)(x)
        assert sum(drawn) == per_step * 5 * 2 * 16, (rec, stream)
    cfg = validate(AnalogConfig, {  # a GRU's candidate scales its recurrent read: two draws
        "device": {"read_noise": {"kind": "additive", "sigma": 0.1}},
    })  # fmt: skip
    drawn.clear()
    convert(nn.GRU(3, 4), cfg)(x)
    assert sum(drawn) == 2 * 5 * 2 * 12


def _fine_adc(rec: str) -> AnalogConfig:
    return validate(AnalogConfig, {
        "converter": {"dac_bits": 16, "adc_bits": 16},
        "crossbar": {"recurrent": rec, "tile_rows": 5},
    })  # fmt: skip


@pytest.mark.parametrize("rec", ["split", "joint"])
def test_converter_ranges_calibrate_over_every_step(rec):
    """A recurrent matrix's ADC range is the largest partial sum of any step of the first
    batch (here against torch's own states: 16-bit converters are nearly exact), not the
    fallback of step 0's zero state."""
    torch.manual_seed(2)
    ref = nn.RNN(3, 4).double()
    x = torch.randn(9, 5, 3, dtype=torch.float64)
    analog = convert(ref, _fine_adc(rec))
    with torch.no_grad():
        analog(x)
        states, _ = ref(x)
    h_prev = torch.cat([torch.zeros(1, 5, 4, dtype=torch.float64), states[:-1]])
    name = "joint_l0" if rec == "joint" else "hh_l0"
    tile = analog.arrays[name].tile
    rows = torch.cat([x, h_prev], 2) if rec == "joint" else h_prev
    w = analog.arrays[name].weight.detach()
    want = []
    for lo, hi in tile.partition():  # arrays of 5 rows
        part = rows[..., lo:hi] @ w[:, lo:hi].T
        want.append(part.abs().max())
    torch.testing.assert_close(tile.adc_range.flatten(), torch.stack(want), rtol=1e-3, atol=0)


def test_calibration_pass_leaves_the_read_noise_stream_alone():
    cfg = validate(AnalogConfig, {
        "device": {"read_noise": {"kind": "additive", "sigma": 0.05}},
        "converter": {"dac_bits": 6, "adc_bits": 6},
    })  # fmt: skip
    torch.manual_seed(0)
    a = convert(nn.LSTM(3, 4), cfg)
    twin = copy.deepcopy(a)
    x = torch.rand(6, 2, 3)
    with torch.no_grad():
        first = a(x)[0]  # calibrates, then reads
        for t, u in zip(
            physical_tiles(twin.arrays.values()), physical_tiles(a.arrays.values()), strict=True
        ):
            t.dac_range, t.adc_range = u.dac_range, u.adc_range
        assert not uncalibrated(twin.arrays.values())
        assert torch.equal(twin(x)[0], first)  # the same noise draws: none spent calibrating
        again = a(x)[0]
    assert not torch.equal(again, first)


def test_layers_without_converters_never_calibrate():
    analog = convert(nn.GRU(3, 4), AnalogConfig())
    assert not uncalibrated(analog.arrays.values())
