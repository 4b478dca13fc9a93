"""Benchmark of on-chip training: seconds for one epoch of per-example pulse updates."""

from __future__ import annotations

import time
from typing import Any

import torch

from nvmsim.training.onchip import (
    OnChipNetwork,
    build_tables,
    init_layers,
    parse_config,
    torch_threads,
)


def _data(examples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST cropped to 22x24 (paper 004); random sparse images of that shape if absent."""
    from nvmsim.data import DatasetError, load

    try:
        return load("mnist", "train", crop=(22, 24), subset=examples, seed=seed)
    except DatasetError:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(examples, 1, 22, 24, generator=g)
        x = torch.where(x > 0.8, x, torch.zeros_like(x))
        return x, torch.randint(0, 10, (examples,), generator=g)


def run_onchip_benchmark(
    examples: int = 5000,
    config: dict[str, Any] | None = None,
    *,
    arch: str = "mlp528",
    seed: int = 0,
    threads: int | None = 1,
) -> float:
    """Seconds for one training epoch of ``examples`` examples (default 5,000) of the
    528-250-125-10 network on chip, one pulse update per example, from a fresh network.

    ``config`` is an ``onchip`` table (default: ideal linear bidirectional devices);
    ``threads`` is torch's thread count for the epoch (default 1, as in training; restored
    afterwards). Prints nothing.
    """
    if examples < 1:
        raise ValueError(f"examples must be >= 1, got {examples}")
    cfg = parse_config(config or {})
    x, y = _data(examples, seed)
    layers, acts = init_layers(arch, {}, seed)
    set_t, reset_t, s_ref = build_tables(cfg)
    net = OnChipNetwork(
        layers, acts, cfg, torch.Generator().manual_seed(seed), set_t, reset_t, s_ref
    )
    return net.train_epoch(x, y, cfg.lr, threads=threads)


def run_torch_sgd_epoch(
    examples: int = 5000, *, arch: str = "mlp528", seed: int = 0, threads: int | None = 1
) -> float:
    """Seconds for the plain-torch reference of :func:`run_onchip_benchmark`: the same
    network and data, one autograd SGD step per example (batch size 1), same thread count."""
    from nvmsim.models import build

    x, y = _data(examples, seed)
    x = x.reshape(len(x), -1).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(arch)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    with torch_threads(threads):
        for i in torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).tolist():
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[i : i + 1]), y[i : i + 1]).backward()
            opt.step()
    return time.perf_counter() - t0
