"""Row-by-row recurrent classifiers: sizes, and torch's output when converted ideally."""

import pytest
import torch

import nvmsim
from nvmsim.config import AnalogConfig
from nvmsim.models import build, count_parameters
from nvmsim.nn.recurrent import AnalogGRU, AnalogLSTM


@pytest.mark.parametrize(("name", "gates", "analog"), [("lstm_rows", 4, AnalogLSTM),
                                                       ("gru_rows", 3, AnalogGRU)])  # fmt: skip
def test_row_classifiers(name, gates, analog):
    model = build(name, hidden=16).double()
    h, w = 16, 28
    assert count_parameters(model) == gates * (h * (w + h) + 2 * h) + (h * 10 + 10)
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    converted = nvmsim.convert(model, AnalogConfig())
    assert type(converted.rnn) is analog
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x), rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="unknown cell 'rnn'"):
        nvmsim.models.sequence.RowClassifier("rnn")


def test_transformer_tokens_and_size():
    from nvmsim.models.sequence import TokenTransformer

    model = build("transformer_rows")
    d, ff, layers = 64, 128, 2
    per_layer = 4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d  # attention, FF, two norms
    assert count_parameters(model) == 28 * d + d + layers * per_layer + d * 10 + 10 == 69_450
    x = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    rows = model.tokens(x)
    assert rows.shape == (2, 28, 28) and torch.equal(rows[1, 3], x[1, 0, 3])
    patches = build("transformer_rows", patch=7).tokens(x)
    assert patches.shape == (2, 16, 49)
    assert torch.equal(patches[0, 5].view(7, 7), x[0, 0, 7:14, 7:14])  # row 1, column 1
    assert model(x).shape == (2, 10)
    with pytest.raises(ValueError, match="patch must be 0 .rows. or divide the image size 28"):
        TokenTransformer(patch=5)
