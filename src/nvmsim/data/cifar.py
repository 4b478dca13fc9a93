"""Strict reader for the BINARY version of CIFAR-10, from a folder or the official archive.

Each record is 1 label byte (0..9) then 3,072 pixel bytes: the R, G and B planes of a 32x32
image, row-major. A batch file holds whole records only. The archive
``cifar-10-binary.tar.gz`` is read in one streaming pass with :mod:`tarfile`; nothing is
extracted to disk. The pickled "python version" of CIFAR-10 is never read.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np

from nvmsim.data.errors import DatasetError
from nvmsim.data.idx import check_labels
from nvmsim.data.registry import CIFAR10_FOLDER, CIFAR10_RECORD

NUM_CLASSES = 10


def parse_batch(data: bytes, source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(N, 3, 32, 32)`` and labels uint8 ``(N,)`` of one batch file's bytes.

    ``source`` only names the file in error messages.
    """
    if not data:
        raise DatasetError(f"{source}: file is empty (0 bytes)")
    if len(data) % CIFAR10_RECORD:
        raise DatasetError(
            f"{source}: size {len(data)} bytes is not a multiple of the CIFAR-10 record size "
            f"{CIFAR10_RECORD} (1 label byte + 3072 pixel bytes); truncated or not a "
            "binary-version batch file"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0].copy()
    check_labels(labels, NUM_CLASSES, source)
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse the batch file at ``path`` (see :func:`parse_batch`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read file ({e})") from e
    return parse_batch(data, path)


def member_name(batch: str) -> str:
    """Path of a batch file inside the official archive."""
    return f"{CIFAR10_FOLDER}/{batch}"


def read_archive(
    archive: str | Path, batches: tuple[str, ...]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parse the named batch files from ``cifar-10-binary.tar.gz`` in one pass.

    Only regular-file members ``cifar-10-batches-bin/<batch>`` are read; a missing member,
    a truncated archive or a malformed batch raises :class:`DatasetError`.
    """
    archive = Path(archive)
    wanted = {member_name(b): b for b in batches}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        if archive.stat().st_size == 0:
            raise DatasetError(f"{archive}: file is empty (0 bytes)")
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                batch = wanted.get(member.name.removeprefix("./"))
                if batch is None or not member.isfile():
                    continue
                f = tar.extractfile(member)
                if f is None:  # pragma: no cover - isfile() members always have data
                    continue
                out[batch] = parse_batch(f.read(), f"{archive}:{member.name}")
                if len(out) == len(wanted):
                    break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DatasetError(f"{archive}: corrupt or truncated archive ({e})") from e
    missing = [b for b in batches if b not in out]
    if missing:
        raise DatasetError(
            f"{archive}: archive lacks {', '.join(member_name(b) for b in missing)}; "
            "is it the binary version (cifar-10-binary.tar.gz)?"
        )
    return out
