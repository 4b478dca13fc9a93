"""What produced a result: package versions, and the source commit when run from a checkout."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path


@functools.cache
def source_commit() -> str | None:
    """The git commit of the nvmsim source being run (``+dirty`` when it has uncommitted
    changes), or None when nvmsim is not run from a git checkout."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        res = subprocess.run(
            ["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10
        )
        if res.returncode != 0:
            raise OSError(res.stderr)
        return res.stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel"))
        if not (top / "src" / "nvmsim").resolve() == here:
            return None  # nvmsim installed inside some other repository
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Versions of nvmsim, torch, numpy and Python, and the source commit if there is one."""
    import numpy
    import torch

    from nvmsim import __version__

    out = {
        "nvmsim": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    commit = source_commit()
    if commit:
        out["commit"] = commit
    return out
