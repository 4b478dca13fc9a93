"""The training driver: a network built from its settings and initial weights, trained for
some epochs, and its accuracies and statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nvmsim.training.onchip.config import OnChipConfig, parse_config
from nvmsim.training.onchip.mlp import init_layers
from nvmsim.training.onchip.network import OnChipNetwork, Stats
from nvmsim.training.onchip.tables import build_tables

Tensor = torch.Tensor


@dataclass
class OnChipResult:
    """What :func:`train_onchip` returns: accuracies, the test curve, the counters, the
    G-diamond statistics and the trained network."""

    test_accuracy: float
    train_accuracy: float
    curve: list[float]
    stats: Stats
    diamond: dict[str, float]
    network: OnChipNetwork


def train_onchip(
    cfg: OnChipConfig | dict[str, Any],
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor] | None = None,
    *,
    arch: str = "mlp528",
    kwargs: dict[str, Any] | None = None,
    layers: list[tuple[Tensor, Tensor]] | None = None,
    acts: list[str] | None = None,
    epochs: int = 20,
    seed: int = 0,
    init_seed: int | None = None,
    base: str | Path | None = None,
) -> OnChipResult:
    """Train a network on chip for ``epochs`` and report its accuracies and statistics.

    The initial weights are those of ``arch`` (a registry MLP) drawn with ``init_seed``
    (default ``seed``), or the given ``layers`` / ``acts``; ``seed`` drives the example order,
    stochastic rounding and the jump-tables' deviates. ``curve`` holds the test accuracy
    after each epoch when ``cfg.curve`` (and a test set) is given.
    """
    cfg = parse_config(cfg)
    if layers is None:
        layers, acts = init_layers(arch, kwargs or {}, seed if init_seed is None else init_seed)
    elif acts is None:
        raise ValueError("give acts with layers")
    assert acts is not None
    gen = torch.Generator().manual_seed(seed % (2**63))
    set_t, reset_t, s_ref = build_tables(cfg, base)
    net = OnChipNetwork(layers, acts, cfg, gen, set_t, reset_t, s_ref)
    x, y = train
    x = x.reshape(len(x), -1).float()
    curve = []
    lr = cfg.lr
    for _ in range(epochs):
        net.train_epoch(x, y, lr)
        lr *= cfg.lr_decay
        if cfg.curve and test is not None:
            curve.append(net.accuracy(*test))
    test_acc = (curve[-1] if curve else net.accuracy(*test)) if test is not None else math.nan
    return OnChipResult(test_acc, net.accuracy(x, y), curve, net.stats, net.diamond(), net)
