"""Recurrent classifiers of images read row by row: an LSTM and a GRU (28 steps of 28)."""

from __future__ import annotations

import torch
from torch import nn


class RowClassifier(nn.Module):
    """``cell`` (``"lstm"`` or ``"gru"``, ``hidden`` units, batch first) over the rows of an
    image, then ``Linear(hidden, classes)`` on the last step's state. An input ``(B, C, H, W)``
    is read as ``H`` steps of ``C * W`` values (MNIST: 28 steps of 28)."""

    def __init__(
        self, cell: str = "lstm", hidden: int = 128, rows: int = 28, width: int = 28,
        classes: int = 10,
    ) -> None:  # fmt: skip
        super().__init__()
        kinds = {"lstm": nn.LSTM, "gru": nn.GRU}
        if cell not in kinds:
            raise ValueError(f"unknown cell {cell!r}; known: lstm, gru")
        self.rows, self.width = rows, width
        self.rnn = kinds[cell](width, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.reshape(x.shape[0], -1, self.width)
        out, _ = self.rnn(seq)
        return self.head(out[:, -1])


def lstm_rows(hidden: int = 128) -> RowClassifier:
    """LSTM(28 -> hidden) over 28 image rows, then Linear(hidden, 10) (82,186 params at 128)."""
    return RowClassifier("lstm", hidden)


def gru_rows(hidden: int = 128) -> RowClassifier:
    """GRU(28 -> hidden) over 28 image rows, then Linear(hidden, 10) (61,962 params at 128)."""
    return RowClassifier("gru", hidden)
