"""Result stores that another program, a damaged disk or a hostile writer made: every bad row
or table is refused with one StoreError naming the store, the run and the field, and nothing
out of range reaches a report."""

import json
import sqlite3
import time

import pytest

from nvmsim.studies.store import APPLICATION_ID, Store, StoreError, row_problem

GOOD = {"accuracy": 0.9, "accuracy_std": 0.01, "accuracy_all": [0.89, 0.91], "loss": 0.3,
        "loss_std": 0.02, "software_accuracy": 0.95, "repeats": 2, "test_images": 360}  # fmt: skip
CONFIG = {"model": "mlp", "analog": {"device": {"read_noise": {"sigma": 0.1}}}, "seed": 3}


@pytest.fixture
def store(tmp_path):
    """A store holding one sound run ``r1`` of study ``s``; returns its path."""
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.add("s", "r1", {"sigma_syn": 0.1}, CONFIG, GOOD, time.time(), 1.5)
    return path


def _set(path, column, sql_value, *args):
    db = sqlite3.connect(path)
    db.execute(f"UPDATE runs SET {column} = {sql_value}", args)
    db.commit()
    db.close()


def _rows(path):
    with Store(path, readonly=True) as s:
        return s.rows("s")


def _refused(path, column, value, match):
    """Run r1 with ``value`` in ``column`` is refused, naming the store, run and problem."""
    _set(path, column, "?", value)
    with pytest.raises(StoreError, match=rf"s\.sqlite: run r1 of 's': {match}"):
        _rows(path)


def test_the_sound_store_reads_back(store):
    (row,) = _rows(store)
    assert row["metrics"] == GOOD and row["axes"] == {"sigma_syn": 0.1}


@pytest.mark.parametrize(
    "column, value, match",
    [
        ("metrics", "[" * 100_000 + "]" * 100_000, r"malformed row: metrics: nested too deeply"),
        ("axes", '{"a":' * 50_000 + "1" + "}" * 50_000, r"malformed row: axes: nested too deep"),
        ("metrics", "[1, 2]", r"malformed row: metrics: expected a JSON object, got list"),
        ("config", "{oops", r"malformed row: config: Expecting property name"),
        ("versions", "5", r"malformed row: versions: expected a JSON object, got int"),
        ("seed", "abc", r"malformed row: seed: invalid literal"),
        ("started", "abc", r"malformed row: started: could not convert"),
    ],
)
def test_malformed_fields_are_named(store, column, value, match):
    _refused(store, column, value, match)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"accuracy": "high"}, r"metric 'accuracy' holds 'high', not a number"),
        ({"accuracy": "NaN"}, r"metric 'accuracy' holds 'NaN', not a number"),
        ({"accuracy": {"a": 1}}, r"metric 'accuracy' holds an object, not a number"),
        ({"accuracy": [0.5]}, r"metric 'accuracy' holds a list, not a number"),
        ({"accuracy": True}, r"metric 'accuracy' holds True, not a number"),
        ({"accuracy": None}, r"metric 'accuracy' holds None, not a number"),
        ({"accuracy": 10**400}, r"metric 'accuracy' = 1000.*\.\.\. is out of range"),
        ({"accuracy": 1e308}, r"metric 'accuracy' = 1e\+308 is out of range"),
        ({"accuracy": 1.5}, r"metric 'accuracy' = 1\.5 is not a fraction in \[0, 1\]"),
        ({"accuracy": -0.1}, r"metric 'accuracy' = -0\.1 is not a fraction in \[0, 1\]"),
        ({"software_accuracy": 2.0}, r"metric 'software_accuracy' = 2\.0 is not a fraction"),
        ({"accuracy_std": -0.01}, r"metric 'accuracy_std' = -0\.01 is out of range for a spread"),
        ({"accuracy_all": [[1, 2]]}, r"metric 'accuracy_all' holds a list, not a number"),
        ({"accuracy_all": [0.5, 7]}, r"metric 'accuracy_all' = 7 is not a fraction"),
        ({"loss": 1e200}, r"metric 'loss' = 1e\+200 is out of range"),
        ({"repeats": 0}, r"metric 'repeats' = 0 is not a count of at least 1"),
        ({"repeats": 2.5}, r"metric 'repeats' = 2\.5 is not a count"),
        ({"test_images": -1}, r"metric 'test_images' = -1 is not a count"),
    ],
)
def test_metrics_must_be_finite_numbers_in_range(store, change, match):
    _refused(store, "metrics", json.dumps({**GOOD, **change}), match)


@pytest.mark.parametrize(
    "metrics, match",
    [({}, r"metrics: no 'accuracy' metric \(none stored\)"),
     ({"loss": 1.0}, r"metrics: no 'accuracy' metric$")],
)  # fmt: skip
def test_rows_without_their_metrics_are_refused(store, metrics, match):
    _refused(store, "metrics", json.dumps(metrics), match)


@pytest.mark.parametrize(
    "axes, match",
    [
        ({"sigma_syn": "abc"}, r"axis 'sigma_syn': 'abc' where the run's config holds the "
                               r"number 0\.1"),
        ({"sigma_syn": [1, 2]}, r"axis 'sigma_syn': \[1, 2\] where the run's config holds"),
        ({"sigma_syn": None}, r"axis 'sigma_syn': None where the run's config holds"),
        ({"kwargs.sizes": [[[[[[[[[[1]]]]]]]]]]}, r"axis 'kwargs.sizes': nested more than 8"),
        ({"x": 10**30}, r"axis 'x': integer 1000.* is out of range"),
    ],
)  # fmt: skip
def test_axis_values_are_checked(store, axes, match):
    _refused(store, "axes", json.dumps(axes), match)


@pytest.mark.parametrize(
    "axes",
    [{"sigma_syn": 0}, {"sigma_syn": "0.1"}, {"kwargs.sizes": [64, 10]}, {"zzz": [1, 2]},
     {"analog.device": {"preset": "pcm"}}, {}],
)  # fmt: skip
def test_legitimate_axis_values_are_read(store, axes):
    _set(store, "axes", "?", json.dumps(axes))
    assert _rows(store)[0]["axes"] == axes


@pytest.mark.parametrize(
    "column, value, match",
    [
        ("started", 1e308, r"started = 1e\+308 is not a time since 1970"),
        ("started", -5.0, r"started = -5\.0 is not a time since 1970"),
        ("seconds", -1e308, r"seconds = -1e\+308 is not a wall time"),
        ("seconds", float("inf"), r"seconds = inf is not a wall time"),
        ("seed", float("inf"), r"malformed row: seed: cannot convert float infinity"),
    ],
)
def test_times_and_seed_must_be_in_range(store, column, value, match):
    _refused(store, column, value, match)


def test_only_the_asked_runs_are_checked(store):
    with Store(store) as s:
        s.add("s", "r2", {"sigma_syn": 0.2}, CONFIG, GOOD, time.time(), 1.0)
        s.db.execute("UPDATE runs SET metrics = '{oops' WHERE run_id = 'r2'")
        s.db.commit()
        assert [r["run_id"] for r in s.rows("s", ["r1"])] == ["r1"]
        with pytest.raises(StoreError, match="run r2 of 's': malformed row"):
            s.rows("s")


def test_row_problem_of_a_sound_row_is_none():
    row = {"axes": {"sigma_syn": 0.1}, "config": CONFIG, "metrics": GOOD, "versions": {},
           "seed": 3, "started": 0.0, "seconds": 0.0}  # fmt: skip
    assert row_problem(row) is None


def _ours(path, sql, version=2):
    db = sqlite3.connect(path)
    db.executescript(sql)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    "sql, version, match",
    [
        ("CREATE TABLE runs (run_id TEXT, study TEXT); CREATE TABLE claims (a);", 2,
         r"table 'runs' has columns \(run_id, study\), expected \(run_id, study, axes"),
        ("", 2, r"table 'runs' is missing"),
        ("CREATE TABLE zzz (a);", 0, r"no format version"),
    ],
)  # fmt: skip
def test_store_with_our_id_and_wrong_tables_is_refused_untouched(tmp_path, sql, version, match):
    path = tmp_path / "w.sqlite"
    _ours(path, sql, version)
    before = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError, match=rf"w\.sqlite: a damaged nvmsim result store.*{match}"):
            Store(path, readonly=readonly)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.sqlite"]


def test_wrong_claims_columns_and_key_are_refused(store):
    db = sqlite3.connect(store)
    db.executescript("DROP TABLE claims; CREATE TABLE claims (study, run_id, owner, expires);")
    db.close()
    with pytest.raises(StoreError, match=r"table 'claims' is not keyed by \(study, run_id\)"):
        Store(store)
    db = sqlite3.connect(store)
    db.executescript("DROP TABLE claims; CREATE TABLE claims (study, run_id, who, expires);")
    db.close()
    with pytest.raises(StoreError, match=r"table 'claims' has columns \(study, run_id, who,"):
        Store(store, readonly=True)


def test_sqlite_errors_on_writing_are_store_errors(store):
    with Store(store) as s, Store(store) as other:
        other.db.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        s.db.execute("PRAGMA busy_timeout = 0")
        with pytest.raises(StoreError, match=r"s\.sqlite: cannot write the result store: .*lock"):
            s.claim("s", "r9", "A", ttl=60)
        with pytest.raises(StoreError, match="cannot write the result store"):
            s.add("s", "r9", {}, {}, {"accuracy": 0.5}, time.time(), 0.1)
        with pytest.raises(StoreError, match="cannot write the result store"):
            s.renew("A", 60)
        with pytest.raises(StoreError, match="cannot write the result store"):
            s.release("A")
        other.db.rollback()
        assert s.claim("s", "r9", "A", ttl=60)  # and the store is usable again
