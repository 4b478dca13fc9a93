"""``load(name, split)``: a dataset split as float32 images in [0, 1] and int64 labels.

Pipeline, in this order: raw uint8 images (parsed once, then read from the ``.npy`` cache)
-> optional centre crop -> optional seeded subset -> float32 scaled to [0, 1] -> optional
per-pixel standardisation with the train split's statistics.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from nvmsim.data import cache, cifar, idx, sources
from nvmsim.data.errors import DatasetError
from nvmsim.data.registry import CIFAR10_BATCH_SIZE, DATASETS, DatasetInfo, get_info

SPLITS = ("train", "test")
NORMALIZE = (None, "standard")
DIGITS_TEST = 360  # last 20 % (rounded up) of scikit-learn's 1,797 digits


def load(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    *,
    crop: int | tuple[int, int] | None = None,
    subset: int | None = None,
    normalize: str | None = None,
    seed: int = 0,
    download: bool | None = None,
    verify: bool = True,
    cache_parsed: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``x`` (float32, ``(N, C, H, W)``, in [0, 1]) and labels ``y`` (int64) of a split.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` or ``"digits"``.
        split: ``"train"`` or ``"test"``. ``digits`` (scikit-learn's 1,797 8x8 images,
            pixel values 0..16 divided by 16) has no official split: its first 1,437 images
            are ``train`` and the last 360 (20 %) are ``test``, in scikit-learn's order
            (like ``train_test_split(..., test_size=0.2, shuffle=False)``).
        data_dir: folder searched first for the files (see :mod:`nvmsim.data.sources`).
        crop: ``(h, w)`` (or ``s`` for ``(s, s)``) centre crop. The top-left corner is
            ``((H - h) // 2, (W - w) // 2)``, so when the margin is odd the extra row or
            column is dropped at the bottom or right. MNIST ``crop=(22, 24)`` keeps rows
            3..24 and columns 2..25 (528 inputs, paper 004).
        subset: keep ``n`` images drawn at random without replacement with ``seed`` (the
            first ``n`` of one seeded permutation, so a smaller subset is contained in a larger
            one), returned in their original order. None keeps all.
        normalize: None, or ``"standard"``: subtract the per-pixel mean and divide by the
            per-pixel std (population, ``ddof=0``) of the whole train split at the same crop;
            pixels with zero std are only centred. Values then leave [0, 1].
        seed: seed of the subset draw.
        download: allow downloading missing files; None defers to ``NVMSIM_NO_DOWNLOAD``.
        verify: check the published MD5 of official files before first use (a check is
            remembered per file size and mtime). Pass False for files that are not the
            official ones (e.g. small test fixtures); they are still parsed strictly.
        cache_parsed: read/write parsed arrays in ``<cache root>/parsed/``.

    Raises:
        DatasetError: unknown name/split/option, malformed file, MD5 mismatch
            (:class:`ChecksumError`), or missing files (:class:`DatasetNotFoundError`).
    """
    info = get_info(name)
    if split not in SPLITS:
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    if normalize not in NORMALIZE:
        raise DatasetError(f"normalize must be None or 'standard', got {normalize!r}")
    opts = {"download": download, "verify": verify, "cache_parsed": cache_parsed}
    images, labels = raw(info, split, data_dir, **opts)
    images = center_crop(images, crop)
    keep = subset_indices(len(labels), subset, seed, f"{info.name} {split}")
    if keep is not None:
        images, labels = images[keep], labels[keep]
    x = _tensor(images).to(torch.float32).div_(info.scale)
    if normalize == "standard":
        train = images if split == "train" and keep is None else None
        if train is None:
            train = center_crop(raw(info, "train", data_dir, **opts)[0], crop)
        mean, std = pixel_stats(train, info.scale)
        x.sub_(torch.from_numpy(mean)).div_(torch.from_numpy(std))
    y = _tensor(labels).to(torch.int64)
    return x, y


def _tensor(a: np.ndarray) -> torch.Tensor:
    """Tensor sharing a C-contiguous, writable copy of ``a`` (memory maps are read-only)."""
    return torch.from_numpy(np.require(a, requirements=["C_CONTIGUOUS", "WRITEABLE"]))


def center_crop(images: np.ndarray, crop: int | tuple[int, int] | None) -> np.ndarray:
    """Centre crop of ``(N, C, H, W)`` images to ``(h, w)``; top-left ``((H-h)//2, (W-w)//2)``."""
    if crop is None:
        return images
    h, w = (crop, crop) if isinstance(crop, int) else tuple(crop)
    H, W = images.shape[-2:]
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DatasetError(f"crop must be positive integers (h, w), got {crop!r}")
    if h > H or w > W:
        raise DatasetError(f"crop {(h, w)} is larger than the {(H, W)} images")
    top, left = (H - h) // 2, (W - w) // 2
    return images[..., top : top + h, left : left + w]


def subset_indices(n: int, subset: int | None, seed: int, what: str) -> np.ndarray | None:
    """Sorted indices of a seeded random subset of ``subset`` out of ``n`` items, or None."""
    if subset is None:
        return None
    if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1:
        raise DatasetError(f"subset must be a positive integer, got {subset!r}")
    if subset > n:
        raise DatasetError(f"subset={subset} is larger than the {n} images of {what}")
    g = torch.Generator().manual_seed(int(seed))
    keep = torch.randperm(n, generator=g)[:subset].numpy()
    return np.sort(keep)


def pixel_stats(images: np.ndarray, scale: float, chunk: int = 4096) -> tuple[np.ndarray, ...]:
    """Per-pixel mean and std (float32, ``ddof=0``) of ``images / scale``; std 0 becomes 1."""
    n = len(images)
    total = np.zeros(images.shape[1:], dtype=np.float64)
    total_sq = np.zeros_like(total)
    for i in range(0, n, chunk):
        block = np.asarray(images[i : i + chunk], dtype=np.float64)
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    mean = total / n
    var = np.maximum(total_sq / n - mean**2, 0.0)
    std = np.sqrt(var)
    std[std == 0] = scale
    return (mean / scale).astype(np.float32), (std / scale).astype(np.float32)


def raw(
    info: DatasetInfo,
    split: str,
    data_dir: str | Path | None = None,
    *,
    download: bool | None = None,
    verify: bool = True,
    cache_parsed: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Unscaled images (uint8, ``(N, C, H, W)``, possibly memory-mapped) and uint8 labels."""
    if info.format == "idx":
        return _raw_idx(info, split, data_dir, download, verify, cache_parsed)
    if info.format == "cifar-binary":
        return _raw_cifar(info, split, data_dir, download, verify, cache_parsed)
    return _raw_digits(split)


def _raw_idx(info, split, data_dir, download, verify, cache_parsed):
    images_name, labels_name = info.splits[split]
    images_path = sources.obtain(info, images_name, data_dir, download=download)
    labels_path = sources.obtain(info, labels_name, data_dir, download=download)
    if verify:
        sources.verify_file(images_path, info.file(images_name))
        sources.verify_file(labels_path, info.file(labels_name))
    (images,) = cache.cached(
        images_path, ("images",), lambda: (idx.read_images(images_path),), enabled=cache_parsed
    )
    (labels,) = cache.cached(
        labels_path,
        ("labels",),
        lambda: (idx.read_labels(labels_path, info.num_classes),),
        enabled=cache_parsed,
    )
    if images.shape[1:] != info.shape[1:]:
        raise DatasetError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"{info.name} images are {info.shape[1]}x{info.shape[2]}"
        )
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    return images[:, None], labels


def _raw_cifar(info, split, data_dir, download, verify, cache_parsed):
    batches = info.splits[split]
    found = sources.find_batches(info, batches, data_dir)
    if found is None:
        archive_name = info.files[0].name
        found = ("archive", sources.obtain(info, archive_name, data_dir, download=download))
    kind, where = found
    if kind == "archive":
        if verify:
            sources.verify_file(where, info.files[0])

        def parse():
            parts = cifar.read_archive(where, batches)
            return _concat([parts[b] for b in batches])

        return cache.cached(where, ("images", "labels"), parse, member=split, enabled=cache_parsed)
    paths = [where / b for b in batches]
    if verify:
        for p in paths:
            size = p.stat().st_size
            if size != CIFAR10_BATCH_SIZE:
                raise DatasetError(
                    f"{p}: {size:,} bytes, the official batch file has {CIFAR10_BATCH_SIZE:,} "
                    "(10,000 records); pass verify=False to use it anyway"
                )

    def parse():
        return _concat([cifar.read_batch(p) for p in paths])

    return cache.cached(paths, ("images", "labels"), parse, member=split, enabled=cache_parsed)


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.uint8)[:, None]
    labels = d.target.astype(np.uint8)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _raw_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _digits()
    cut = len(labels) - DIGITS_TEST
    sl = slice(None, cut) if split == "train" else slice(cut, None)
    return images[sl], labels[sl]


def describe_local(data_dir: str | Path | None = None) -> list[dict]:
    """One dict per dataset file found (or expected) on this machine; downloads nothing.

    Keys: ``dataset``, ``file``, ``path`` (str or None), ``bytes`` (or None),
    ``expected_bytes``, ``md5`` (computed, or None), ``expected_md5`` (None where none is
    published) and ``status``: ``"ok"`` (MD5 matches), ``"md5 mismatch"``, ``"missing"``,
    ``"present"`` (no published MD5; size matches), ``"size mismatch"`` or ``"embedded"``
    (digits, shipped with scikit-learn). CIFAR-10 lists its extracted batch files when a
    complete ``cifar-10-batches-bin/`` folder is found, else the archive.
    """
    rows: list[dict] = []
    for info in DATASETS.values():
        if info.format == "sklearn":
            rows.append(_row(info.name, "(embedded in scikit-learn)", None, None, None, "embedded"))
        elif info.format == "cifar-binary":
            batches = info.splits["train"] + info.splits["test"]
            found = sources.find_batches(info, batches, data_dir)
            if found is not None and found[0] == "folder":
                for b in batches:
                    p = found[1] / b
                    size = p.stat().st_size
                    status = "present" if size == CIFAR10_BATCH_SIZE else "size mismatch"
                    rows.append(_row(info.name, b, p, CIFAR10_BATCH_SIZE, None, status))
            else:
                rows.append(_file_row(info, info.files[0], data_dir))
        else:
            rows.extend(_file_row(info, f, data_dir) for f in info.files)
    return rows


def _file_row(info: DatasetInfo, f, data_dir) -> dict:
    path = sources.find_file(info, f.name, data_dir)
    if path is None:
        return _row(info.name, f.name, None, f.size, f.md5, "missing")
    want = sources.expected_md5(f, path)
    size = f.size if path.name == f.name else f.raw_size
    got = want if cache.verified_md5(path) == want else sources.file_md5(path)
    if got == want:
        cache.mark_verified(path, got)
    row = _row(info.name, path.name, path, size, want, "ok" if got == want else "md5 mismatch")
    row["md5"] = got
    return row


def _row(dataset, file, path, expected_bytes, expected_md5, status) -> dict:
    return {
        "dataset": dataset,
        "file": file,
        "path": None if path is None else str(path),
        "bytes": None if path is None else Path(path).stat().st_size,
        "expected_bytes": expected_bytes,
        "md5": None,
        "expected_md5": expected_md5,
        "status": status,
    }
