import pytest

from nvmsim.models import build
from nvmsim.models.limits import MAX_LAYERS


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("transformer_rows", {"layers": 10**9}, r"layers must be a whole number from 1 to 1000"),
        ("transformer_rows", {"layers": 0}, r"got 0"),
        ("transformer_rows", {"layers": True}, r"got True"),
        ("mlp", {"sizes": [4] * (MAX_LAYERS + 2)}, r"number of layers\) must be .* got 1001"),
    ],
)
def test_a_depth_past_the_limit_is_refused_before_anything_is_built(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(name, **kwargs)


def test_depths_inside_the_limit_build():
    assert len(build("transformer_rows", layers=3).encoder.layers) == 3
    assert len(build("mlp", sizes=[4, 3, 2])) == 4  # Flatten, Linear, ReLU, Linear
