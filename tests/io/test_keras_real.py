"""Files written by real Keras 3.15.1 (torch backend), see fixtures/make_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nvmsim.io import load_keras

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", ["mlp.keras", "cnn.keras", "cnn.h5"])
def test_real_keras_files_reproduce_keras_predict(name):
    stem = name.split(".")[0]
    x = np.load(FIXTURES / f"{stem}_x.npy", allow_pickle=False)
    want = np.load(FIXTURES / f"{stem}_y.npy", allow_pickle=False)
    model = load_keras(FIXTURES / name)
    xt = torch.from_numpy(x)
    if xt.ndim == 4:
        xt = xt.permute(0, 3, 1, 2)  # Keras NHWC -> torch NCHW
    with torch.no_grad():
        got = model(xt).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
