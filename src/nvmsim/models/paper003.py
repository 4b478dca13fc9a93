"""Networks of paper 003 (Mohammadirad & Sojodishijani): FC tanh nets and a small CIFAR CNN.

The paper's Figure 1 (layer sizes of the CNN) did not survive text extraction; the CNN here
is the common 3-conv + 2-FC shape its text describes (ReLU, max-pooling), sizes ours.
"""

from __future__ import annotations

from torch import nn


def fc_tanh(n_fe: int = 100, hidden_layers: int = 1, inputs: int = 784) -> nn.Sequential:
    """784 -> N_FE (tanh) [-> N_FE (tanh)] -> 10: the feature extractor is every layer but
    the last (the detector)."""
    if hidden_layers not in (1, 2):
        raise ValueError(f"hidden_layers must be 1 or 2, got {hidden_layers}")
    if n_fe < 1:
        raise ValueError(f"n_fe must be >= 1, got {n_fe}")
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(inputs, n_fe), nn.Tanh()]
    if hidden_layers == 2:
        layers += [nn.Linear(n_fe, n_fe), nn.Tanh()]
    layers.append(nn.Linear(n_fe, 10))
    return nn.Sequential(*layers)


def cifar_cnn(width: int = 32, hidden: int = 64) -> nn.Sequential:
    """3 conv (3x3, ReLU, max-pool 2) + 2 FC on 3x32x32 inputs."""
    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * w * 4 * 4, hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    )  # fmt: skip
