"""Strict reader for IDX files (the MNIST / Fashion-MNIST format), gzipped or not.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32
dimensions, then the items. Only unsigned-byte data (type ``0x08``) is used by the datasets
here: images have magic ``0x00000803`` (N, rows, cols), labels ``0x00000801`` (N,).
Every defect (empty file, truncated gzip, wrong magic, header that claims more or fewer items
than the file holds) raises :class:`DatasetError` naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from nvmsim.data.errors import DatasetError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_GZIP_MAGIC = b"\x1f\x8b"


#: The most a gzipped IDX file may decompress to (MNIST's largest file is 47 MB): a small
#: file cannot make the reader allocate without bound (a gzip bomb)
MAX_IDX_BYTES = 1 << 30


def read_bytes(path: str | Path, limit: int = MAX_IDX_BYTES) -> bytes:
    """Whole content of ``path``, decompressed when it starts with the gzip magic bytes;
    more than ``limit`` bytes, before or after decompression, is refused."""
    path = Path(path)
    try:
        too_big = path.stat().st_size > limit
        data = b"" if too_big else path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read file ({e})") from e
    if too_big:
        raise DatasetError(f"{path}: larger than {limit:,} bytes; not an IDX file of a dataset")
    if not data:
        raise DatasetError(f"{path}: file is empty (0 bytes)")
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        out = _gunzip(data, limit)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path}: corrupt or truncated gzip file ({e})") from e
    if out is None:
        raise DatasetError(
            f"{path}: decompresses to more than {limit:,} bytes; not an IDX file of a dataset"
        )
    if not out:
        raise DatasetError(f"{path}: gzip file decompresses to 0 bytes")
    return out


def _gunzip(data: bytes, limit: int) -> bytes | None:
    """``gzip.decompress(data)`` (every member) or ``None`` past ``limit`` bytes."""
    out = bytearray()
    while data:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out += d.decompress(data, limit + 1 - len(out))
        if len(out) > limit or d.unconsumed_tail:
            return None
        if not d.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        data = d.unused_data.lstrip(b"\0")  # gzip pads members with zeros at the end
    return bytes(out)


def parse_idx(data: bytes, source: str | Path, magic: int) -> np.ndarray:
    """Parse IDX ``data`` (already decompressed) whose magic number must be ``magic``.

    ``source`` only names the file in error messages. Returns a read-only uint8 array with
    the dimensions from the header.
    """
    if len(data) < 4:
        raise DatasetError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DatasetError(
            f"{source}: wrong IDX magic number 0x{found:08x} (expected 0x{magic:08x}); "
            "not an IDX file of the expected kind"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{source}: IDX header truncated ({len(data)} of {header} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if any(d == 0 for d in dims):
        raise DatasetError(f"{source}: IDX header has a zero dimension {dims}")
    expected = int(np.prod(dims, dtype=np.int64))
    held = len(data) - header
    if held < expected:
        per_item = expected // dims[0]
        raise DatasetError(
            f"{source}: header claims {dims[0]} items of shape {dims[1:]} ({expected} bytes) "
            f"but the file holds only {held} bytes ({held // per_item} whole items); "
            "file truncated or header corrupt"
        )
    if held > expected:
        raise DatasetError(
            f"{source}: {held - expected} unexpected bytes after the {dims[0]} items "
            f"declared in the header {dims}"
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Read and parse the IDX file at ``path`` (gzipped or not); see :func:`parse_idx`."""
    return parse_idx(read_bytes(path), path, magic)


def read_images(path: str | Path) -> np.ndarray:
    """Images of an IDX file as uint8 ``(N, rows, cols)``."""
    return read_idx(path, IMAGES_MAGIC)


def read_labels(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """Labels of an IDX file as uint8 ``(N,)``; each must be below ``num_classes`` if given."""
    labels = read_idx(path, LABELS_MAGIC)
    if num_classes is not None:
        check_labels(labels, num_classes, path)
    return labels


def check_labels(labels: np.ndarray, num_classes: int, source: str | Path) -> None:
    """Raise :class:`DatasetError` if a label is outside ``0 .. num_classes - 1``."""
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = int(bad[0])
        raise DatasetError(
            f"{source}: label {int(labels[i])} at index {i} is out of range 0..{num_classes - 1} "
            f"({bad.size} labels out of range)"
        )
