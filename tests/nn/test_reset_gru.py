"""ResetBeforeGRU (Keras's reset_after=False): Cho et al.'s equations; analog with ideal
devices equals it, and every step's reads are noisy under read noise."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import analog_layers, convert
from nvmsim.nn.reset_gru import AnalogResetBeforeGRU, ResetBeforeGRU


def _oracle(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cho et al. (2014), gates (r, z, n), written out with numpy."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h_n = w_hh.shape[1]
    h = np.zeros((x.shape[0], h_n))
    out = []
    for t in range(x.shape[1]):
        gi = x[:, t] @ w_ih.T + b
        r = sig(gi[:, :h_n] + h @ w_hh[:h_n].T)
        z = sig(gi[:, h_n : 2 * h_n] + h @ w_hh[h_n : 2 * h_n].T)
        n = np.tanh(gi[:, 2 * h_n :] + (r * h) @ w_hh[2 * h_n :].T)
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, 1)


@settings(max_examples=15, deadline=None)
@given(size=st.integers(1, 5), hidden=st.integers(1, 5), steps=st.integers(1, 4),
       batch=st.integers(1, 3), tile_rows=st.sampled_from([2, 256]))  # fmt: skip
def test_equations_and_ideal_analog(size, hidden, steps, batch, tile_rows):
    torch.manual_seed(size * 100 + hidden)
    gru = ResetBeforeGRU(size, hidden).double()
    x = torch.randn(batch, steps, size, dtype=torch.float64)
    y, h = gru(x)
    p = {k: v.detach().numpy() for k, v in gru.named_parameters()}
    want = _oracle(x.numpy(), p["weight_ih"], p["weight_hh"], p["bias"])
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h[0], y[:, -1])
    analog = convert(gru, validate(AnalogConfig, {"crossbar": {"tile_rows": tile_rows}}))
    assert isinstance(analog, AnalogResetBeforeGRU)
    assert analog.state_dict().keys() == gru.state_dict().keys()
    torch.testing.assert_close(analog(x)[0], y, rtol=1e-5, atol=1e-9)


def test_read_noise_reaches_every_step_and_is_reproducible():
    torch.manual_seed(0)
    gru = ResetBeforeGRU(3, 4, bias=False)
    cfg = validate(
        AnalogConfig, {"device": {"read_noise": {"kind": "additive", "sigma": 0.05}}, "seed": 3}
    )
    analog = convert(gru, cfg)
    assert [type(a).__name__ for a in analog_layers(analog)] == ["OwnedMatrix"] * 3
    x = torch.randn(5, 6, 3)
    a1 = analog(x)[0]
    assert not torch.allclose(a1, gru(x)[0], atol=1e-4)
    assert not torch.equal(a1, analog(x)[0])  # fresh noise per read
    again = convert(gru, cfg)(x)[0]
    torch.testing.assert_close(again, a1, rtol=0, atol=0)
    c1, c2 = copy.deepcopy(analog), copy.deepcopy(analog)  # the same chip, same noise state
    assert torch.equal(c1(x)[0], c2(x)[0])


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        ResetBeforeGRU(0, 3)
    with pytest.raises(ValueError, match=r"expects \(batch, seq, 3\)"):
        ResetBeforeGRU(3, 2)(torch.zeros(2, 3))
