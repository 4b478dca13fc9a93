"""Networks of paper 000 (Bennett, Dellana et al.): MLPs, the CNN and the Mosaics RNN."""

from __future__ import annotations

import torch
from torch import nn

from nvmsim.nn.activations import BoundedReLU, NoisyActivation


def _act(sigma_neu: float, bounded: bool = False) -> nn.Module:
    act = BoundedReLU() if bounded else nn.ReLU()
    return NoisyActivation(act, sigma_neu) if sigma_neu > 0 else act


def mlp(sizes: tuple[int, ...], sigma_neu: float = 0.0, bounded: bool = False) -> nn.Sequential:
    """Fully connected net ``sizes[0] -> ... -> sizes[-1]`` with ReLU between layers."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(_act(sigma_neu, bounded))
    return nn.Sequential(*layers)


def mlp128(sigma_neu: float = 0.0, bounded: bool = False) -> nn.Sequential:
    """784-128-10 (101,770 parameters)."""
    return mlp((784, 128, 10), sigma_neu, bounded)


def mlp300(sigma_neu: float = 0.0) -> nn.Sequential:
    """784-300-10, Table I of paper 000 (785x300 and 301x10 arrays with the bias rows)."""
    return mlp((784, 300, 10), sigma_neu)


def cnn000(sigma_neu: float = 0.0, in_channels: int = 1, size: int = 28) -> nn.Sequential:
    """Conv(3)x2, MaxPool 2, Conv(6)x2, Dense 100, Dense 10, bounded ReLU (119,322 params)."""

    def a():
        return _act(sigma_neu, bounded=True)

    return nn.Sequential(
        nn.Conv2d(in_channels, 3, 3, padding=1), a(),
        nn.Conv2d(3, 3, 3, padding=1), a(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 6, 3, padding=1), a(),
        nn.Conv2d(6, 6, 3, padding=1), a(),
        nn.Flatten(),
        nn.Linear(6 * (size // 2) ** 2, 100), a(),
        nn.Linear(100, 10),
    )  # fmt: skip


class MosaicsRNN(nn.Module):
    """Paper 000's Mosaics RNN: the input is read in ``t`` chunks of ``M / t`` values.

    One core ``[x_chunk, h_prev]`` (400) -> ``D = 400 - M/t`` with ReLU runs at every step;
    the readout ``D -> 10`` runs after the last step. Both are plain ``nn.Linear`` modules,
    so :func:`nvmsim.convert` puts them on crossbars and the core is read at every step.
    ``bounded`` uses the CNN's bounded ReLU ``min(max(0, x), 1)`` in the core, which keeps
    the hidden state in [0, 1] at every step.
    """

    def __init__(
        self,
        t: int = 7,
        inputs: int = 784,
        width: int = 400,
        sigma_neu: float = 0.0,
        bounded: bool = False,
    ):
        super().__init__()
        if t < 1 or inputs % t:
            raise ValueError(f"t must be a positive divisor of {inputs}, got {t}")
        self.t, self.chunk = t, inputs // t
        self.hidden = width - self.chunk
        if self.hidden < 1:
            raise ValueError(f"chunk {self.chunk} leaves no hidden units in width {width}")
        self.core = nn.Linear(width, self.hidden)
        self.act = _act(sigma_neu, bounded)
        self.readout = nn.Linear(self.hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.t, self.chunk)
        h = x.new_zeros(x.shape[0], self.hidden)
        for step in range(self.t):
            h = self.act(self.core(torch.cat([x[:, step], h], dim=1)))
        return self.readout(h)
