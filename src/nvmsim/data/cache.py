"""On-disk cache of parsed arrays (``.npy``) and of verified MD5s.

Parsing a gzipped IDX file takes a few hundred milliseconds; loading the same array back
from ``.npy`` (memory-mapped) takes a few. Entries live in ``<cache root>/parsed/`` where the
cache root is ``$NVMSIM_CACHE`` or ``~/.cache/nvmsim``. An entry is keyed by the source
file's resolved path, byte size and modification time (and the archive member, if any), so an
edited or replaced file is parsed again. Entries are written only after a successful parse,
atomically (:func:`nvmsim.files.atomic_open`), so a reader never sees half a file.
The cache is an optimisation: if it cannot be written (read-only disk) loading still works.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from nvmsim.files import atomic_open, atomic_write

FORMAT_VERSION = "1"


def cache_root() -> Path:
    """``$NVMSIM_CACHE`` if set, else ``~/.cache/nvmsim`` (downloads and parsed arrays)."""
    env = os.environ.get("NVMSIM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nvmsim"


def parsed_dir() -> Path:
    """Folder of the parsed-array cache."""
    return cache_root() / "parsed"


def source_key(paths: str | Path | Sequence[str | Path], member: str = "") -> str:
    """Cache key of one or more source files (resolved path, size, mtime) and an optional
    member name (archive member, or split)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    parts = [f"v{FORMAT_VERSION}", member]
    for path in paths:
        p = Path(path).resolve()
        st = p.stat()
        parts.append(f"{p}|{st.st_size}|{st.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]
    stem = (member.rsplit("/", 1)[-1] or Path(paths[0]).name).replace(".", "_")
    return f"{stem}-{digest}"


def load_arrays(key: str, tags: tuple[str, ...]) -> tuple[np.ndarray, ...] | None:
    """The cached arrays ``<key>-<tag>.npy`` (memory-mapped, read-only), or None if any is
    missing or unreadable."""
    out = []
    for tag in tags:
        path = parsed_dir() / f"{key}-{tag}.npy"
        try:
            out.append(np.load(path, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError, EOFError):
            return None
    return tuple(out)


def save_arrays(key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``<key>-<tag>.npy`` for each array, atomically; errors writing are ignored."""
    try:
        parsed_dir().mkdir(parents=True, exist_ok=True)
        for tag, array in arrays.items():
            with atomic_open(parsed_dir() / f"{key}-{tag}.npy") as f:
                np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    except OSError:
        return


def cached(
    path: str | Path | Sequence[str | Path],
    tags: tuple[str, ...],
    parse: Callable[[], tuple[np.ndarray, ...]],
    *,
    member: str = "",
    enabled: bool = True,
) -> tuple[np.ndarray, ...]:
    """Arrays parsed from ``path`` (one file or several): from the cache if present, else
    ``parse()`` then cached.

    ``parse`` must raise on any defect; nothing is cached when it does.
    """
    if not enabled:
        return parse()
    key = source_key(path, member)
    hit = load_arrays(key, tags)
    if hit is not None:
        return hit
    arrays = parse()
    save_arrays(key, dict(zip(tags, arrays, strict=True)))
    return arrays


def verified_md5(path: str | Path) -> str | None:
    """The MD5 recorded for ``path`` (same size and mtime) by :func:`mark_verified`."""
    try:
        stamp = parsed_dir() / f"{source_key(path)}.md5"
        return stamp.read_text().strip() or None
    except OSError:
        return None


def mark_verified(path: str | Path, md5: str) -> None:
    """Record that ``path`` (at its current size and mtime) has MD5 ``md5``."""
    try:
        dest = parsed_dir() / f"{source_key(path)}.md5"
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, md5)
    except OSError:
        return
