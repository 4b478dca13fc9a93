"""The staged real MNIST / Fashion-MNIST files: MD5s and counts (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nvmsim.data import DATASETS, describe_local, idx, load, sources


def _staged() -> Path | None:
    for d in (os.environ.get("NVMSIM_DATA"), Path(__file__).resolve().parents[3] / "shared/data"):
        if d and (Path(d) / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file():
            return Path(d)
    return None


STAGED = _staged()
pytestmark = pytest.mark.skipif(STAGED is None, reason="staged MNIST files not found")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real-cache")


@pytest.fixture
def real(monkeypatch, shared_cache):
    """Staged data root; one parse cache for this module so MNIST train is parsed once."""
    monkeypatch.setenv("NVMSIM_CACHE", str(shared_cache))
    return STAGED


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_md5s_match_manifest(name):
    for f in DATASETS[name].files:
        path = STAGED / name / f.name
        assert path.stat().st_size == f.size
        assert sources.file_md5(path) == f.md5, path


def test_mnist_counts_and_cache(real, shared_cache):
    x, y = load("mnist", "train", real)
    assert x.shape == (60_000, 1, 28, 28) and y.shape == (60_000,)
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() == 1
    assert torch.bincount(y).tolist()[:2] == [5923, 6742]
    assert len(list((shared_cache / "parsed").glob("*.npy"))) == 2
    xt, yt = load("mnist", "test", real, crop=(22, 24))
    assert xt.shape == (10_000, 1, 22, 24) and yt[:5].tolist() == [7, 2, 1, 0, 4]
    # a second load comes from the parse cache and its verified-MD5 stamps
    x2, y2 = load("mnist", "train", real, subset=5000)
    assert x2.shape == (5000, 1, 28, 28)


def test_fashion_counts(real):
    _, y = load("fashion-mnist", "test", real)
    assert y.shape == (10_000,) and torch.bincount(y).tolist() == [1000] * 10
    labels = idx.read_labels(real / "fashion-mnist" / "train-labels-idx1-ubyte.gz", 10)
    assert labels.shape == (60_000,)


def test_describe_local_real(real):
    rows = [r for r in describe_local(real) if r["dataset"] in ("mnist", "fashion-mnist")]
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
