"""The papers' architectures by name: ``nvmsim.models.build(name, **kw)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from nvmsim.models.paper000 import MosaicsRNN, cnn000, mlp, mlp128, mlp300

REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "mlp128": mlp128,
    "mlp300": mlp300,
    "cnn000": cnn000,
    "mosaics_rnn": MosaicsRNN,
}


def build(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names get the list of known ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "REGISTRY",
    "MosaicsRNN",
    "build",
    "cnn000",
    "count_parameters",
    "mlp",
    "mlp128",
    "mlp300",
]
