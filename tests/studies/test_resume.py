"""A study killed with SIGKILL and run again ends exactly as an uninterrupted run."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

from nvmsim.studies.store import Store
from nvmsim.studies.study import plan

SWEEP = "sigma_syn = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35]\nsigma_te = [0.0, 0.1]"


def _cmd(study, store):
    return [sys.executable, "-m", "nvmsim.cli", "run", str(study), "--store", str(store), "--quiet"]


def _count(store):
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _metrics(store, p):
    with Store(store) as s:
        rows = s.rows(p.study_key)
    return {r["run_id"]: r["metrics"] for r in rows}


def test_sigkill_midway_then_rerun_matches_uninterrupted(write_study, tmp_path):
    study = write_study(sweep=SWEEP, repeats=40)
    p = plan(study)
    total = len(p.runs)
    killed = tmp_path / "killed" / "store.sqlite"
    proc = subprocess.Popen(_cmd(study, killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _count(killed) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = _count(killed)
    assert 2 <= stored < total, f"kill landed at {stored} of {total} runs"
    rerun = subprocess.run(_cmd(study, killed), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{total - stored} runs done now, {stored} already stored" in rerun.stdout

    clean = tmp_path / "clean" / "store.sqlite"
    done = subprocess.run(_cmd(study, clean), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    a, b = _metrics(killed, p), _metrics(clean, p)
    assert set(a) == set(b) == {r.run_id for r in p.runs}
    assert a == b
