"""Network of paper 004 (Sidler, Boybat, ..., Burr): 528-250-125-10 on MNIST cropped to 22x24."""

from __future__ import annotations

from torch import nn


def mlp528(activation: str = "sigmoid") -> nn.Sequential:
    """528-250-125-10 with biases (164,885 synapses)."""
    acts = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}; known: {', '.join(acts)}")
    a = acts[activation]
    return nn.Sequential(
        nn.Flatten(), nn.Linear(528, 250), a(), nn.Linear(250, 125), a(), nn.Linear(125, 10)
    )
