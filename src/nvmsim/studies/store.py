"""SQLite result store: one row per finished run, written atomically.

WAL mode and one transaction per result mean a ``kill -9`` loses at most the runs in flight
and never corrupts what is stored; a re-run skips every run already present. Runs are keyed by
(study, run id), so studies can share a store. A file is checked to be an nvmsim store before
anything is written to it: a database of another program is refused untouched.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nvmsim.versions import versions

FORMAT_VERSION = 2  # 1: runs keyed by run id alone (before studies could share a store)
APPLICATION_ID = 0x6E766D73  # "nvms", in the SQLite header of every store this writes

RUNS_COLUMNS = ("run_id", "study", "axes", "config", "metrics", "seed", "versions", "started",
                "seconds")  # fmt: skip
CLAIMS_COLUMNS = ("study", "run_id", "owner", "expires")
# Each table's columns in order (rows are inserted by position) and its primary key.
TABLES = {
    "runs": (RUNS_COLUMNS, ("study", "run_id")),
    "claims": (CLAIMS_COLUMNS, ("study", "run_id")),
}
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
            info = {t: db.execute(f"PRAGMA table_info({t})").fetchall() for t in TABLES}
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        if "not a database" in str(err):
            raise StoreError(f"{path}: not an SQLite file, so not an nvmsim result store") from None
        raise StoreError(f"{path}: not a usable nvmsim result store: {err}") from None
    runs_cols = tuple(r[1] for r in info["runs"])
    if app_id == APPLICATION_ID:
        if version > FORMAT_VERSION:
            raise StoreError(
                f"{path}: store format {version} is newer than this nvmsim reads "
                f"({FORMAT_VERSION}); upgrade nvmsim"
            )
        problem = _schema_problem(info, version)
        if problem:
            raise StoreError(f"{path}: a damaged nvmsim result store (format {version}): {problem}")
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


def _schema_problem(info: dict[str, list[tuple]], version: int) -> str | None:
    """What is wrong with the tables of a store that carries nvmsim's application id (None:
    nothing). ``info`` holds ``PRAGMA table_info`` of each table in TABLES."""
    if version < 1:
        return "no format version"
    # Format 1 had no claims table; it gets one when the store is opened for writing.
    for table, (columns, key) in TABLES.items():
        rows = info[table]
        if not rows:
            if table == "claims" and version == 1:
                continue
            return f"table {table!r} is missing"
        have = tuple(r[1] for r in rows)
        if have != columns:
            got, want = ", ".join(have), ", ".join(columns)
            return f"table {table!r} has columns ({got}), expected ({want})"
        pk = tuple(r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5]))
        if version >= 2 and set(pk) != set(key):
            return f"table {table!r} is not keyed by ({', '.join(key)})"
    return None


#: how long a store waits for another process's lock before it gives up
BUSY_SECONDS = 30.0


def _locked(err: sqlite3.Error) -> bool:
    return isinstance(err, sqlite3.OperationalError) and "locked" in str(err)


def _reader(path: Path) -> sqlite3.Connection:
    """A connection that this module only reads through. Neither SQLite's ``mode=ro`` nor
    ``query_only``: both fail with I/O errors on a WAL store that another process writes,
    as they may not recover its WAL index."""
    return sqlite3.connect(path, timeout=BUSY_SECONDS, check_same_thread=False)


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
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                self._set_up(version)
                break
            except sqlite3.Error as err:
                self.db.rollback()
                # Switching a new file to WAL while another process does the same can fail
                # at once, without SQLite's busy wait: try again until the same deadline.
                if _locked(err) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    try:
                        version = _inspect(self.path)  # another process may have migrated it
                    except StoreError:
                        self.db.close()
                        raise
                    continue
                self.db.close()
                raise StoreError(f"{self.path}: cannot write the result store: {err}") from None
        self.version = FORMAT_VERSION

    def _set_up(self, version: int | None) -> None:
        """WAL mode, the format-1 migration, the schema and the format marks."""
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if version == 1:
            self.db.executescript(f"BEGIN IMMEDIATE;{_MIGRATE_1}COMMIT;")
        self.db.executescript(
            f"BEGIN IMMEDIATE;{SCHEMA}PRAGMA application_id = {APPLICATION_ID};"
            f"PRAGMA user_version = {FORMAT_VERSION};COMMIT;"
        )

    def _connect(self, target: str) -> sqlite3.Connection:
        try:
            return sqlite3.connect(target, timeout=BUSY_SECONDS, check_same_thread=False)
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
        with self._writing():  # one transaction: the row is either wholly there or not at all
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            self.db.execute("DELETE FROM claims WHERE study = ? AND run_id = ?", (study, run_id))

    def rows(self, study: str, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Stored runs of ``study`` (optionally only ``run_ids``) as dicts with parsed JSON.
        Each row is checked as it is read (:func:`row_problem`): a row that another program
        or a damaged file wrote raises StoreError naming the store, the run and the field."""
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
            where = f"{self.path}: run {run_id} of {study!r}"
            row: dict[str, Any] = {"run_id": run_id}
            fields = {"axes": axes, "config": config, "metrics": metrics, "versions": vers}
            for field, value in fields.items():
                try:
                    row[field] = _table(value)
                except RecursionError:
                    problem = f"{field}: nested too deeply"
                    raise StoreError(f"{where}: malformed row: {problem}") from None
                except (ValueError, TypeError) as err:
                    raise StoreError(f"{where}: malformed row: {field}: {err}") from None
            for field, value, kind in (("seed", seed, int), ("started", started, float),
                                       ("seconds", seconds, float)):  # fmt: skip
                try:
                    row[field] = kind(value)
                except (ValueError, TypeError, OverflowError) as err:
                    raise StoreError(f"{where}: malformed row: {field}: {err}") from None
            bad = non_finite(row["metrics"])
            if bad:
                raise StoreError(f"{where}: {bad} is not finite")
            problem = row_problem(row)
            if problem:
                raise StoreError(f"{where}: {problem}")
            out.append(row)
        return out

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One transaction (committed at the end of the block, rolled back on an error);
        SQLite's errors become StoreError naming the file."""
        try:
            with self.db:
                yield
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot write the result store: {_brief(err)}") from None

    def _query(self, sql: str, args: tuple) -> list[tuple]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot read the result store: {_brief(err)}") from None

    # Claims: a process leases the runs it computes, so that several share the work.
    def claim(self, study: str, run_id: str, owner: str, ttl: float) -> bool:
        """Lease ``run_id`` to ``owner`` for ``ttl`` seconds unless it is stored or another
        live owner holds it; an expired lease (its owner died) is taken over."""
        now = time.time()
        with self._writing():
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
        with self._writing():
            self.db.execute(
                "UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + ttl, owner)
            )

    def release(self, owner: str, study: str | None = None, run_id: str | None = None) -> None:
        """Drop ``owner``'s claim on one run, or all of its claims."""
        with self._writing():
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


def _brief(err: Exception) -> str:
    """An SQLite error in one short line (a decoding error quotes the whole bad value)."""
    text = " ".join(str(err).split())
    return text if len(text) <= 160 else f"{text[:157]}..."


def _table(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


# Bounds of what a stored row may hold, so that everything the report computes from it (sums,
# percentages, spreads, dates) stays finite.
MAX_DEPTH = 32  # nesting of a config (a few levels in practice)
AXIS_DEPTH = 8  # nesting of one axis value (a list, or a table of settings)
MAX_METRIC = 1e100  # magnitude of any metric
MAX_INT = 2**63  # magnitude of an integer axis value (TOML integers are 64-bit)
LATEST = 253402300799.0  # 9999-12-31 23:59:59 UTC, the last time a date shows
MAX_SECONDS = 1e9  # wall time of one run (about 30 years)
# Metrics that are fractions (accuracies, 0..1; a gain from retraining, -1..1), with the
# ``_std`` and ``_all`` of each: the report shows them in percent.
FRACTIONS = {"accuracy": (0.0, 1.0), "accuracy_before": (0.0, 1.0), "train_accuracy": (0.0, 1.0),
             "software_accuracy": (0.0, 1.0), "improvement": (-1.0, 1.0)}  # fmt: skip
COUNTS = {"repeats": 1, "test_images": 0, "train_images": 0, "epochs": 0}  # key -> minimum
SCALARS = {*FRACTIONS, *COUNTS, "loss", "software_loss"}  # one number each (and their _std)
REQUIRED = ("accuracy",)  # every scenario stores it (the run loop shows it per run)
_SLACK = 1e-9  # rounding in a mean of fractions


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _json_problem(value: Any, depth: int) -> str | None:
    """What makes ``value`` more than a plain JSON value nested at most ``depth`` deep
    (None: nothing); walked without recursion."""
    todo = [(value, 0)]
    while todo:
        v, level = todo.pop()
        if level > depth:
            return f"nested more than {depth} deep"
        if isinstance(v, dict):
            todo.extend((x, level + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, level + 1) for x in v)
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) >= MAX_INT:
            return f"integer {_short(v)} is out of range"
        elif not (v is None or isinstance(v, str | bool | int | float)):
            return f"a {type(v).__name__}"
    return None


def metric_problem(key: str, value: Any) -> str | None:
    """What is wrong with one stored metric (None: nothing): a finite real number (or a
    flat list of them) in the range its kind allows."""
    base = key.removesuffix("_std").removesuffix("_all")
    if isinstance(value, list) and key.removesuffix("_std") in SCALARS:
        return f"metric {key!r} holds a list, not a number"
    for v in value if isinstance(value, list) else [value]:
        if not _is_number(v):
            what = ("a list" if isinstance(v, list) else "an object" if isinstance(v, dict)
                    else "text" if isinstance(v, str) and len(v) > 20 else repr(v))  # fmt: skip
            return f"metric {key!r} holds {what}, not a number"
        if abs(v) > MAX_METRIC or (isinstance(v, float) and not math.isfinite(v)):
            return f"metric {key!r} = {_short(v)} is out of range"
        lo, hi = FRACTIONS.get(base, (None, None))
        if key.endswith("_std"):
            if v < 0 or (hi is not None and v > (hi - lo) + _SLACK):
                return f"metric {key!r} = {_short(v)} is out of range for a spread"
        elif lo is not None and not lo - _SLACK <= v <= hi + _SLACK:
            return f"metric {key!r} = {_short(v)} is not a fraction in [{lo:g}, {hi:g}]"
        elif key in COUNTS and (v != int(v) or v < COUNTS[key]):
            return f"metric {key!r} = {_short(v)} is not a count of at least {COUNTS[key]}"
    return None


def metrics_problem(metrics: dict[str, Any], required: Iterable[str] = REQUIRED) -> str | None:
    """What is wrong with a run's metrics (None: nothing): a ``required`` one missing, or
    the first that :func:`metric_problem` refuses."""
    missing = [k for k in required if k not in metrics]
    if missing:
        return f"metrics: no {missing[0]!r} metric" + (" (none stored)" if not metrics else "")
    return next((p for k, v in metrics.items() if (p := metric_problem(k, v))), None)


def _numeric(value: Any) -> bool:
    """Text that reads as a number (a study may sweep "1e-3" where the config takes 0.001)."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 24 else f"{text[:20]}..."


def row_problem(row: dict[str, Any]) -> str | None:
    """What is wrong with a stored run (a :meth:`Store.rows` dict), naming the field; None
    when it is sound: axis values plain JSON (numbers, text, lists or tables of them), a
    number where the run's config holds one, every metric a finite number in the range of
    its kind (accuracies fractions in [0, 1]), and times that show as dates."""
    for name, value in row["axes"].items():
        problem = _json_problem(value, AXIS_DEPTH)
        if problem:
            return f"axis {name!r}: {problem}"
        problem = _axis_vs_config(name, value, row["config"])
        if problem:
            return f"axis {name!r}: {problem}"
    for field in ("config", "versions"):
        problem = _json_problem(row[field], MAX_DEPTH)
        if problem:
            return f"{field}: {problem}"
    problem = metrics_problem(row["metrics"])
    if problem:
        return problem
    if abs(row["seed"]) >= 2**64:
        return f"seed = {_short(row['seed'])} is out of range"
    if not 0 <= row["started"] <= LATEST:
        return f"started = {_short(row['started'])} is not a time since 1970"
    if not 0 <= row["seconds"] <= MAX_SECONDS:
        return f"seconds = {_short(row['seconds'])} is not a wall time"
    return None


def _axis_vs_config(name: str, value: Any, config: dict[str, Any]) -> str | None:
    """A number where the run's resolved config holds a number on the axis's path (the
    value itself may differ: ``--quick`` caps some)."""
    from nvmsim.studies.schema import AXES, PATH_ROOTS

    paths = AXES.get(name) or ((name,) if name.startswith(PATH_ROOTS) else ())
    for path in paths:
        node: Any = config
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if _is_number(node) and not isinstance(value, int | float) and not _numeric(value):
            return f"{_short(value)} where the run's config holds the number {_short(node)}"
    return None


def non_finite(metrics: dict[str, Any]) -> str | None:
    """The first metric (or element of a list metric) that is not a finite number."""
    for key, value in metrics.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                return f"metric {key!r} = {v}"
    return None
