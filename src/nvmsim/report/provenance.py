"""The report's provenance: what produced the results, when, from which seeds and store,
and how long each run took."""

from __future__ import annotations

import datetime as dt
import statistics
from pathlib import Path

from nvmsim.report.rows import Row, Table, compact, distinct
from nvmsim.versions import versions

VERSION_KEYS = ("nvmsim", "torch", "numpy", "python", "commit")


def utc(timestamp: float) -> str:
    """A POSIX time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(s: float) -> str:
    return f"{s:.3g} s" if s < 120 else f"{s / 60:.1f} min"


def provenance_table(
    rows: list[Row], store_path: str | Path | None = None, now: float | None = None
) -> Table:
    """Setting/value lines: the versions and commit(s) that ran the runs, the study seed(s),
    the store, when the runs ran, their wall times, and this report's own versions and date."""
    body: list[list[str]] = []
    stored = [r["versions"] for r in rows if isinstance(r.get("versions"), dict)]
    for key in VERSION_KEYS:
        values = distinct(v.get(key) for v in stored if v.get(key))
        if values:
            body.append([f"{key} (runs)", compact(values, most=3)])
    seeds = [r["config"]["seed"] for r in rows if isinstance(r.get("config"), dict)
             and "seed" in r["config"]]  # fmt: skip
    if seeds:
        body.append(["study seed", compact(seeds)])
    if store_path is not None:
        body.append(["result store", str(Path(store_path).resolve())])
    started = [r["started"] for r in rows if "started" in r]
    if started:
        body.append(["runs ran", f"{utc(min(started))} to {utc(max(started))}"])
    took = [r["seconds"] for r in rows if "seconds" in r]
    if took:
        spread = (f"min {_seconds(min(took))}, median {_seconds(statistics.median(took))}, "
                  f"max {_seconds(max(took))}")  # fmt: skip
        body.append(["wall time per run (evaluation; models train once, cached)", spread])
        body.append(["wall time, all runs", f"{_seconds(sum(took))} over {len(took)} runs"])
    mine = versions()
    body.append(["report by", ", ".join(f"{k} {mine[k]}" for k in VERSION_KEYS if k in mine)])
    body.append(["report date", utc(dt.datetime.now(dt.UTC).timestamp() if now is None else now)])
    return ["field", "value"], body
