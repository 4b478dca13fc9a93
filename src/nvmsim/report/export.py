"""Runs as a flat table (CSV or Parquet) for other tools: one line per run, fractions in
percent with the unit in the column name (``accuracy_pct``), like the report."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from nvmsim.files import atomic_open, atomic_write
from nvmsim.report.labels import as_percent
from nvmsim.report.rows import Row
from nvmsim.studies.store import metrics_problem

FORMATS = (".csv", ".parquet")


def flat_rows(rows: list[Row]) -> list[dict[str, Any]]:
    """One flat record per run: id, ``axis.<name>`` values, scalar metrics (fractions as
    ``<metric>_pct``), the run seed, start time (POSIX seconds) and wall time in seconds."""
    out = []
    for r in rows:
        rec: dict[str, Any] = {"run_id": r.get("run_id", "")}
        rec.update({f"axis.{k}": v for k, v in r["axes"].items()})
        scalars = {k: v for k, v in r["metrics"].items() if not isinstance(v, list | dict)}
        rec.update(as_percent(scalars))
        rec.update({k: r[k] for k in ("seed", "started", "seconds") if k in r})
        out.append(rec)
    return out


def check_target(path: str | Path) -> None:
    """Refuse an export ``path`` that :func:`export` could not write (its format, or Parquet
    without pyarrow), so a caller can check before writing anything else."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"{path}: export format must be .csv or .parquet")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: Parquet export needs pyarrow: pip install pyarrow") from None


def export(rows: list[Row], path: str | Path) -> Path:
    """Write runs as CSV (``.csv``) or Parquet (``.parquet``, needs pyarrow), atomically."""
    path = Path(path)
    check_target(path)
    for r in rows:  # before anything is written
        problem = metrics_problem(r["metrics"], required=())
        if problem:
            raise ValueError(f"{path}: run {r.get('run_id', '?')}: {problem}")
    flat = flat_rows(rows)
    cols = list(dict.fromkeys(k for rec in flat for k in rec))
    if path.suffix == ".csv":
        with atomic_open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(flat)
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{c: rec.get(c) for c in cols} for rec in flat]), buf)
    return atomic_write(path, buf.getvalue())
