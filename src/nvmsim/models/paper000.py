"""Networks of paper 000 (Bennett, Dellana et al.): MLPs, the CNN and the Mosaics RNN."""

from __future__ import annotations

from torch import nn

from nvmsim.models.limits import check_depth
from nvmsim.nn.activations import paper_relu as _act
from nvmsim.nn.mosaics import MosaicsRNN

__all__ = ["MosaicsRNN", "cnn000", "mlp", "mlp128", "mlp300"]


def mlp(sizes: tuple[int, ...], sigma_neu: float = 0.0, bounded: bool = False) -> nn.Sequential:
    """Fully connected net ``sizes[0] -> ... -> sizes[-1]`` with ReLU between layers."""
    check_depth(len(sizes) - 1, "len(sizes) - 1 (the number of layers)")
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
