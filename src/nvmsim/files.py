"""Writing files so that a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_open(
    path: str | Path, mode: str = "wb", *, suffix: str = ".tmp", **kwargs
) -> Iterator[IO]:
    """A file object on a temporary file beside ``path`` that, when the block ends without
    an error, is fsynced and renamed over ``path``; on an error it is removed and ``path``
    is left as it was. ``mode`` is ``"wb"`` or ``"w"`` (``kwargs`` go to :func:`open`);
    the temporary file is ``.<name>.<random><suffix>`` (``".part"`` for a download)."""
    path = Path(path)
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', not {mode!r}")
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=suffix)
    try:
        try:
            f = os.fdopen(fd, mode, **kwargs)
        except BaseException:  # bad kwargs: fdopen did not take the descriptor over
            os.close(fd)
            raise
        with f:
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # not 0600
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable where the OS allows it (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
