"""Plain, fast software training and evaluation loops (seeded, full tensors in memory)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TrainResult:
    epochs_run: int
    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    momentum: float = 0.0,
    seed: int = 0,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    patience: int | None = None,
    progress: bool = False,
    before_batch: Callable[[int], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> TrainResult:
    """Train ``model`` with cross-entropy; shuffling and noise come from ``seed``.

    With ``val`` and ``patience``, stop when validation accuracy has not improved for
    ``patience`` epochs and restore the best weights. ``before_batch(epoch)`` runs before
    each batch's forward pass and ``after_step()`` after each optimiser step (hardware-aware
    training programs the chip and clips the weights there).
    """
    if epochs < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"need epochs >= 0, batch_size >= 1, lr > 0 (got {epochs}, {batch_size}, {lr})"
        )
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # modules that draw without an explicit generator (dropout)
    opt = make_optimizer(model, optimizer, lr, momentum)
    result = TrainResult(0)
    best, best_state, stale = -1.0, None, 0
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("training", total=epochs)
    try:
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(x), generator=gen)
            total = 0.0
            for i in range(0, len(x), batch_size):
                idx = perm[i : i + batch_size]
                if before_batch is not None:
                    before_batch(epoch)
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if after_step is not None:
                    after_step()
                total += float(loss.detach()) * len(idx)
            result.epochs_run += 1
            result.train_loss.append(total / len(x))
            if bar is not None:
                bar.advance(task)
            if val is not None:
                acc = accuracy(model, *val)
                result.val_accuracy.append(acc)
                if acc > best:
                    best, stale = acc, 0
                    best_state = {k: v.clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
                    if patience is not None and stale >= patience:
                        break
    finally:
        if bar is not None:
            bar.stop()
    if patience is not None and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


def make_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float = 0.0
) -> torch.optim.Optimizer:
    """Adam, SGD or RMSprop over ``model``'s parameters; RMSprop with Keras's defaults
    (rho 0.9, epsilon 1e-7) rather than torch's, as the papers trained in Keras."""
    params = model.parameters()
    if name == "adam":
        if momentum:
            raise ValueError("momentum applies to 'sgd' or 'rmsprop', not 'adam'")
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; known: adam, sgd, rmsprop")


@torch.no_grad()
def keras_init(model: nn.Module) -> nn.Module:
    """Keras's default initial weights, in place: glorot-uniform kernels (bound
    ``sqrt(6 / (fan_in + fan_out))``, with receptive fields counted for convolutions) and
    zero biases, for every Linear and Conv2d. Draws from torch's global generator."""
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 10_000) -> torch.Tensor:
    """Logits of ``model`` in eval mode, in batches."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 10_000) -> float:
    """Fraction of ``x`` classified as ``y``."""
    return float((predict(model, x, batch_size).argmax(1) == y).double().mean())
