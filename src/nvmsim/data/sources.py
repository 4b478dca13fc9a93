"""Where dataset files come from: search roots, MD5 checks, and downloads.

Search order for a file (the first hit wins):

1. the ``data_dir`` argument,
2. ``$NVMSIM_DATA``,
3. the cache root ``$NVMSIM_CACHE`` or ``~/.cache/nvmsim`` (where downloads land),
4. in a development checkout only, ``<repo>/../shared/data`` (the staged copies).

Within a root a file may sit in a dataset sub-folder (``root/mnist/``, also torchvision's
``root/MNIST/raw/``) or directly in the root, gzipped (official name) or decompressed (same
name without ``.gz``). If a file is found nowhere it is downloaded into
``<cache root>/<dataset>/`` unless downloads are off (``download=False`` or
``NVMSIM_NO_DOWNLOAD=1``), in which case :class:`DatasetNotFoundError` says what to put where.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from nvmsim.data import cache
from nvmsim.data.errors import ChecksumError, DatasetError, DatasetNotFoundError
from nvmsim.data.registry import CIFAR10_FOLDER, DatasetInfo, FileInfo
from nvmsim.files import atomic_open

_TRUE = {"1", "true", "yes", "on"}


def _checkout_data_dir() -> Path | None:
    """``<repo>/../shared/data`` when nvmsim runs from a source checkout, else None."""
    here = Path(__file__).resolve()
    repo = here.parents[3]
    if here.parents[2].name == "src" and (repo / "pyproject.toml").is_file():
        shared = repo.parent / "shared" / "data"
        return shared if shared.is_dir() else None
    return None


def search_roots(data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for dataset files, in order (see module docstring)."""
    roots: list[Path] = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        if not d.is_dir():
            raise DatasetError(f"data_dir {str(d)!r} is not a folder")
        roots.append(d)
    env = os.environ.get("NVMSIM_DATA")
    if env:
        d = Path(env).expanduser()
        if not d.is_dir():
            raise DatasetError(f"NVMSIM_DATA = {env!r} is not a folder")
        roots.append(d)
    roots.append(cache.cache_root())
    checkout = _checkout_data_dir()
    if checkout is not None:
        roots.append(checkout)
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def candidate_dirs(info: DatasetInfo, roots: list[Path]) -> list[Path]:
    """Folders that may hold ``info``'s files: each root's dataset sub-folders, then the root."""
    return [d for root in roots for d in (*(root / sub for sub in info.dirs), root)]


def find_file(info: DatasetInfo, name: str, data_dir: str | Path | None = None) -> Path | None:
    """First existing copy of the published file ``name`` (gzipped or not), or None."""
    f = info.file(name)
    names = [f.name] + ([f.raw_name] if f.raw_name else [])
    for d in candidate_dirs(info, search_roots(data_dir)):
        for n in names:
            p = d / n
            if p.is_file():
                return p
    return None


def find_batches(
    info: DatasetInfo, batches: tuple[str, ...], data_dir: str | Path | None = None
) -> tuple[str, Path] | None:
    """CIFAR-10 batch files: ``("folder", dir)`` holding all ``batches`` (a
    ``cifar-10-batches-bin/`` folder, or a searched folder itself), else ``("archive", path)``
    of the official archive, else None. In each folder extracted files win over the archive.
    """
    archive = info.files[0].name
    for d in candidate_dirs(info, search_roots(data_dir)):
        for folder in (d / CIFAR10_FOLDER, d):
            if all((folder / b).is_file() for b in batches):
                return "folder", folder
        if (d / archive).is_file():
            return "archive", d / archive
    return None


def download_allowed(download: bool | None) -> bool:
    """An explicit ``download`` argument wins; otherwise ``NVMSIM_NO_DOWNLOAD`` decides."""
    if download is not None:
        return bool(download)
    return os.environ.get("NVMSIM_NO_DOWNLOAD", "").strip().lower() not in _TRUE


def file_md5(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file's bytes."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def expected_md5(f: FileInfo, path: Path) -> str | None:
    """Published MD5 for ``path``: of the archive, or of the decompressed file."""
    if path.name == f.name:
        return f.md5
    if path.name == f.raw_name:
        return f.raw_md5
    return None


def verify_file(path: str | Path, f: FileInfo) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the published MD5 of ``f``.

    A successful check is remembered (keyed by path, size and mtime) in the cache, so each
    file is hashed once, not on every load.
    """
    path = Path(path)
    want = expected_md5(f, path)
    if want is None:
        return
    if cache.verified_md5(path) == want:
        return
    got = file_md5(path)
    if got != want:
        raise ChecksumError(
            f"{path}: MD5 {got} does not match the published {want} for {path.name} "
            f"({path.stat().st_size:,} bytes here). The file is corrupt, truncated or not the "
            f"official one; delete it to re-download from {f.url}, or pass verify=False to use "
            "it anyway."
        )
    cache.mark_verified(path, got)


def _urlopen(url: str, timeout: float) -> BinaryIO:
    req = urllib.request.Request(url, headers={"User-Agent": "nvmsim"})
    return urllib.request.urlopen(req, timeout=timeout)


def download_file(f: FileInfo, dest_dir: str | Path, *, timeout: float = 60.0) -> Path:
    """Download ``f`` into ``dest_dir``, check its MD5, and only then move it into place.

    Bytes go to a temporary file beside the destination, shown with a rich progress bar on
    stderr; a failed or mismatching download leaves nothing behind.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    dest = Path(dest_dir) / f.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.md5(usedforsecurity=False)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with atomic_open(dest, "wb", suffix=".part") as out:
        with (
            _urlopen(f.url, timeout) as resp,
            Progress(*columns, console=Console(stderr=True), transient=True) as bar,
        ):
            length = getattr(resp, "headers", {}).get("Content-Length")
            task = bar.add_task(f.name, total=int(length) if length else f.size)
            while block := resp.read(1 << 20):
                out.write(block)
                h.update(block)
                bar.advance(task, len(block))
        got = h.hexdigest()
        if got != f.md5:  # raised inside the block, so the .part file is removed
            raise ChecksumError(
                f"download of {f.url}: MD5 {got} does not match the published {f.md5}; "
                "nothing was saved"
            )
    cache.mark_verified(dest, f.md5)
    return dest


def not_found_message(
    info: DatasetInfo, files: list[FileInfo], data_dir: str | Path | None, reason: str
) -> str:
    """What to put where: file names, sizes, MD5s, URLs, and the folders searched."""
    roots = search_roots(data_dir)
    lines = [f"{info.name}: cannot find {', '.join(f.name for f in files)} ({reason})."]
    lines.append("Searched (each also in a sub-folder " + ", ".join(info.dirs) + "):")
    lines += [f"  {r}" for r in roots]
    target = cache.cache_root() / info.name
    lines.append(f"Put these files in {target} (or in data_dir, or $NVMSIM_DATA):")
    for f in files:
        lines.append(f"  {f.name}  {f.size:,} bytes  MD5 {f.md5}  from {f.url}")
    return "\n".join(lines)


def obtain(
    info: DatasetInfo,
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool | None = None,
) -> Path:
    """Path of the published file ``name``: found locally, or downloaded into the cache."""
    path = find_file(info, name, data_dir)
    if path is not None:
        return path
    f = info.file(name)
    if not download_allowed(download):
        reason = "downloads are off: download=False or NVMSIM_NO_DOWNLOAD is set"
        raise DatasetNotFoundError(not_found_message(info, [f], data_dir, reason))
    try:
        return download_file(f, cache.cache_root() / info.name)
    except (urllib.error.URLError, OSError, ChecksumError) as e:
        reason = f"download from {f.url} failed: {e}"
        raise DatasetNotFoundError(not_found_message(info, [f], data_dir, reason)) from e
