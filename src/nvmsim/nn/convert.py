"""``convert()``: an analog copy of any module tree; helpers that act on all analog layers."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.nn.base import AnalogMixin
from nvmsim.nn.conv import AnalogConv2d
from nvmsim.nn.linear import AnalogLinear


def _layer_seeds(base: int, n: int) -> list[int]:
    """Independent, reproducible seeds for ``n`` layers from one base seed."""
    g = torch.Generator().manual_seed(base)
    return [int(s) for s in torch.randint(0, 2**62, (n,), generator=g)]


def convert(model: nn.Module, config: AnalogConfig | None = None) -> nn.Module:
    """Analog copy of ``model``: every ``Linear``/``Conv2d`` becomes an analog layer.

    The original is untouched. Layers are programmed at once, each with its own seed derived
    from ``config.seed``, so the same config gives the same device instance every time.
    """
    config = config or AnalogConfig()
    new = copy.deepcopy(model)
    targets = [
        (name, m)
        for name, m in new.named_modules()
        if isinstance(m, nn.Linear | nn.Conv2d) and not isinstance(m, AnalogMixin)
    ]
    seeds = _layer_seeds(config.seed, len(targets))
    for (name, m), seed in zip(targets, seeds, strict=True):
        if isinstance(m, nn.Conv2d):
            if m.groups != 1:
                raise ValueError(f"layer {name!r}: AnalogConv2d supports groups=1 only")
            analog = AnalogConv2d.from_conv(m, config, seed)
        else:
            analog = AnalogLinear.from_linear(m, config, seed)
        analog.train(m.training)
        if name == "":
            return analog
        parent_name, _, child = name.rpartition(".")
        parent = new.get_submodule(parent_name) if parent_name else new
        setattr(parent, child, analog)
    return new


def analog_layers(model: nn.Module) -> Iterator[AnalogMixin]:
    """Every analog layer in ``model``, in module order."""
    return (m for m in model.modules() if isinstance(m, AnalogMixin))


def program(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """(Re)program every analog layer; with ``generator``, draw a new device instance."""
    for layer in analog_layers(model):
        layer.program(generator)
    return model


def drift_to(model: nn.Module, t_seconds: float) -> nn.Module:
    """Let every analog layer drift to ``t_seconds`` after programming."""
    for layer in analog_layers(model):
        layer.drift_to(t_seconds)
    return model
