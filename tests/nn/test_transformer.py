"""Transformer encoder layers on crossbars: torch's result (fast path or not) with ideal
devices; under noise every projection and feed-forward product is an analog read."""

import copy

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.models import build
from nvmsim.nn import convert, summary
from nvmsim.nn.attention import AnalogMultiheadAttention
from nvmsim.nn.transformer import AnalogTransformerEncoderLayer

NOISY = validate(AnalogConfig, {"device": {"read_noise": {"kind": "additive", "sigma": 0.05}}})


@settings(max_examples=20, deadline=None)
@given(
    norm_first=st.booleans(),
    batch_first=st.booleans(),
    activation=st.sampled_from(["relu", "gelu"]),
    causal=st.booleans(),
    padding=st.booleans(),
    stacked=st.booleans(),
    train=st.booleans(),
)
def test_ideal_encoder_equals_torch(norm_first, batch_first, activation, causal, padding,
                                    stacked, train):  # fmt: skip
    torch.manual_seed(1)
    layer = nn.TransformerEncoderLayer(8, 2, 16, 0.0, activation, batch_first=batch_first,
                                       norm_first=norm_first)  # fmt: skip
    ref = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True) if stacked else layer
    ref.train(train)
    b, t = 3, 5
    x = torch.randn((b, t, 8) if batch_first else (t, b, 8))
    mask = nn.Transformer.generate_square_subsequent_mask(t) if causal else None
    pad = torch.zeros(b, t, dtype=torch.bool)
    pad[0, -2:] = True
    kw = {"mask" if stacked else "src_mask": mask,
          "src_key_padding_mask": pad if padding else None}  # fmt: skip
    analog = convert(ref, AnalogConfig(), on_unconverted="error")
    with torch.no_grad():
        want, got = ref(x, **kw), analog(x, **kw)
    if stacked and padding:  # torch's nested fast path returns zeros at padded positions
        keep = ~(pad[..., None] if batch_first else pad.T[..., None])
        want, got = want * keep, got * keep
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    encoders = [m for m in analog.modules() if isinstance(m, AnalogTransformerEncoderLayer)]
    assert len(encoders) == (2 if stacked else 1)
    assert analog.state_dict().keys() == ref.state_dict().keys()


def test_noise_reaches_every_product_and_summary_lists_the_digital_ones():
    model = build("transformer_rows").eval()
    x = torch.rand(4, 1, 28, 28)
    analog = convert(model, NOISY)
    with torch.no_grad():
        want, got = model(x), analog(x)
        assert (got - want).abs().max() > 1e-3
        again = copy.deepcopy(analog)
        assert torch.equal(again(x), copy.deepcopy(analog)(x))
    att = analog.encoder.layers[0].self_attn
    assert isinstance(att, AnalogMultiheadAttention)
    rows = {r.name: r for r in summary(analog, x).rows}
    assert not rows["encoder.layers.0.self_attn.products"].analog
    assert rows["encoder.layers.1.linear2"].analog
    # each analog matrix is read: a noiseless linear1 of layer 0 changes the output less
    quiet = convert(model, NOISY, exclude=["encoder.layers.0.linear1"])
    with torch.no_grad():
        assert not torch.equal(quiet(x), got)
