"""SQLite result store: one row per finished run, written atomically.

WAL mode and one transaction per result mean a ``kill -9`` loses at most the runs in flight
and never corrupts what is stored; a re-run skips every ``run_id`` already present.
"""

from __future__ import annotations

import csv
import json
import platform
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    axes TEXT NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    seed INTEGER NOT NULL,
    versions TEXT NOT NULL,
    started REAL NOT NULL,
    seconds REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_study ON runs(study);
"""


def versions() -> dict[str, str]:
    import numpy
    import torch

    from nvmsim import __version__

    return {
        "nvmsim": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


class StoreError(ValueError):
    """A result store that cannot be opened or used (names the file)."""


class Store:
    """Results of studies in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: not a usable nvmsim result store: {err}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def done_ids(self, study: str) -> set[str]:
        rows = self.db.execute("SELECT run_id FROM runs WHERE study = ?", (study,))
        return {r[0] for r in rows}

    def add(
        self,
        study: str,
        run_id: str,
        axes: dict[str, Any],
        config: dict[str, Any],
        metrics: dict[str, Any],
        started: float,
        seconds: float,
    ) -> None:
        with self.db:  # one transaction: the row is either wholly there or not at all
            self.db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id, study, json.dumps(axes), json.dumps(config), json.dumps(metrics),
                    int(config.get("seed", 0)), json.dumps(versions()), started, seconds,
                ),
            )  # fmt: skip

    def rows(self, study: str, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Stored runs of ``study`` (optionally only ``run_ids``) as dicts with parsed JSON."""
        cur = self.db.execute(
            "SELECT run_id, axes, config, metrics, seed, versions, started, seconds "
            "FROM runs WHERE study = ? ORDER BY started",
            (study,),
        )
        wanted = None if run_ids is None else set(run_ids)
        out = []
        for run_id, axes, config, metrics, seed, vers, started, seconds in cur:
            if wanted is not None and run_id not in wanted:
                continue
            out.append({
                "run_id": run_id, "axes": json.loads(axes), "config": json.loads(config),
                "metrics": json.loads(metrics), "seed": seed, "versions": json.loads(vers),
                "started": started, "seconds": seconds,
            })  # fmt: skip
        return out


def flat_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat record per run: axes, then scalar metrics (lists are summarised elsewhere)."""
    out = []
    for r in rows:
        rec: dict[str, Any] = {"run_id": r["run_id"]}
        rec.update({f"axis.{k}": v for k, v in r["axes"].items()})
        rec.update({k: v for k, v in r["metrics"].items() if not isinstance(v, list | dict)})
        rec["seconds"] = r["seconds"]
        out.append(rec)
    return out


def export(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write runs as CSV (``.csv``) or Parquet (``.parquet``, needs pyarrow)."""
    path = Path(path)
    flat = flat_rows(rows)
    cols = sorted({k for rec in flat for k in rec}, key=lambda k: (k != "run_id", k))
    tmp = path.with_name(path.name + f".tmp{int(time.time() * 1e6)}")
    if path.suffix == ".csv":
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(flat)
    elif path.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError("Parquet export needs pyarrow: pip install pyarrow") from None
        table = pa.Table.from_pylist([{c: rec.get(c) for c in cols} for rec in flat])
        pq.write_table(table, tmp)
    else:
        raise ValueError(f"{path}: export format must be .csv or .parquet")
    tmp.replace(path)
    return path
