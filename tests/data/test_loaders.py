"""``load`` options (crop, subset, normalize), digits, search order, downloads, listing."""

from __future__ import annotations

import gzip
import hashlib
import io

import pytest
import torch

from nvmsim.data import (
    DATASETS,
    ChecksumError,
    DatasetError,
    DatasetNotFoundError,
    describe_local,
    get_info,
    load,
    sources,
)
from nvmsim.data.registry import FileInfo
from tests.data.helpers import write_mnist

_REAL_CHECKOUT = sources._checkout_data_dir  # captured before the autouse fixture patches it


def test_digits_split_is_last_360_in_sklearn_order():
    from sklearn.datasets import load_digits

    d = load_digits()
    xtr, ytr = load("digits", "train")
    xte, yte = load("digits", "test")
    assert xtr.shape == (1437, 1, 8, 8) and xte.shape == (360, 1, 8, 8)
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert xtr.min() == 0 and xtr.max() == 1
    assert torch.equal(xte[:, 0], torch.from_numpy(d.images[-360:]).float() / 16)
    assert yte.tolist() == d.target[-360:].tolist() and ytr.tolist() == d.target[:1437].tolist()


def test_center_crop_rule():
    x, _ = load("digits", "test")
    c, _ = load("digits", "test", crop=(4, 5))  # margins 4 and 3: top 2, left 1
    assert c.shape == (360, 1, 4, 5)
    assert torch.equal(c, x[..., 2:6, 1:6])
    s, _ = load("digits", "test", crop=6)
    assert torch.equal(s, x[..., 1:7, 1:7])


def test_mnist_crop_22x24_is_528_inputs(tmp_path):
    xtr, _, _, _ = write_mnist(tmp_path)
    x, _ = load("mnist", "train", tmp_path, crop=(22, 24), verify=False)
    assert x.shape == (12, 1, 22, 24) and x[0].numel() == 528
    assert torch.equal(x[:, 0], torch.from_numpy(xtr[:, 3:25, 2:26]).float() / 255)


@pytest.mark.parametrize("crop", [(9, 8), (0, 4), (2.5, 3), "44"])
def test_bad_crop(crop):
    with pytest.raises(DatasetError, match="crop"):
        load("digits", "test", crop=crop)


def test_subset_is_seeded_nested_and_ordered():
    x, y = load("digits", "train")
    a, ya = load("digits", "train", subset=100, seed=3)
    b, _ = load("digits", "train", subset=100, seed=3)
    c, _ = load("digits", "train", subset=100, seed=4)
    big, _ = load("digits", "train", subset=300, seed=3)
    assert a.shape == (100, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    # rows are original rows, in original order, and the smaller subset is inside the larger
    rows = {tuple(r.flatten().tolist()): i for i, r in enumerate(x)}
    idx = [rows[tuple(r.flatten().tolist())] for r in a]
    assert idx == sorted(idx) and torch.equal(ya, y[idx])
    big_rows = {tuple(r.flatten().tolist()) for r in big}
    assert all(tuple(r.flatten().tolist()) in big_rows for r in a)


@pytest.mark.parametrize("subset", [0, -1, 1438, 2.0, True])
def test_bad_subset(subset):
    with pytest.raises(DatasetError, match="subset"):
        load("digits", "train", subset=subset)


def test_standardize_with_train_stats():
    xtr, _ = load("digits", "train", normalize="standard")
    xte, _ = load("digits", "test", normalize="standard")
    raw_tr, _ = load("digits", "train")
    raw_te, _ = load("digits", "test")
    mean = raw_tr.double().mean(0)
    std = raw_tr.double().std(0, unbiased=False)
    live = std > 0
    torch.testing.assert_close(xtr.double().mean(0), torch.zeros_like(mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(xtr.double().std(0, unbiased=False)[live], std[live] / std[live])
    expected = (raw_te.double() - mean) / torch.where(live, std, torch.ones_like(std))
    torch.testing.assert_close(xte.double(), expected, atol=1e-5, rtol=1e-5)
    # a training subset is standardised with the whole train split's statistics too
    sub, _ = load("digits", "train", normalize="standard", subset=50, seed=1)
    raw_sub, _ = load("digits", "train", subset=50, seed=1)
    expected = (raw_sub.double() - mean) / torch.where(live, std, torch.ones_like(std))
    torch.testing.assert_close(sub.double(), expected, atol=1e-5, rtol=1e-5)


def test_unknown_name_split_normalize():
    with pytest.raises(DatasetError, match="unknown dataset 'svhn'"):
        load("svhn", "train")
    with pytest.raises(DatasetError, match="split"):
        load("digits", "validation")
    with pytest.raises(DatasetError, match="normalize"):
        load("digits", "train", normalize="minmax")
    assert get_info("Fashion_MNIST").name == "fashion-mnist"
    assert get_info("CIFAR-10") is DATASETS["cifar10"]


def test_registry_matches_manifest():
    info = DATASETS["mnist"]
    assert info.num_classes == 10 and info.shape == (1, 28, 28)
    f = info.file("train-images-idx3-ubyte.gz")
    assert (f.size, f.md5) == (9_912_422, "f68b3c2dcbeaaa9fbdd348bbdeb94873")
    assert f.url == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    fm = DATASETS["fashion-mnist"].file("t10k-labels-idx1-ubyte")
    assert fm.md5 == "bb300cfdad3c16e7a12a480ee83cd310" and fm.raw_size == 10_008
    assert fm.url.startswith("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
    (c,) = DATASETS["cifar10"].files
    assert (c.size, c.md5) == (170_052_171, "c32a1d4ab5d03f1284b67883e8d87530")


def test_missing_files_error_says_what_to_put_where(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load("mnist", "test", tmp_path)
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "9fb629c4189551a2d022fa330f9573f3" in msg
    assert "1,648,877 bytes" in msg and str(tmp_path) in msg and "mnist" in msg
    assert "NVMSIM_NO_DOWNLOAD" in msg


def test_missing_data_dir_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        load("mnist", "test", tmp_path / "nope")


def test_search_order(tmp_path, monkeypatch):
    _, y_arg, _, _ = write_mnist(tmp_path / "arg", seed=1)
    _, y_env, _, _ = write_mnist(tmp_path / "env" / "mnist", seed=2)
    _, y_cache, _, _ = write_mnist(tmp_path / "cache" / "mnist", seed=3)
    monkeypatch.setenv("NVMSIM_DATA", str(tmp_path / "env"))
    assert load("mnist", "train", tmp_path / "arg", verify=False)[1].tolist() == y_arg.tolist()
    assert load("mnist", "train", verify=False)[1].tolist() == y_env.tolist()
    monkeypatch.delenv("NVMSIM_DATA")
    assert load("mnist", "train", verify=False)[1].tolist() == y_cache.tolist()


class _FakeResponse(io.BytesIO):
    headers: dict = {}


def _serve(data: bytes, calls: list):
    def urlopen(url, timeout):
        calls.append(url)
        return _FakeResponse(data)

    return urlopen


def test_download_verifies_then_moves_into_place(tmp_path, monkeypatch):
    payload = gzip.compress(b"payload")
    md5 = hashlib.md5(payload).hexdigest()
    f = FileInfo("x.gz", len(payload), md5, "https://example.invalid/x.gz")
    calls: list = []
    monkeypatch.setattr(sources, "_urlopen", _serve(payload, calls))
    dest = sources.download_file(f, tmp_path / "dl")
    assert dest == tmp_path / "dl" / "x.gz" and dest.read_bytes() == payload
    assert calls == ["https://example.invalid/x.gz"]
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["x.gz"]

    bad = FileInfo("y.gz", len(payload), "0" * 32, "https://example.invalid/y.gz")
    with pytest.raises(ChecksumError, match="0{32}"):
        sources.download_file(bad, tmp_path / "dl")
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["x.gz"]


def test_load_downloads_missing_files_into_cache(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(sources, "_urlopen", _serve(b"not the real file", calls))
    with pytest.raises(DatasetNotFoundError, match="does not match the published") as err:
        load("mnist", "test", tmp_path, download=True)
    assert calls == ["https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz"]
    assert "9fb629c4189551a2d022fa330f9573f3" in str(err.value)
    cache_mnist = tmp_path / "cache" / "mnist"
    assert not cache_mnist.exists() or not list(cache_mnist.iterdir())


def test_network_failure_is_a_clear_error(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(sources, "_urlopen", offline)
    monkeypatch.delenv("NVMSIM_NO_DOWNLOAD")
    with pytest.raises(DatasetNotFoundError, match="Network is unreachable"):
        load("fashion-mnist", "test", tmp_path)


def test_download_switch(monkeypatch):
    assert sources.download_allowed(None) is False  # NVMSIM_NO_DOWNLOAD=1 in tests
    assert sources.download_allowed(True) is True
    monkeypatch.setenv("NVMSIM_NO_DOWNLOAD", "0")
    assert sources.download_allowed(None) is True
    assert sources.download_allowed(False) is False


def test_describe_local(tmp_path):
    write_mnist(tmp_path / "mnist")
    rows = describe_local(tmp_path)
    by = {(r["dataset"], r["file"]): r for r in rows}
    r = by["mnist", "train-images-idx3-ubyte.gz"]
    assert r["status"] == "md5 mismatch" and r["path"].startswith(str(tmp_path))
    assert r["expected_md5"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873" and len(r["md5"]) == 32
    assert by["fashion-mnist", "train-images-idx3-ubyte.gz"]["status"] == "missing"
    assert by["cifar10", "cifar-10-binary.tar.gz"]["status"] == "missing"
    assert by["digits", "(embedded in scikit-learn)"]["status"] == "embedded"
    assert set(r) == {
        "dataset",
        "file",
        "path",
        "bytes",
        "expected_bytes",
        "md5",
        "expected_md5",
        "status",
    }


def test_checkout_fallback_points_at_shared_data():
    found = _REAL_CHECKOUT()  # the autouse fixture disables it for the other tests
    assert found is None or (found.name == "data" and found.parent.name == "shared")
