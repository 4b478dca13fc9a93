"""Device faults: stuck-at devices and dead rows / columns of an array.

* Stuck-at: each device independently sticks at Gmin (probability ``rate_gmin``) or at Gmax
  (``rate_gmax``).
* Dead lines: in every ``tile_rows x tile_cols`` array, each row (word line) is dead with
  probability ``rate_rows`` and each column (bit line) with probability ``rate_cols``,
  independently; every device on a dead line is dead (stuck at Gmin, or open: no current).
"""

from __future__ import annotations

import math

import torch


def stuck_at(
    g: torch.Tensor,
    rate_gmin: float,
    rate_gmax: float,
    g_min: float | torch.Tensor,
    g_max: float | torch.Tensor,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Each device independently sticks at Gmin (prob. ``rate_gmin``) or Gmax (``rate_gmax``).

    ``g_min`` / ``g_max`` may be per-device tensors (devices with their own range).
    """
    if rate_gmin < 0 or rate_gmax < 0 or rate_gmin + rate_gmax > 1:
        raise ValueError(f"fault rates must be >= 0 with sum <= 1, got {rate_gmin}, {rate_gmax}")
    if rate_gmin == 0 and rate_gmax == 0:
        return g
    u = torch.rand(g.shape, generator=generator, dtype=g.dtype, device=g.device)
    lo = torch.as_tensor(g_min, dtype=g.dtype, device=g.device).expand_as(g)
    hi = torch.as_tensor(g_max, dtype=g.dtype, device=g.device).expand_as(g)
    out = torch.where(u < rate_gmin, lo, g)
    return torch.where((u >= rate_gmin) & (u < rate_gmin + rate_gmax), hi, out)


def dead_line_mask(
    rows: int,
    cols: int,
    tile_rows: int,
    tile_cols: int,
    rate_rows: float,
    rate_cols: float,
    generator: torch.Generator | None,
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """Boolean ``(rows, cols)`` mask of devices on dead lines, or ``None`` if both rates are 0.

    The matrix is laid out on arrays of ``tile_rows x tile_cols`` (the last ones may be
    smaller); a row is dead within one array, not across the whole matrix.
    """
    for name, r in (("rate_rows", rate_rows), ("rate_cols", rate_cols)):
        if not 0 <= r <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {r}")
    if rate_rows == 0 and rate_cols == 0:
        return None
    dead = torch.zeros(rows, cols, dtype=torch.bool, device=device)
    if rate_rows > 0:
        n_col_arrays = math.ceil(cols / tile_cols)
        u = torch.rand(rows, n_col_arrays, generator=generator, device=device)
        dead |= (u < rate_rows).repeat_interleave(tile_cols, dim=1)[:, :cols]
    if rate_cols > 0:
        n_row_arrays = math.ceil(rows / tile_rows)
        u = torch.rand(n_row_arrays, cols, generator=generator, device=device)
        dead |= (u < rate_cols).repeat_interleave(tile_rows, dim=0)[:rows]
    return dead
