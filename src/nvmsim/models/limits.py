"""Bounds on a registry architecture's depth: a study file's kwargs cannot make building a
model (or planning a study, which builds it on the meta device) loop without end."""

from __future__ import annotations

#: The most layers a registry model is built with
MAX_LAYERS = 1000


def check_depth(n: int, what: str) -> None:
    """Refuse ``n`` layers outside ``1 .. MAX_LAYERS`` (``what`` names the argument)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_LAYERS:
        raise ValueError(f"{what} must be a whole number from 1 to {MAX_LAYERS}, got {n!r:.40}")
