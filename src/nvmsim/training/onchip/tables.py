"""The SET and RESET jump-tables of an on-chip run, built from its settings."""

from __future__ import annotations

from pathlib import Path

from nvmsim.devices import jumptable as jt
from nvmsim.training.onchip.config import OnChipConfig


def build_tables(
    cfg: OnChipConfig, base: str | Path | None = None
) -> tuple[jt.JumpTable, jt.JumpTable | None, float]:
    """SET table, RESET table (None for ``float``) and the nominal SET step ``s_ref``."""
    if cfg.device == "float":
        return jt.linear(1.0 / cfg.n_steps, bins=1), None, 1.0 / cfg.n_steps
    s = 1.0 / cfg.n_steps
    kw = {"bins": cfg.bins}
    if cfg.table == "file":
        root = Path(base) if base else Path(".")
        p = Path(cfg.set_table or "")
        set_t = jt.load_jumptable(p if p.is_absolute() else root / p, bins=cfg.bins)
        if cfg.reset_table:
            q = Path(cfg.reset_table)
            reset_t = jt.load_jumptable(q if q.is_absolute() else root / q, bins=cfg.bins)
        else:
            s_file = float(set_t.mean_step().abs().median())
            reset_t = jt.linear(s_file / cfg.asymmetry, cfg.spread, reset=True, **kw)
        s_ref = float(set_t.mean_step().abs().median())
        return set_t, reset_t, s_ref
    if cfg.table == "linear":
        set_t, reset_t = jt.asymmetric(s, cfg.asymmetry, cfg.spread, **kw)
        return set_t, reset_t, s
    set_t = jt.partially_nonlinear(s, cfg.nonlinear_extent, cfg.strength, cfg.spread, **kw)
    reset_t = jt.linear(s / cfg.asymmetry, cfg.spread, reset=True, **kw)
    return set_t, reset_t, s
