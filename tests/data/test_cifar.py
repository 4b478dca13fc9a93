"""CIFAR-10 binary batches: from a folder or read inside the official archive."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvmsim.data import DatasetError, cifar, load
from tests.data.helpers import (
    BATCHES,
    cifar_batches,
    cifar_bytes,
    fake_cifar,
    write_cifar_archive,
    write_cifar_folder,
)


def _expected(batches, names):
    x = np.concatenate([batches[b][0] for b in names])
    y = np.concatenate([batches[b][1] for b in names])
    return torch.from_numpy(x).float() / 255, torch.from_numpy(y).long()


@pytest.mark.parametrize("layout", ["folder", "archive", "cifar10/folder", "cifar10/archive"])
def test_load_cifar(tmp_path, layout):
    batches = cifar_batches(n=3)
    sub, kind = layout.rsplit("/", 1) if "/" in layout else ("", layout)
    where = tmp_path / sub
    if kind == "folder":
        write_cifar_folder(where / "cifar-10-batches-bin", batches)
    else:
        write_cifar_archive(where / "cifar-10-binary.tar.gz", batches)
    x, y = load("cifar10", "train", tmp_path, verify=False)
    assert x.shape == (15, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    ex, ey = _expected(batches, BATCHES[:5])  # batches 1..5 in order
    assert torch.equal(x, ex) and torch.equal(y, ey)
    x, y = load("cifar10", "test", tmp_path, verify=False)
    ex, ey = _expected(batches, ["test_batch.bin"])
    assert torch.equal(x, ex) and torch.equal(y, ey)


def test_channel_planes_are_rgb():
    img = np.zeros((1, 3, 32, 32), np.uint8)
    img[0, 0, 1, 2] = 10  # R at row 1, col 2
    img[0, 2, 31, 0] = 30  # B at row 31, col 0
    x, y = cifar.parse_batch(cifar_bytes(img, np.array([7])), "t")
    raw = cifar_bytes(img, np.array([7]))
    assert raw[0] == 7 and raw[1 + 32 + 2] == 10 and raw[1 + 2 * 1024 + 31 * 32] == 30
    assert x[0, 0, 1, 2] == 10 and x[0, 2, 31, 0] == 30 and y[0] == 7


def test_record_size_must_divide_file(tmp_path, parsed_dir):
    batches = cifar_batches(n=2)
    folder = write_cifar_folder(tmp_path / "cifar-10-batches-bin", batches)
    bad = folder / "data_batch_3.bin"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(DatasetError, match=r"data_batch_3.bin: size .* not a multiple of .* 3073"):
        load("cifar10", "train", tmp_path, verify=False)
    assert not parsed_dir.exists() or not list(parsed_dir.iterdir())


@pytest.mark.parametrize("defect", ["zero bytes", "bad label"])
def test_bad_batch(tmp_path, parsed_dir, defect):
    batches = cifar_batches(n=2)
    folder = write_cifar_folder(tmp_path / "cifar-10-batches-bin", batches)
    bad = folder / "test_batch.bin"
    if defect == "zero bytes":
        bad.write_bytes(b"")
    else:
        x, _ = fake_cifar(2)
        bad.write_bytes(cifar_bytes(x, np.array([3, 11])))
    with pytest.raises(DatasetError, match="test_batch.bin"):
        load("cifar10", "test", tmp_path, verify=False)
    assert not parsed_dir.exists() or not list(parsed_dir.iterdir())


def test_official_size_checked_when_verifying(tmp_path):
    write_cifar_folder(tmp_path / "cifar-10-batches-bin", cifar_batches(n=2))
    with pytest.raises(DatasetError, match="30,730,000"):
        load("cifar10", "test", tmp_path)


def test_truncated_archive(tmp_path, parsed_dir):
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", cifar_batches(n=2))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cifar-10-binary.tar.gz: corrupt or truncated"):
        load("cifar10", "test", tmp_path, verify=False)
    assert not parsed_dir.exists() or not list(parsed_dir.iterdir())


def test_archive_missing_member(tmp_path):
    batches = cifar_batches(n=2)
    del batches["data_batch_4.bin"]
    write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", batches)
    with pytest.raises(DatasetError, match="lacks cifar-10-batches-bin/data_batch_4.bin"):
        load("cifar10", "train", tmp_path, verify=False)


def test_archive_md5_checked(tmp_path):
    write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", cifar_batches(n=2))
    with pytest.raises(DatasetError, match="c32a1d4ab5d03f1284b67883e8d87530"):
        load("cifar10", "test", tmp_path)


def test_archive_parsed_once(tmp_path, parsed_dir, monkeypatch):
    write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", cifar_batches(n=2))
    x1, _ = load("cifar10", "test", tmp_path, verify=False)
    monkeypatch.setattr(cifar, "read_archive", lambda *a: pytest.fail("parsed again"))
    x2, _ = load("cifar10", "test", tmp_path, verify=False)
    assert torch.equal(x1, x2)


def test_missing_cifar_says_what_to_fetch(tmp_path):
    with pytest.raises(DatasetError) as err:
        load("cifar10", "train", tmp_path)
    msg = str(err.value)
    assert "cifar-10-binary.tar.gz" in msg and "c32a1d4ab5d03f1284b67883e8d87530" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in msg
