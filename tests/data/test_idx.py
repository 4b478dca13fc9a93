"""IDX parsing (MNIST / Fashion-MNIST format) through ``load``, and its error handling."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch

from nvmsim.data import DatasetError, idx, load
from tests.data.helpers import fake_mnist, idx_bytes, write_idx, write_mnist


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_load_parses_tiny_files(tmp_path, name, gz):
    xtr, ytr, xte, yte = write_mnist(tmp_path / name, gz=gz)
    x, y = load(name, "train", tmp_path, verify=False)
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (12,) and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    torch.testing.assert_close(x[:, 0], torch.from_numpy(xtr).float() / 255, rtol=0, atol=0)
    assert y.tolist() == ytr.tolist()
    x, y = load(name, "test", tmp_path, verify=False)
    assert x.shape == (7, 1, 28, 28) and y.tolist() == yte.tolist()


@pytest.mark.parametrize("sub", ["", "mnist", "MNIST/raw"])
def test_file_layouts(tmp_path, sub):
    _, ytr, _, _ = write_mnist(tmp_path / sub)
    _, y = load("mnist", "train", tmp_path, verify=False)
    assert y.tolist() == ytr.tolist()


def test_parse_cache_is_used_and_keyed_by_file(tmp_path, parsed_dir, monkeypatch):
    write_mnist(tmp_path)
    x1, y1 = load("mnist", "train", tmp_path, verify=False)
    assert len(list(parsed_dir.glob("*.npy"))) == 2
    # a second load reads the cache: parsing would fail now
    with monkeypatch.context() as m:
        m.setattr(idx, "read_idx", lambda *a, **k: pytest.fail("parsed again"))
        x2, y2 = load("mnist", "train", tmp_path, verify=False)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # replacing a file (new size / mtime) makes it parsed afresh
    _, ytr, _, _ = write_mnist(tmp_path, n_train=5, seed=9)
    _, y3 = load("mnist", "train", tmp_path, verify=False)
    assert y3.tolist() == ytr.tolist()


def test_corrupt_cache_entry_is_reparsed(tmp_path, parsed_dir):
    _, ytr, _, _ = write_mnist(tmp_path)
    load("mnist", "train", tmp_path, verify=False)
    for p in parsed_dir.glob("*labels*.npy"):
        p.write_bytes(b"garbage")
    _, y = load("mnist", "train", tmp_path, verify=False)
    assert y.tolist() == ytr.tolist()


def test_cache_can_be_disabled(tmp_path, parsed_dir):
    write_mnist(tmp_path)
    load("mnist", "train", tmp_path, verify=False, cache_parsed=False)
    assert not parsed_dir.exists() or not any(parsed_dir.iterdir())


def _gz_truncated(path, x):
    data = gzip.compress(idx.IMAGES_MAGIC.to_bytes(4, "big") + b"\0\0\0\1" * 3 + x.tobytes())
    path.write_bytes(data[: len(data) // 2])


BAD_IMAGES = {
    "truncated gzip": lambda p, x: _gz_truncated(p, x),
    "wrong magic": lambda p, x: write_idx(p, x, magic=0x00000801),
    "claims more items": lambda p, x: write_idx(p, x, claim=len(x) + 1),
    "zero bytes": lambda p, x: p.write_bytes(b""),
    "empty gzip": lambda p, x: p.write_bytes(gzip.compress(b"")),
    "trailing bytes": lambda p, x: p.write_bytes(gzip.compress(idx_bytes(x) + b"extra")),
    "zero dimension": lambda p, x: write_idx(p, x[:0]),
    "short header": lambda p, x: p.write_bytes(gzip.compress(b"\0\0\x08\x03\0\0")),
}


@pytest.mark.parametrize("defect", list(BAD_IMAGES))
def test_bad_image_file_raises_naming_it_and_caches_nothing(tmp_path, parsed_dir, defect):
    write_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    BAD_IMAGES[defect](bad, fake_mnist(4)[0])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz") as err:
        load("mnist", "train", tmp_path, verify=False)
    assert str(bad) in str(err.value)
    cached = list(parsed_dir.glob("*images*")) if parsed_dir.exists() else []
    assert cached == []
    assert not parsed_dir.exists() or not list(parsed_dir.glob(".*.tmp"))


def test_error_messages_say_what_is_wrong(tmp_path):
    x = fake_mnist(4)[0]
    p = write_idx(tmp_path / "a.gz", x, claim=9)
    with pytest.raises(DatasetError, match="claims 9 items"):
        idx.read_images(p)
    p = write_idx(tmp_path / "b.gz", x, magic=0x00000801)
    with pytest.raises(DatasetError, match="magic number 0x00000801"):
        idx.read_images(p)
    (tmp_path / "c.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty"):
        idx.read_images(tmp_path / "c.gz")
    _gz_truncated(tmp_path / "d.gz", x)
    with pytest.raises(DatasetError, match="truncated gzip"):
        idx.read_images(tmp_path / "d.gz")


def test_a_gzip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    """A small file that inflates past the limit stops at the limit (no unbounded memory);
    several gzip members are read as gzip reads them."""
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 1 << 20)
    header = idx.IMAGES_MAGIC.to_bytes(4, "big") + (8192).to_bytes(4, "big") + b"\0\0\0\x10" * 2
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(header + bytes(8192 * 256), compresslevel=9))
    assert bomb.stat().st_size < 4096
    with pytest.raises(DatasetError, match=r"bomb\.gz: decompresses to more than 1,048,576"):
        idx.read_bytes(bomb, limit=idx.MAX_IDX_BYTES)
    x = fake_mnist(4)[0]
    data = idx_bytes(x)
    two = tmp_path / "two.gz"
    two.write_bytes(gzip.compress(data[:100]) + gzip.compress(data[100:]))
    np.testing.assert_array_equal(idx.read_images(two), x)


def test_labels_out_of_range(tmp_path, parsed_dir):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([1] * 11 + [10], np.uint8))
    with pytest.raises(DatasetError, match=r"train-labels.*label 10 at index 11"):
        load("mnist", "train", tmp_path, verify=False)
    assert not list(parsed_dir.glob("*labels*"))


def test_image_and_label_counts_must_agree(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DatasetError, match=r"12 images but .*train-labels.* 5 labels"):
        load("mnist", "train", tmp_path, verify=False)


def test_wrong_image_size(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((12, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="8x8"):
        load("mnist", "train", tmp_path, verify=False)


def test_md5_checked_for_official_names(tmp_path, parsed_dir):
    write_mnist(tmp_path)
    with pytest.raises(DatasetError, match="f68b3c2dcbeaaa9fbdd348bbdeb94873") as err:
        load("mnist", "train", tmp_path)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "MD5" in msg and "verify=False" in msg
    assert not parsed_dir.exists() or not list(parsed_dir.glob("*.npy"))


def test_decompressed_file_checked_against_raw_md5(tmp_path):
    write_mnist(tmp_path, gz=False)
    with pytest.raises(DatasetError, match="6bbc9ace898e44ae57da46a324031adb"):
        load("mnist", "train", tmp_path)


def test_unreadable_cache_dir_still_loads(tmp_path, monkeypatch):
    _, ytr, _, _ = write_mnist(tmp_path / "d")
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    monkeypatch.setenv("NVMSIM_CACHE", str(blocker))
    _, y = load("mnist", "train", tmp_path / "d", verify=False)
    assert y.tolist() == ytr.tolist()
    assert os.path.isfile(blocker)


def test_wrong_magic_in_labels_file(tmp_path, parsed_dir):
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", fake_mnist(7)[0])  # images, not labels
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: wrong IDX magic"):
        load("mnist", "test", tmp_path, verify=False)
    assert not list(parsed_dir.glob("*labels*"))
