import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvmsim.crossbar import converters, mapping


@settings(max_examples=30, deadline=None)
@given(
    mode=st.sampled_from(["differential", "offset"]),
    g_min=st.sampled_from([0.0, 0.01, 0.1, 0.5]),
    seed=st.integers(0, 1000),
)
def test_mapping_round_trip(mode, g_min, seed):
    w = torch.randn(7, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    wmax = mapping.weight_range(w)
    g = mapping.to_conductances(w, mode, wmax, g_min)
    assert float(g.min()) >= g_min - 1e-12 and float(g.max()) <= 1 + 1e-12
    if mode == "differential":
        back = (g[0] - g[1]) * mapping.scale(mode, wmax, g_min)
    else:
        back = (g[0] - mapping.reference_level(g_min)) * mapping.scale(mode, wmax, g_min)
    torch.testing.assert_close(back, w)


def test_percentile_clip_and_nan():
    w = torch.cat([torch.linspace(-1, 1, 101), torch.tensor([50.0])])
    assert mapping.weight_range(w, 90.0) < 2
    with pytest.raises(ValueError, match="NaN"):
        mapping.weight_range(torch.tensor([1.0, float("nan")]))


def test_symmetric_quantizer():
    x = torch.linspace(-2, 2, 1001)
    q = converters.quantize_symmetric(x, 4, 1.0)
    assert len(torch.unique(q)) == 15  # 2 * (2**3 - 1) + 1 levels
    assert float(q.abs().max()) == 1.0  # saturation
    inside = x.abs() <= 1
    assert float((q - x)[inside].abs().max()) <= 1 / 7 / 2 + 1e-6
