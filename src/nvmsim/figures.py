"""Headless matplotlib for every figure nvmsim writes: one place that picks the Agg backend
and one that saves a figure to a path (folders made, figure closed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path, dpi: int = 90) -> Path:
    """Lay out ``fig``, write it to ``path`` (PNG unless the suffix says otherwise), close it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
