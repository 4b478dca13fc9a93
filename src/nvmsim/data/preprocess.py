"""Input preprocessing fitted on training images, applied after any test-set noise.

Where test noise is added relative to preprocessing changes how much it hurts (DESIGN.md:
paper 000's drops under sigma_te = 0.025 need some amplification of input noise), so the
choice is a named, registered option of every study.

Every option is a function ``x_train -> transform``: statistics come from the training
images only and are frozen; the transform keeps the input's shape and dtype and is applied,
unchanged, to clean training images and to (noisy) test images alike. Images are
``(N, C, H, W)`` (or any ``(N, ...)`` for the options that do not need rows).

The options besides ``unit`` are the usual ways a 2019 Keras / scikit-learn user scaled
MNIST-like images (see docs/results.md, "Paper 000", for what each does to Table II):

- ``unit``: pixels in [0, 1] as loaded (``x / 255``, the Keras examples).
- ``bytes``: pixels 0-255 as stored (``255 x``), for scripts that never scale them.
- ``standard``: per-pixel standardisation, scikit-learn's ``StandardScaler``.
- ``global``: Keras ``ImageDataGenerator(featurewise_center=True,
  featurewise_std_normalization=True)``: one mean and std per channel (a single pair for
  grey images), ``(x - mean) / (std + 1e-6)``.
- ``per_image``: Keras ``samplewise_center`` + ``samplewise_std_normalization``: each image
  minus its own mean, divided by its own std + 1e-6 (nothing fitted).
- ``center``: per-pixel mean subtracted, no scaling.
- ``l2_rows``: ``keras.utils.normalize(x, axis=-1)`` on the ``(N, 28, 28)`` arrays that
  ``keras.datasets`` returns: every image row scaled to unit L2 norm (nothing fitted).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Transform = Callable[[torch.Tensor], torch.Tensor]

KERAS_EPSILON = 1e-6  # ImageDataGenerator.standardize adds this to every std it divides by


def _unit(x_train: torch.Tensor) -> Transform:
    """Pixels in [0, 1] as loaded: no change."""
    return lambda x: x


def _bytes(x_train: torch.Tensor) -> Transform:
    """Pixels as stored, 0-255 (``255 x``): what a Keras script that skips ``x / 255`` trains
    on. An affine map, so it changes nothing but how the network trains (large inputs, and
    with Adam effectively a large first-layer step)."""
    return lambda x: x * 255.0


def _standard(x_train: torch.Tensor) -> Transform:
    """Per-pixel standardisation with the training images' mean and std (std 0 -> 1)."""
    mean = x_train.mean(0, keepdim=True)
    std = x_train.std(0, unbiased=False, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return lambda x: (x - mean) / std


def _channel_dims(x: torch.Tensor) -> list[int]:
    """All dimensions but the channel (dim 1) of ``(N, C, ...)``; all of ``(N,)``."""
    return [d for d in range(x.dim()) if d != 1] if x.dim() > 1 else [0]


def _global(x_train: torch.Tensor) -> Transform:
    """Keras ``ImageDataGenerator`` featurewise centring and std normalisation.

    ``ImageDataGenerator.fit`` (Keras 2.x) takes the mean and the std of the training images
    over the batch, row and column axes, i.e. one value per channel (a single mean and std
    for MNIST), and ``standardize`` computes ``(x - mean) / (std + 1e-6)``. An affine map of
    the whole image: it changes how the network trains (inputs centred, background at
    ``-mean / std`` instead of 0), not the signal-to-noise ratio of any pixel.
    """
    dims = _channel_dims(x_train)
    mean = x_train.mean(dims, keepdim=True)
    std = x_train.std(dims, unbiased=False, keepdim=True)
    if x_train.dim() > 1:  # keep (1, C, 1, 1) so that it broadcasts over any batch
        mean, std = mean.reshape(1, *mean.shape[1:]), std.reshape(1, *std.shape[1:])
    scale = std + KERAS_EPSILON
    return lambda x: (x - mean) / scale


def _per_image(x_train: torch.Tensor) -> Transform:
    """Keras ``samplewise_center`` + ``samplewise_std_normalization`` (nothing is fitted).

    Each image minus its own mean, divided by its own std (over all its pixels and channels)
    plus 1e-6, as ``ImageDataGenerator.standardize`` does.
    """

    def transform(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1)
        mean = flat.mean(1, keepdim=True)
        std = flat.std(1, unbiased=False, keepdim=True)
        return ((flat - mean) / (std + KERAS_EPSILON)).reshape(x.shape)

    return transform


def _center(x_train: torch.Tensor) -> Transform:
    """Per-pixel mean of the training images subtracted; no scaling."""
    mean = x_train.mean(0, keepdim=True)
    return lambda x: x - mean


def _l2_rows(x_train: torch.Tensor) -> Transform:
    """``keras.utils.normalize(x, axis=-1)`` on ``(N, H, W)`` images (nothing is fitted).

    Every image row is divided by its L2 norm; an all-zero row stays zero. A nearly empty
    row is blown up to unit norm, and a row that is empty in every training image but catches
    test noise becomes a random unit vector: noise is amplified where the image is dark.
    """

    def transform(x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"l2_rows needs images (N, ..., H, W), got shape {tuple(x.shape)}")
        norm = x.norm(dim=-1, keepdim=True)
        return x / torch.where(norm > 0, norm, torch.ones_like(norm))

    return transform


PREPROCESSORS: dict[str, Callable[[torch.Tensor], Transform]] = {
    "unit": _unit,
    "bytes": _bytes,
    "standard": _standard,
    "global": _global,
    "per_image": _per_image,
    "center": _center,
    "l2_rows": _l2_rows,
}


def fit(kind: str, x_train: torch.Tensor) -> Transform:
    """The transform named ``kind``, fitted on ``x_train``."""
    if kind not in PREPROCESSORS:
        raise ValueError(f"unknown preprocess {kind!r}; known: {', '.join(sorted(PREPROCESSORS))}")
    return PREPROCESSORS[kind](x_train)
