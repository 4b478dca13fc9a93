"""Files written by real Keras 3.15.1 (torch backend), see fixtures/make_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nvmsim.io import load_keras

FIXTURES = Path(__file__).parent / "fixtures"
SEQUENCE_MODELS = (
    "mosaics rnn lstm gru bidir conv1d conv1d_bn separable separable1d embed names "
    "rnn_nobias_readout"
).split()
FILES = ["mlp.keras", "cnn.keras", "cnn.h5"] + [
    f"seq_{m}.{ext}" for m in SEQUENCE_MODELS for ext in ("keras", "h5")
]


def _inputs(stem: str) -> torch.Tensor:
    x = torch.from_numpy(np.load(FIXTURES / f"{stem}_x.npy", allow_pickle=False))
    return x.permute(0, 3, 1, 2) if x.ndim == 4 else x  # Keras NHWC -> torch NCHW


@pytest.mark.parametrize("name", FILES)
def test_real_keras_files_reproduce_keras_predict(name):
    stem = name.split(".")[0]
    want = np.load(FIXTURES / f"{stem}_y.npy", allow_pickle=False)
    model = load_keras(FIXTURES / name)
    with torch.no_grad():
        got = model(_inputs(stem)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
