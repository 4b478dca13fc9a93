"""Preprocessing registry: each option's definition, statistics from the training images
only, frozen once fitted, shape and dtype kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvmsim.data import preprocess
from nvmsim.data.preprocess import KERAS_EPSILON, PREPROCESSORS, fit

ALL = sorted(PREPROCESSORS)


def _images(n: int, seed: int, channels: int = 1, size: int = 6) -> torch.Tensor:
    """MNIST-like batch: mostly dark, a few bright pixels, one always-black pixel."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g) ** 4
    x[:, :, 0, 0] = 0.0  # a dead pixel (std 0 over the training set)
    return x


@pytest.fixture
def train() -> torch.Tensor:
    return _images(64, 0)


@pytest.fixture
def test() -> torch.Tensor:
    return _images(16, 1) + 0.3  # a different distribution than train


def test_registry_names_and_unknown():
    assert {"unit", "standard", "global", "per_image", "center", "l2_rows"} <= set(ALL)
    with pytest.raises(ValueError, match="unknown preprocess 'nope'"):
        fit("nope", torch.zeros(2, 1, 2, 2))


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_kept_and_input_untouched(kind, dtype, train, test):
    t = fit(kind, train.to(dtype))
    x = test.to(dtype)
    before = x.clone()
    y = t(x)
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert torch.isfinite(y).all()
    assert torch.equal(x, before)


@pytest.mark.parametrize("kind", ALL)
def test_frozen_after_fit_and_batch_independent(kind, train, test):
    """Test images never change the fitted statistics: one image alone or in a batch, and
    whatever the rest of the batch holds, gives the same output."""
    t = fit(kind, train)
    full = t(test)
    for i in (0, 7):
        torch.testing.assert_close(t(test[i : i + 1])[0], full[i])
    other = torch.cat([test[:1], torch.zeros_like(test[1:])])
    torch.testing.assert_close(t(other)[0], full[0])


@pytest.mark.parametrize("kind", ["standard", "global", "center"])
def test_fitted_on_train_only(kind, train, test):
    """Statistics come from ``x_train``: fitting on other images gives another transform."""
    a, b = fit(kind, train)(test), fit(kind, test)(test)
    assert not torch.allclose(a, b)


def test_unit_is_identity(train, test):
    assert torch.equal(fit("unit", train)(test), test)


def test_bytes_restores_the_stored_pixel_values():
    stored = torch.tensor([[0, 1, 128, 255]], dtype=torch.uint8)
    x = stored.float() / 255
    assert torch.equal(fit("bytes", x)(x).round().to(torch.uint8), stored)


def test_standard_is_per_pixel_standard_scaler(train, test):
    x = train.reshape(len(train), -1).double().numpy()
    mean, std = x.mean(0), x.std(0)  # scikit-learn: population std, zero std -> 1
    std[std == 0] = 1.0
    want = (test.reshape(len(test), -1).double().numpy() - mean) / std
    got = fit("standard", train.double())(test.double()).reshape(len(test), -1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert std[0] == 1.0  # the dead pixel is only centred


def test_global_is_keras_featurewise_per_channel():
    train = _images(50, 2, channels=3)
    train[:, 1] = train[:, 1] * 5 + 2  # channels with different scales
    test = _images(10, 3, channels=3)
    # keras ImageDataGenerator on channels-last data: mean/std over (batch, rows, cols)
    x = train.double().permute(0, 2, 3, 1).numpy()
    mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    want = (test.double().permute(0, 2, 3, 1).numpy() - mean) / (std + 1e-6)
    got = fit("global", train.double())(test.double()).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    z = fit("global", train.double())(train.double())
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64))
    std_z = z.std((0, 2, 3), unbiased=False)
    torch.testing.assert_close(std_z, torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)


def test_global_single_pair_for_grey_images(train):
    t = fit("global", train.double())
    mean, std = train.double().mean(), train.double().std(unbiased=False)
    x = torch.full((1, 1, 6, 6), 0.7, dtype=torch.float64)
    torch.testing.assert_close(t(x), (x - mean) / (std + KERAS_EPSILON))


def test_per_image_standardises_each_image(train, test):
    y = fit("per_image", train)(test).reshape(len(test), -1).double()
    torch.testing.assert_close(
        y.mean(1), torch.zeros(len(test), dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        y.std(1, unbiased=False), torch.ones(len(test), dtype=torch.float64), atol=1e-4, rtol=0
    )
    flat = torch.full((1, 1, 4, 4), 0.25)  # a constant image: std 0 + eps, output 0
    assert torch.equal(fit("per_image", train)(flat), torch.zeros_like(flat))
    # nothing is fitted: any training set gives the same transform
    torch.testing.assert_close(fit("per_image", test)(test), fit("per_image", train)(test))


def test_center_subtracts_the_training_mean_only(train, test):
    got = fit("center", train)(test)
    torch.testing.assert_close(got, test - train.mean(0, keepdim=True))
    torch.testing.assert_close(
        fit("center", train)(train).mean(0), torch.zeros_like(train[0]), atol=1e-6, rtol=0
    )


def test_l2_rows_is_keras_normalize_last_axis(train, test):
    x = test.clone()
    x[0, 0, 2] = 0.0  # an all-zero row stays zero
    got = fit("l2_rows", train)(x)
    norms = got.norm(dim=-1)
    zero = x.norm(dim=-1) == 0
    assert torch.equal(got[0, 0, 2], torch.zeros(6))
    torch.testing.assert_close(norms[~zero], torch.ones(int((~zero).sum())))
    # keras.utils.normalize(x, axis=-1, order=2): x / norm, norm 0 -> 1
    a = x.double().numpy()
    n = np.atleast_1d(np.linalg.norm(a, 2, -1))
    n[n == 0] = 1
    np.testing.assert_allclose(got.double().numpy(), a / np.expand_dims(n, -1), rtol=1e-6)
    with pytest.raises(ValueError, match="l2_rows needs images"):
        fit("l2_rows", train)(torch.ones(3, 36))


def test_l2_rows_amplifies_noise_in_dark_rows():
    """Why it matters for paper 000: a dark row that catches test noise becomes unit norm."""
    x = torch.zeros(1, 1, 4, 28)
    x[0, 0, 1] = 1.0
    noisy = x + 0.025 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    y = fit("l2_rows", x)(noisy)
    torch.testing.assert_close(y[0, 0, 0].norm(), torch.tensor(1.0))  # was all zero


def test_documented():
    for name, fn in PREPROCESSORS.items():
        assert fn.__doc__, f"preprocess {name!r} needs a docstring"
    assert "Keras" in preprocess.__doc__
