"""Sequence classifiers of images: an LSTM and a GRU reading rows (28 steps of 28), and a
transformer encoder over rows or patches as tokens."""

from __future__ import annotations

import math

import torch
from torch import nn

from nvmsim.models.limits import check_depth


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


def _sinusoids(n: int, d: int) -> torch.Tensor:
    """Vaswani et al.'s fixed position encodings, (n, d)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)
    enc = torch.zeros(n, d, dtype=torch.float64)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return enc.float()


class TokenTransformer(nn.Module):
    """A transformer encoder classifier of images cut into tokens: ``patch`` x ``patch``
    patches (``patch = 0``: whole rows), a linear embedding to ``d_model``, fixed sinusoidal
    positions, ``layers`` post-norm encoder layers (``heads`` heads, feed-forward ``ff``,
    ReLU), the mean over tokens, then ``Linear(d_model, classes)``."""

    def __init__(
        self, d_model: int = 64, heads: int = 4, layers: int = 2, ff: int = 128, patch: int = 0,
        size: int = 28, channels: int = 1, classes: int = 10, dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        check_depth(layers, "layers")
        if patch < 0 or (patch and size % patch):
            raise ValueError(f"patch must be 0 (rows) or divide the image size {size}, got {patch}")
        self.patch, self.size, self.channels = patch, size, channels
        tokens, width = (size, channels * size) if not patch else (
            (size // patch) ** 2, channels * patch * patch)  # fmt: skip
        self.embed = nn.Linear(width, d_model)
        self.register_buffer("positions", _sinusoids(tokens, d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images as (B, tokens, width)."""
        x = x.reshape(x.shape[0], self.channels, self.size, self.size)
        if not self.patch:
            return x.permute(0, 2, 1, 3).reshape(x.shape[0], self.size, -1)
        p = self.patch
        x = x.unfold(2, p, p).unfold(3, p, p)  # (B, C, H/p, W/p, p, p)
        return x.permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], -1, self.channels * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(self.tokens(x)) + self.positions
        return self.head(self.encoder(h).mean(dim=1))


def transformer_rows(d_model: int = 64, layers: int = 2, patch: int = 0) -> TokenTransformer:
    """Transformer encoder over the 28 rows of an MNIST image (2 layers, d_model 64, 4 heads,
    feed-forward 128: 69,450 params); ``patch = 7`` reads 16 patches of 7x7 instead."""
    return TokenTransformer(d_model=d_model, layers=layers, patch=patch)
