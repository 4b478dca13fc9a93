"""The MLPs on-chip training runs: weights and activations read from a torch Sequential,
the initial weights of a registry MLP, and the activations with their derivatives."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nvmsim.models import build

Tensor = torch.Tensor

_ACTS = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu"}


def describe_mlp(model: nn.Module) -> tuple[list[tuple[Tensor, Tensor]], list[str]]:
    """Weights ``(W (out, in), b (out,))`` of each Linear and the activation after each
    hidden one, for a Sequential of Flatten / Linear / Sigmoid | Tanh | ReLU."""
    mods = [m for m in model.modules() if not list(m.children())]
    layers, acts = [], []
    for m in mods:
        if isinstance(m, nn.Flatten):
            continue
        if isinstance(m, nn.Linear):
            if len(acts) < len(layers):
                raise ValueError("on-chip training needs an activation between Linear layers")
            b = m.bias if m.bias is not None else torch.zeros(m.out_features)
            layers.append((m.weight.detach().clone(), b.detach().clone()))
        elif type(m) in _ACTS:
            if len(acts) != len(layers) - 1:
                raise ValueError("on-chip training: one activation after each hidden Linear")
            acts.append(_ACTS[type(m)])
        else:
            raise ValueError(
                f"on-chip training supports MLPs of Linear and Sigmoid/Tanh/ReLU, "
                f"not {type(m).__name__}"
            )
    if not layers or len(acts) != len(layers) - 1:
        raise ValueError("on-chip training needs Linear layers with an activation between them")
    return layers, acts


def activate(name: str, a: Tensor) -> Tensor:
    """The activation ``name`` (sigmoid, tanh, relu) of ``a``."""
    if name == "sigmoid":
        return torch.sigmoid(a)
    if name == "tanh":
        return torch.tanh(a)
    return torch.relu(a)


def activation_grad(name: str, h: Tensor) -> Tensor:
    """Derivative of the activation, from its output ``h``."""
    if name == "sigmoid":
        return h * (1 - h)
    if name == "tanh":
        return 1 - h * h
    return (h > 0).to(h.dtype)


def init_layers(arch: str, kwargs: dict[str, Any], seed: int) -> tuple[list, list[str]]:
    """Initial weights of a registry MLP, drawn with ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(arch, **kwargs)
    return describe_mlp(model)
