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
