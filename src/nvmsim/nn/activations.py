"""Activations used by the papers' networks."""

from __future__ import annotations

import torch
from torch import nn


class BoundedReLU(nn.Module):
    """``min(max(0, x), bound)``: paper 000's activation after every hidden layer."""

    def __init__(self, bound: float = 1.0) -> None:
        super().__init__()
        if not bound > 0:
            raise ValueError(f"bound must be > 0, got {bound}")
        self.bound = float(bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, self.bound)

    def extra_repr(self) -> str:
        return f"bound={self.bound}"


class NoisyActivation(nn.Module):
    """Adds ``N(0, sigma)`` to its input during training only, then applies ``activation``.

    Paper 000's noise regularisation: Gaussian noise before every hidden activation makes the
    trained network tolerant of synaptic and input noise at test time.
    """

    def __init__(
        self,
        activation: nn.Module | None = None,
        sigma: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.activation = activation if activation is not None else nn.Identity()
        self.sigma = float(sigma)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.sigma > 0:
            eps = torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
            x = x + self.sigma * eps
        return self.activation(x)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


def paper_relu(sigma_neu: float = 0.0, bounded: bool = False) -> nn.Module:
    """Paper 000's hidden activation: ReLU (or the bounded ReLU), with neuron noise
    ``sigma_neu`` in training when it is > 0."""
    act = BoundedReLU() if bounded else nn.ReLU()
    return NoisyActivation(act, sigma_neu) if sigma_neu > 0 else act
