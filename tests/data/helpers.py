"""Writers of tiny dataset files in the official formats, for tests."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def idx_bytes(array: np.ndarray, magic: int | None = None, claim: int | None = None) -> bytes:
    """IDX encoding of a uint8 array; ``magic`` / ``claim`` (item count) may be forged."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 | array.ndim
    dims = list(array.shape)
    if claim is not None:
        dims[0] = claim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True, **kw) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``gz``)."""
    data = idx_bytes(array, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def fake_mnist(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 28x28 uint8 images and labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, np.uint8)


def write_mnist(folder: Path, n_train: int = 12, n_test: int = 7, seed: int = 0, gz=True):
    """A complete tiny MNIST-format dataset in ``folder``; returns the four arrays."""
    sfx = ".gz" if gz else ""
    xtr, ytr = fake_mnist(n_train, seed)
    xte, yte = fake_mnist(n_test, seed + 1)
    write_idx(folder / f"train-images-idx3-ubyte{sfx}", xtr, gz=gz)
    write_idx(folder / f"train-labels-idx1-ubyte{sfx}", ytr, gz=gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{sfx}", xte, gz=gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{sfx}", yte, gz=gz)
    return xtr, ytr, xte, yte


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """CIFAR-10 binary records: label byte then R, G, B planes of 32x32."""
    images = np.asarray(images, dtype=np.uint8).reshape(len(labels), -1)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], images], axis=1)
    return records.tobytes()


def fake_cifar(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n, np.uint8)


BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def cifar_batches(n: int = 3, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``n`` random records for each of the six batch files."""
    return {b: fake_cifar(n, seed + i) for i, b in enumerate(BATCHES)}


def write_cifar_folder(folder: Path, batches: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in batches.items():
        (folder / name).write_bytes(cifar_bytes(x, y))
    return folder


def write_cifar_archive(path: Path, batches: dict, members: dict[str, bytes] | None = None):
    """A ``cifar-10-binary.tar.gz`` with the batches under ``cifar-10-batches-bin/``."""
    files = {f"cifar-10-batches-bin/{k}": cifar_bytes(*v) for k, v in batches.items()}
    files = {"cifar-10-batches-bin/batches.meta.txt": b"airplane\n", **files, **(members or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
