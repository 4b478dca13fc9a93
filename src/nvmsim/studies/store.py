"""SQLite result store: one row per finished run, written atomically.

WAL mode and one transaction per result mean a ``kill -9`` loses at most the runs in flight
and never corrupts what is stored; a re-run skips every run already present. Runs are keyed by
(study, run id), so studies can share a store. A file is checked to be an nvmsim store before
anything is written to it: a database of another program is refused untouched.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nvmsim.versions import versions

FORMAT_VERSION = 2  # 1: runs keyed by run id alone (before studies could share a store)
APPLICATION_ID = 0x6E766D73  # "nvms", in the SQLite header of every store this writes

RUNS_COLUMNS = ("run_id", "study", "axes", "config", "metrics", "seed", "versions", "started",
                "seconds")  # fmt: skip
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT NOT NULL,
    study TEXT NOT NULL,
    axes TEXT NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    seed INTEGER NOT NULL,
    versions TEXT NOT NULL,
    started REAL NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (study, run_id)
);
CREATE INDEX IF NOT EXISTS runs_study ON runs(study);
CREATE TABLE IF NOT EXISTS claims (
    study TEXT NOT NULL,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (study, run_id)
);
"""
_OURS = {"runs", "claims"}


class StoreError(ValueError):
    """A result store that cannot be opened or used (names the file)."""


class NoStoreYet(StoreError):
    """Reading a store that does not exist yet (or that another process is creating now)."""


def _inspect(path: Path) -> int | None:
    """The format version of the store at ``path`` (None: no store there yet), read without
    writing anything; raises StoreError for a file that is not an nvmsim store."""
    if not path.exists():
        return None
    if not path.is_file():
        raise StoreError(f"{path}: not a file")
    if path.stat().st_size == 0:
        return None  # an empty file: SQLite treats it as a new database
    # Only SQLite opens the file: closing a descriptor of our own would drop the POSIX locks
    # that this process's open connections hold on it (and let others delete its WAL).
    try:
        db = _reader(path)
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                r[0]
                for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if not r[0].startswith("sqlite_")
            }
            runs_cols = tuple(r[1] for r in db.execute("PRAGMA table_info(runs)"))
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        if "not a database" in str(err):
            raise StoreError(f"{path}: not an SQLite file, so not an nvmsim result store") from None
        raise StoreError(f"{path}: not a usable nvmsim result store: {err}") from None
    if app_id == APPLICATION_ID:
        if version > FORMAT_VERSION:
            raise StoreError(
                f"{path}: store format {version} is newer than this nvmsim reads "
                f"({FORMAT_VERSION}); upgrade nvmsim"
            )
        return version
    if app_id == 0 and not tables:
        return None  # an empty database: nothing of anyone's to lose
    if app_id == 0 and tables == {"runs"} and runs_cols == RUNS_COLUMNS:
        return 1  # written by nvmsim before stores carried an application id
    owner = f"application id {app_id:#x}" if app_id else "tables " + ", ".join(sorted(tables))
    raise StoreError(
        f"{path}: an SQLite database of another program ({owner}); refusing to use it as a "
        "result store (give --store a new file)"
    )


def _reader(path: Path) -> sqlite3.Connection:
    """A connection that this module only reads through. Neither SQLite's ``mode=ro`` nor
    ``query_only``: both fail with I/O errors on a WAL store that another process writes,
    as they may not recover its WAL index."""
    return sqlite3.connect(path, timeout=30, check_same_thread=False)


_MIGRATE_1 = """
CREATE TABLE runs_v2 (
    run_id TEXT NOT NULL, study TEXT NOT NULL, axes TEXT NOT NULL, config TEXT NOT NULL,
    metrics TEXT NOT NULL, seed INTEGER NOT NULL, versions TEXT NOT NULL, started REAL NOT NULL,
    seconds REAL NOT NULL, PRIMARY KEY (study, run_id)
);
INSERT INTO runs_v2 SELECT run_id, study, axes, config, metrics, seed, versions, started, seconds
    FROM runs;
DROP INDEX IF EXISTS runs_study;
DROP TABLE runs;
ALTER TABLE runs_v2 RENAME TO runs;
"""


class Store:
    """Results of studies in one SQLite file.

    ``readonly`` opens an existing store for reading only (``status``, ``report``): nothing
    is created, migrated or switched to WAL.
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        version = _inspect(self.path)
        if readonly:
            if version is None:
                raise NoStoreYet(f"{self.path}: no result store here yet")
            try:
                self.db = _reader(self.path)
            except sqlite3.Error as err:
                raise StoreError(f"{self.path}: cannot open the result store: {err}") from None
            self.version = version
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(
                f"{self.path}: cannot create its folder: {err.strerror or err}"
            ) from None
        self.db = self._connect(str(self.path))
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if version == 1:
                self.db.executescript(f"BEGIN IMMEDIATE;{_MIGRATE_1}COMMIT;")
            self.db.executescript(
                f"BEGIN IMMEDIATE;{SCHEMA}PRAGMA application_id = {APPLICATION_ID};"
                f"PRAGMA user_version = {FORMAT_VERSION};COMMIT;"
            )
        except sqlite3.Error as err:
            self.db.rollback()
            self.db.close()
            raise StoreError(f"{self.path}: cannot write the result store: {err}") from None
        self.version = FORMAT_VERSION

    def _connect(self, target: str) -> sqlite3.Connection:
        try:
            return sqlite3.connect(target, timeout=30, check_same_thread=False)
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot open the result store: {err}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def done_ids(self, study: str) -> set[str]:
        rows = self._query("SELECT run_id FROM runs WHERE study = ?", (study,))
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
        """Store one finished run (and drop its claim) in one transaction; a result with a
        non-finite number is refused, so nothing non-finite is ever stored."""
        bad = non_finite(metrics)
        if bad:
            raise StoreError(f"{self.path}: run {run_id} of {study!r}: {bad} is not finite")
        row = (
            run_id, study, json.dumps(axes), json.dumps(config),
            json.dumps(metrics, allow_nan=False), int(config.get("seed", 0)),
            json.dumps(versions()), started, seconds,
        )  # fmt: skip
        with self.db:  # one transaction: the row is either wholly there or not at all
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            self.db.execute("DELETE FROM claims WHERE study = ? AND run_id = ?", (study, run_id))

    def rows(self, study: str, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Stored runs of ``study`` (optionally only ``run_ids``) as dicts with parsed JSON."""
        cur = self._query(
            "SELECT run_id, axes, config, metrics, seed, versions, started, seconds "
            "FROM runs WHERE study = ? ORDER BY started",
            (study,),
        )
        wanted = None if run_ids is None else set(run_ids)
        out = []
        for run_id, axes, config, metrics, seed, vers, started, seconds in cur:
            if wanted is not None and run_id not in wanted:
                continue
            try:
                row = {
                    "run_id": run_id, "axes": _table(axes), "config": _table(config),
                    "metrics": _table(metrics), "seed": int(seed), "versions": _table(vers),
                    "started": float(started), "seconds": float(seconds),
                }  # fmt: skip
            except (ValueError, TypeError) as err:
                raise StoreError(
                    f"{self.path}: run {run_id} of {study!r}: malformed row: {err}"
                ) from None
            bad = non_finite(row["metrics"])
            if bad:
                raise StoreError(f"{self.path}: run {run_id} of {study!r}: {bad} is not finite")
            out.append(row)
        return out

    def _query(self, sql: str, args: tuple) -> list[tuple]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot read the result store: {err}") from None

    # Claims: a process leases the runs it computes, so that several share the work.
    def claim(self, study: str, run_id: str, owner: str, ttl: float) -> bool:
        """Lease ``run_id`` to ``owner`` for ``ttl`` seconds unless it is stored or another
        live owner holds it; an expired lease (its owner died) is taken over."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if self.db.execute(
                "SELECT 1 FROM runs WHERE study = ? AND run_id = ?", (study, run_id)
            ).fetchone():
                return False
            held = self.db.execute(
                "SELECT owner, expires FROM claims WHERE study = ? AND run_id = ?", (study, run_id)
            ).fetchone()
            if held and held[0] != owner and held[1] > now:
                return False
            self.db.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                (study, run_id, owner, now + ttl),
            )
        return True

    def renew(self, owner: str, ttl: float) -> None:
        with self.db:
            self.db.execute(
                "UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + ttl, owner)
            )

    def release(self, owner: str, study: str | None = None, run_id: str | None = None) -> None:
        """Drop ``owner``'s claim on one run, or all of its claims."""
        with self.db:
            if run_id is None:
                self.db.execute("DELETE FROM claims WHERE owner = ?", (owner,))
            else:
                self.db.execute(
                    "DELETE FROM claims WHERE study = ? AND run_id = ? AND owner = ?",
                    (study, run_id, owner),
                )

    def claimed_by_others(self, study: str, owner: str) -> set[str]:
        """Run ids of ``study`` that other live owners hold now."""
        rows = self._query(
            "SELECT run_id FROM claims WHERE study = ? AND owner != ? AND expires > ?",
            (study, owner, time.time()),
        )
        return {r[0] for r in rows}


def _table(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def non_finite(metrics: dict[str, Any]) -> str | None:
    """The first metric (or element of a list metric) that is not a finite number."""
    for key, value in metrics.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                return f"metric {key!r} = {v}"
    return None
