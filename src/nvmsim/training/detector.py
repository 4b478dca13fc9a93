"""Paper 003: keep an imprecise analog feature extractor, retrain only the digital detector.

``split_model`` cuts a sequential network into extractor and detector. ``BatchedDetector``
holds R independent copies of a small MLP detector as stacked tensors, so R device instances
(each with its own extractor features) are retrained together with batched matmuls: Adam is
elementwise, so one optimiser over the stacked parameters trains every copy exactly as if
alone (same minibatch order for all copies).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def split_model(
    model: nn.Module, split_at: int | str | None = None
) -> tuple[nn.Sequential, nn.Sequential]:
    """(extractor, detector) of a ``nn.Sequential``.

    ``split_at`` is the index (or name) of the detector's first layer; ``None`` puts the last
    ``Linear`` (and whatever follows it) in the detector, as paper 003 does for FC nets.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"split_model needs an nn.Sequential, got {type(model).__name__}")
    names = [name for name, _ in model.named_children()]
    if split_at is None:
        linear = [i for i, (_, m) in enumerate(model.named_children()) if isinstance(m, nn.Linear)]
        if not linear:
            raise ValueError("model has no nn.Linear to use as the detector")
        index = linear[-1]
    elif isinstance(split_at, str):
        if split_at not in names:
            raise ValueError(f"split_at {split_at!r} names no layer; layers: {', '.join(names)}")
        index = names.index(split_at)
    else:
        index = int(split_at)
    if not 0 < index < len(names):
        raise ValueError(
            f"split_at must leave layers on both sides (1..{len(names) - 1}), got {index}"
        )
    children = list(model.children())
    return nn.Sequential(*children[:index]), nn.Sequential(*children[index:])


ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}
_PASSIVE = (nn.Flatten, nn.Identity, nn.Dropout)


def describe_detector(detector: nn.Sequential) -> tuple[list[int], str]:
    """Layer widths and hidden activation of a detector of Linear layers and activations."""
    linears, acts = [], set()
    for m in detector:
        if isinstance(m, nn.Linear):
            linears.append(m)
        elif type(m) in ACTIVATIONS:
            acts.add(ACTIVATIONS[type(m)])
        elif not isinstance(m, _PASSIVE):
            raise ValueError(f"detector layer {type(m).__name__} is not supported for retraining")
    if not linears:
        raise ValueError("detector has no nn.Linear layer")
    if len(acts) > 1:
        raise ValueError(f"detector mixes activations {sorted(acts)}")
    return [linears[0].in_features] + [
        m.out_features for m in linears
    ], acts.pop() if acts else "tanh"


class BatchedDetector(nn.Module):
    """R independent MLP detectors ``sizes[0] -> ... -> sizes[-1]``, ``activation`` between."""

    def __init__(
        self,
        copies: int,
        sizes: list[int],
        activation: str = "tanh",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS.values():
            raise ValueError(f"unknown activation {activation!r}")
        self.activation = getattr(torch, activation)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1 / math.sqrt(a)  # torch's nn.Linear default initialisation
            w = (torch.rand(copies, a, b, generator=generator) * 2 - 1) * bound
            bias = (torch.rand(copies, 1, b, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(bias))

    @classmethod
    def from_detector(cls, detector: nn.Sequential, copies: int) -> BatchedDetector:
        """R copies initialised with a trained detector's weights (retraining, not training)."""
        linears = [m for m in detector if isinstance(m, nn.Linear)]
        new = cls(copies, *describe_detector(detector))
        with torch.no_grad():
            for w, b, lin in zip(new.weights, new.biases, linears, strict=True):
                w.copy_(lin.weight.t().expand_as(w))
                b.copy_(lin.bias.view(1, 1, -1).expand_as(b))
        return new

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(R, N, F) features -> (R, N, classes) logits."""
        h = feats
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = self.activation(h)
        return h


def retrain(
    det: BatchedDetector,
    feats: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
) -> BatchedDetector:
    """Train every copy on its own features ``feats[r]`` (R, N, F) with labels ``y`` (N,)."""
    if feats.dim() != 3 or feats.shape[1] != len(y):
        raise ValueError(f"features must be (copies, {len(y)}, F), got {tuple(feats.shape)}")
    opt = torch.optim.Adam(det.parameters(), lr=lr, fused=True)
    copies = feats.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            logits = det(feats[:, idx])
            target = y[idx].expand(copies, -1)
            # sum over copies of each copy's mean loss: copies do not interact
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
            loss = loss * copies
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return det


@torch.no_grad()
def batched_accuracy(det: BatchedDetector, feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy of each copy (R,)."""
    return (det(feats).argmax(-1) == y).double().mean(1)
