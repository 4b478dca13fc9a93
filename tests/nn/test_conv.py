import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import nvmsim
from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import AnalogConv2d


@settings(max_examples=30, deadline=None)
@given(
    c_in=st.integers(1, 4),
    c_out=st.integers(1, 5),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.sampled_from([0, 1, 2, "same", "valid"]),
    dilation=st.integers(1, 2),
    padding_mode=st.sampled_from(["zeros", "reflect", "circular"]),
    tile_rows=st.sampled_from([4, 256]),
    unfold=st.booleans(),
)
def test_ideal_analog_conv_equals_torch(
    c_in, c_out, k, stride, padding, dilation, padding_mode, tile_rows, unfold
):
    if padding == "same":
        stride = 1
    torch.manual_seed(c_in * 10 + c_out)
    ref = nn.Conv2d(c_in, c_out, k, stride, padding, dilation, padding_mode=padding_mode)
    # analog bias forces the unfold (im2col) path; digital bias the direct conv2d path
    cfg = validate(
        AnalogConfig,
        {"crossbar": {"tile_rows": tile_rows, "bias": "analog" if unfold else "digital"}},
    )
    layer = nvmsim.convert(ref, cfg)
    x = torch.randn(2, c_in, 9, 8)
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-5, atol=1e-5)


def test_direct_conv_noise_matches_per_pixel_sampling():
    """The conv2d form of the moment identity equals unfolded explicit sampling."""
    torch.manual_seed(0)
    ref = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.rand(1, 2, 5, 5).repeat(4000, 1, 1, 1)
    stats = {}
    for mode in ("moment", "sample"):
        for kind in ("additive", "proportional"):
            cfg = validate(
                AnalogConfig,
                {
                    "read_noise_mode": mode,
                    "device": {"read_noise": {"kind": kind, "sigma": 0.2}, "clip": "none"},
                },
            )
            y = nvmsim.convert(ref, cfg)(x)
            stats[mode, kind] = (y.mean(0), y.var(0))
    for kind in ("additive", "proportional"):
        (ma, va), (mb, vb) = stats["moment", kind], stats["sample", kind]
        assert ((ma - mb).abs() <= 5 * ((va + vb) / 4000).sqrt() + 1e-6).all()  # 5 SE
        # SE of one variance over 4000 draws: sqrt(2 / 4000) = 2.2 %; of a ratio of two: 3.2 %
        torch.testing.assert_close(va, vb, rtol=5 * 0.0316, atol=1e-7)


def test_state_dict_and_groups():
    ref = nn.Conv2d(3, 4, 3)
    assert AnalogConv2d(3, 4, 3).state_dict().keys() == ref.state_dict().keys()
