"""Input preprocessing fitted on training images, applied after any test-set noise.

Where test noise is added relative to preprocessing changes how much it hurts (DESIGN.md:
paper 000's drops under sigma_te = 0.025 need some amplification of input noise), so the
choice is a named, registered option of every study.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Transform = Callable[[torch.Tensor], torch.Tensor]


def _unit(x_train: torch.Tensor) -> Transform:
    """Pixels in [0, 1] as loaded: no change."""
    return lambda x: x


def _standard(x_train: torch.Tensor) -> Transform:
    """Per-pixel standardisation with the training images' mean and std (std 0 -> 1)."""
    mean = x_train.mean(0, keepdim=True)
    std = x_train.std(0, unbiased=False, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return lambda x: (x - mean) / std


PREPROCESSORS: dict[str, Callable[[torch.Tensor], Transform]] = {
    "unit": _unit,
    "standard": _standard,
}


def fit(kind: str, x_train: torch.Tensor) -> Transform:
    """The transform named ``kind``, fitted on ``x_train``."""
    if kind not in PREPROCESSORS:
        raise ValueError(f"unknown preprocess {kind!r}; known: {', '.join(sorted(PREPROCESSORS))}")
    return PREPROCESSORS[kind](x_train)
