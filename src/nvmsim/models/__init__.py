"""Architectures by name (the papers' nets, ResNet-18, MobileNet): ``build(name, **kw)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from nvmsim.models.mobilenet import MobileNet, mobilenet
from nvmsim.models.paper000 import MosaicsRNN, cnn000, mlp, mlp128, mlp300
from nvmsim.models.paper003 import cifar_cnn, fc_tanh
from nvmsim.models.paper004 import mlp528
from nvmsim.models.resnet import ResNet, resnet18
from nvmsim.models.sequence import (
    RowClassifier,
    TokenTransformer,
    gru_rows,
    lstm_rows,
    transformer_rows,
)

REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "mlp128": mlp128,
    "mlp300": mlp300,
    "cnn000": cnn000,
    "mosaics_rnn": MosaicsRNN,
    "fc_tanh": fc_tanh,
    "cifar_cnn": cifar_cnn,
    "mlp528": mlp528,
    "resnet18": resnet18,
    "mobilenet": mobilenet,
    "lstm_rows": lstm_rows,
    "gru_rows": gru_rows,
    "transformer_rows": transformer_rows,
}

#: Input shape of one example (without batch) for the registry's default arguments.
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "mlp128": (1, 28, 28),
    "mlp300": (1, 28, 28),
    "cnn000": (1, 28, 28),
    "mosaics_rnn": (1, 28, 28),
    "fc_tanh": (1, 28, 28),
    "cifar_cnn": (3, 32, 32),
    "mlp528": (528,),
    "resnet18": (3, 32, 32),
    "mobilenet": (3, 32, 32),
    "lstm_rows": (1, 28, 28),
    "gru_rows": (1, 28, 28),
    "transformer_rows": (1, 28, 28),
}


def build(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names get the list of known ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "INPUT_SHAPES",
    "REGISTRY",
    "MobileNet",
    "MosaicsRNN",
    "ResNet",
    "RowClassifier",
    "TokenTransformer",
    "build",
    "cifar_cnn",
    "cnn000",
    "count_parameters",
    "fc_tanh",
    "gru_rows",
    "lstm_rows",
    "mlp",
    "mlp128",
    "mlp300",
    "mlp528",
    "mobilenet",
    "resnet18",
    "transformer_rows",
]
