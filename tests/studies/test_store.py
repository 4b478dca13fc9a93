"""The result store: keyed by (study, run), never modifies a file it did not write, migrates
stores of the previous format without losing a row, and leases runs to processes."""

import json
import sqlite3
import time

import pytest

from nvmsim.studies.store import APPLICATION_ID, FORMAT_VERSION, NoStoreYet, Store, StoreError

OLD_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, study TEXT NOT NULL, axes TEXT NOT NULL, config TEXT NOT NULL,
    metrics TEXT NOT NULL, seed INTEGER NOT NULL, versions TEXT NOT NULL, started REAL NOT NULL,
    seconds REAL NOT NULL
);
CREATE INDEX runs_study ON runs(study);
"""


def _add(store, study, run_id, acc):
    store.add(study, run_id, {"x": 1}, {"seed": 3}, {"accuracy": acc}, time.time(), 0.1)


def _snapshot(path):
    return path.read_bytes(), sorted(p.name for p in path.parent.iterdir())


def test_two_studies_sharing_a_run_id_keep_their_rows(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        _add(s, "a", "r1", 0.5)
        _add(s, "b", "r1", 0.9)  # the same point in another study
        _add(s, "a", "r1", 0.6)  # a re-run of a: replaces a's row only
        assert [r["metrics"]["accuracy"] for r in s.rows("a")] == [0.6]
        assert [r["metrics"]["accuracy"] for r in s.rows("b")] == [0.9]


def test_old_store_is_migrated_without_loss(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    rows = [
        (f"r{i}", study, "{}", '{"seed": 0}', json.dumps({"accuracy": i / 10}), 0, "{}", i, 1.0)
        for i, study in enumerate(["a", "a", "b"])
    ]
    db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    with Store(path, readonly=True) as s:  # reading does not migrate
        assert s.version == 1 and len(s.rows("a")) == 2
    with Store(path) as s:
        assert [r["run_id"] for r in s.rows("a")] == ["r0", "r1"]
        assert [r["metrics"]["accuracy"] for r in s.rows("b")] == [0.2]
        _add(s, "b", "r0", 0.7)  # now possible: the key is (study, run id)
        assert len(s.rows("a")) == 2 and len(s.rows("b")) == 2
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
    db.close()


@pytest.mark.parametrize(
    "schema, match",
    [
        ("CREATE TABLE people (name TEXT);", "another program.*tables people"),
        ("CREATE TABLE runs (id INTEGER, what TEXT);", "another program.*tables runs"),
        ("PRAGMA application_id = 1234; CREATE TABLE t (x);", "application id 0x4d2"),
    ],
)
def test_foreign_database_is_refused_untouched(tmp_path, schema, match):
    path = tmp_path / "theirs.sqlite"
    db = sqlite3.connect(path)
    db.executescript(schema)
    db.commit()
    db.close()
    before = _snapshot(path)
    for readonly in (False, True):
        with pytest.raises(StoreError, match=match):
            Store(path, readonly=readonly)
    assert _snapshot(path) == before  # no tables added, no WAL switch, no -wal/-shm files
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.close()


def test_non_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("not a database\n")
    with pytest.raises(StoreError, match="notes.sqlite: not an SQLite file"):
        Store(path)
    assert path.read_text() == "not a database\n"


def test_non_finite_and_malformed_rows(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        with pytest.raises(StoreError, match="run r1 of 'a': metric 'accuracy' = nan"):
            _add(s, "a", "r1", float("nan"))
        assert s.rows("a") == []
        _add(s, "a", "r2", 0.5)
        s.db.execute("UPDATE runs SET metrics = '{broken' WHERE run_id = 'r2'")
        s.db.commit()
        with pytest.raises(StoreError, match=r"s.sqlite: run r2 of 'a': malformed row"):
            s.rows("a")


def test_store_in_an_unwritable_place_is_one_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create its folder"):
        Store(blocker / "sub" / "s.sqlite")


def test_claims_split_work_and_expire(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as a, Store(path) as b:
        assert a.claim("st", "r1", "A", ttl=60)
        assert not b.claim("st", "r1", "B", ttl=60)  # held by a live owner
        assert b.claim("st", "r2", "B", ttl=60)
        assert a.claimed_by_others("st", "A") == {"r2"}
        _add(a, "st", "r1", 0.5)  # storing drops the claim; a stored run is never claimed
        assert not b.claim("st", "r1", "B", ttl=60)
        assert a.claim("st", "r3", "A", ttl=0.05)
        time.sleep(0.1)
        assert b.claim("st", "r3", "B", ttl=60)  # A's lease expired: taken over
        b.release("B")
        assert a.claimed_by_others("st", "A") == set()


def test_store_being_created_reads_as_none_yet(tmp_path):
    """Another process has just created the file (WAL on, schema not yet committed): a
    reader sees no store yet, and says so with its own error type, not a foreign file."""
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN IMMEDIATE")  # the creator's schema transaction, still open
    with pytest.raises(NoStoreYet, match="no result store here yet"):
        Store(path, readonly=True)
    db.rollback()
    db.close()
    with Store(path) as s:  # and the creator's (or anyone's) write still makes it a store
        _add(s, "a", "r1", 0.5)
    with Store(path, readonly=True) as s:
        assert s.done_ids("a") == {"r1"}


def test_a_store_locked_while_another_process_sets_it_up_is_waited_for(tmp_path, monkeypatch):
    """Two processes creating one store can see "database is locked" at once, without
    SQLite's busy wait (the switch to WAL): opening retries until the busy deadline, then
    says so in one line."""
    import nvmsim.studies.store as store_module

    real, calls = Store._set_up, []

    def locked_once(self, version):
        calls.append(version)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        real(self, version)

    monkeypatch.setattr(Store, "_set_up", locked_once)
    with Store(tmp_path / "a.sqlite") as s:
        _add(s, "st", "r1", 0.5)
    assert len(calls) == 2

    def always_locked(self, version):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(Store, "_set_up", always_locked)
    monkeypatch.setattr(store_module, "BUSY_SECONDS", 0.2)
    with pytest.raises(StoreError, match=r"b\.sqlite: cannot write the result store: .*locked"):
        Store(tmp_path / "b.sqlite")
