"""Analog multi-head attention: torch's results with ideal devices, noisy projections."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import analog_layers, convert, summary
from nvmsim.nn.attention import AnalogMultiheadAttention


@settings(max_examples=60, deadline=None)
@given(
    heads=st.sampled_from([1, 2]),
    head_dim=st.integers(1, 4),
    kdim=st.sampled_from([None, 3]),
    bias=st.booleans(),
    bias_kv=st.booleans(),
    zero_attn=st.booleans(),
    first=st.booleans(),
    lq=st.integers(1, 4),
    lk=st.integers(1, 4),
    masks=st.sampled_from(
        ["none", "padding", "causal", "float", "bool", "3d", "padding+causal", "causal_hint"]
    ),
    self_attn=st.booleans(),
    batched=st.booleans(),
    need_weights=st.booleans(),
)
def test_ideal_attention_equals_torch(
    heads, head_dim, kdim, bias, bias_kv, zero_attn, first, lq, lk, masks, self_attn, batched,
    need_weights,
):  # fmt: skip
    e, b = heads * head_dim, 2
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(e, heads, bias=bias, add_bias_kv=bias_kv, add_zero_attn=zero_attn,
                                kdim=kdim, vdim=kdim, batch_first=first).double()  # fmt: skip
    ref.eval()
    analog = convert(ref, AnalogConfig())
    assert type(analog) is AnalogMultiheadAttention
    assert analog.state_dict().keys() == ref.state_dict().keys()
    kd = kdim or e
    if self_attn and kdim is None:
        lk = lq

    def seq(length, dim):
        shape = (b, length, dim) if first else (length, b, dim)
        return torch.randn(shape if batched else (length, dim), dtype=torch.float64)

    q = seq(lq, e)
    k = q if self_attn and kdim is None else seq(lk, kd)
    v = k if self_attn and kdim is None else seq(lk, kd)
    kw = {"need_weights": need_weights}
    causal = nn.Transformer.generate_square_subsequent_mask(lq, dtype=torch.float64)
    if masks.startswith("padding") and batched:
        pad = torch.zeros(b, lk, dtype=torch.bool)
        pad[0, -1] = lk > 1
        kw["key_padding_mask"] = pad
    if masks in ("causal", "padding+causal", "causal_hint") and lq == lk:
        kw["attn_mask"] = causal
        kw["is_causal"] = masks == "causal_hint"
    elif masks == "float":
        kw["attn_mask"] = torch.randn(lq, lk, dtype=torch.float64)
    elif masks == "bool":
        kw["attn_mask"] = torch.rand(lq, lk) < 0.3
    elif masks == "3d" and batched:
        kw["attn_mask"] = torch.randn(b * heads, lq, lk, dtype=torch.float64)
    if bias_kv or zero_attn:
        kw.pop("attn_mask", None)
        kw.pop("key_padding_mask", None)
    want, want_w = ref(q, k, v, **kw)
    got, got_w = analog(q, k, v, **kw)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-9)
    if need_weights:
        torch.testing.assert_close(got_w, want_w, rtol=1e-5, atol=1e-9)
    else:
        assert got_w is None and want_w is None


def test_noisy_projections_change_the_output_and_train():
    """The MHA regression: converted attention under noise must not give the digital output."""
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    cfg = validate(AnalogConfig, {"device": {"read_noise": {"kind": "additive", "sigma": 0.05}}})
    analog = convert(ref, cfg)
    assert sorted(analog.arrays) == ["k", "out", "q", "v"]
    assert len(list(analog_layers(analog))) == 4
    x = torch.randn(3, 5, 8)
    got, _ = analog(x, x, x)
    with torch.no_grad():
        want, _ = ref(x, x, x)
    assert not torch.allclose(got, want, atol=1e-4)
    got.square().sum().backward()
    assert analog.in_proj_weight.grad.abs().sum() > 0
    assert analog.out_proj.weight.grad.abs().sum() > 0


def test_summary_lists_the_digital_attention_products():
    from nvmsim.nn import summary

    analog = convert(nn.Sequential(nn.MultiheadAttention(8, 2, batch_first=True)), AnalogConfig())
    x = torch.zeros(3, 5, 8)

    class Self(nn.Module):
        def __init__(self, mha):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x)[0]

    s = summary(Self(analog[0]), x)
    rows = {r.name: r for r in s.rows}
    assert list(rows) == ["mha.q", "mha.k", "mha.v", "mha.out", "mha.products"]
    assert all(rows[f"mha.{k}"].analog for k in "qkv") and not rows["mha.products"].analog
    assert rows["mha.q"].macs == 3 * 5 * 8 * 8
    assert rows["mha.products"].macs == 2 * 3 * 5 * 5 * 8  # Q K^T and A V per sequence


def test_encoder_with_attention_converts_its_projections():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
    model = nn.Sequential(nn.Linear(4, 8), nn.MultiheadAttention(8, 2, batch_first=True))
    analog = convert(model, AnalogConfig())
    assert type(analog[1]) is AnalogMultiheadAttention
    encoder = convert(nn.Sequential(layer), AnalogConfig(), on_unconverted="error")
    assert type(encoder[0].self_attn) is AnalogMultiheadAttention
    with pytest.raises(ValueError, match="last dimension 8"):
        analog[1](torch.zeros(2, 3, 5), torch.zeros(2, 3, 5), torch.zeros(2, 3, 5))


def _q(t: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer oracle of a symmetric converter over the range of each (head) matrix."""
    steps = 2 ** (bits - 1) - 1
    r = t.abs().amax(dim=(-2, -1), keepdim=True)
    lsb = torch.where(r > 0, r, torch.ones_like(r)) / steps
    codes = torch.round(torch.clamp(t / lsb, -steps, steps)).to(torch.int64)
    return codes, lsb


@pytest.mark.parametrize("need_weights", [False, True])
def test_quantized_attention_products_follow_integer_arithmetic(need_weights):
    torch.manual_seed(3)
    e, heads, bits_in, bits_out = 8, 2, 4, 6
    ref = nn.MultiheadAttention(e, heads, batch_first=True).double().eval()
    exact = validate(AnalogConfig, {"converter": {"attention_products": "quantized"}})
    x = torch.randn(2, 5, e, dtype=torch.float64)
    mask = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    want, want_w = ref(x, x, x, attn_mask=mask, need_weights=True)
    got, got_w = convert(ref, exact)(x, x, x, attn_mask=mask, need_weights=True)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)  # no bits: torch's result
    torch.testing.assert_close(got_w, want_w, rtol=1e-6, atol=1e-9)

    cfg = {"converter": {"attention_products": "quantized", "dac_bits": bits_in,
                         "adc_bits": bits_out}}  # fmt: skip
    analog = convert(ref, validate(AnalogConfig, cfg))  # the projections' own converters too

    def project(name: str, t: torch.Tensor) -> torch.Tensor:
        return analog.arrays[name](t.reshape(-1, e)).view(2, 5, e)

    with torch.no_grad():
        q, k, v = (project(n, x).view(2, 5, heads, -1).transpose(1, 2) for n in "qkv")
        (qc, ql), (kc, kl) = _q(q, bits_in), _q(k, bits_in)
        sc, sl = _q((qc @ kc.transpose(-2, -1)).double() * ql * kl, bits_out)
        a = torch.softmax(sc.double() * sl / math.sqrt(e // heads) + mask, dim=-1)
        (ac, al), (vc, vl) = _q(a, bits_in), _q(v, bits_in)
        oc, ol = _q((ac @ vc).double() * al * vl, bits_out)
        oracle = project("out", (oc.double() * ol).transpose(1, 2))
    with torch.no_grad():
        got, got_w = analog(x, x, x, attn_mask=mask, need_weights=need_weights)
    torch.testing.assert_close(got, oracle, rtol=1e-9, atol=1e-9)
    assert (got - want).abs().max() > 1e-3  # the converters are felt
    (row,) = [r for r in summary(analog).rows if r.name == "products"]
    assert row.kind == "Q K^T, A V (DAC 4 / ADC 6 bits)" and not row.analog
    if need_weights:
        torch.testing.assert_close(got_w, a.mean(dim=1), rtol=1e-9, atol=1e-12)
    else:
        assert got_w is None
