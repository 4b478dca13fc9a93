"""Several processes on one store split a study; a dead claimant's runs are taken over."""

import os
import re
import subprocess
import sys
import threading
import time

from nvmsim.studies.lease import Lease
from nvmsim.studies.store import Store
from nvmsim.studies.study import plan, run_plan


def test_held_runs_are_waited_for_and_expired_ones_taken_over(write_study, tmp_path):
    p = plan(write_study(sweep="sigma_syn = [0.0, 0.1, 0.2]"), store=tmp_path / "s.sqlite")
    ids = [r.run_id for r in p.runs]
    with Store(p.store_path) as s:
        s.claim(p.study_key, ids[0], "dead-process", ttl=-1)  # already expired
        s.claim(p.study_key, ids[1], "slow-process", ttl=1.5)  # alive, then dies
    t0 = time.perf_counter()
    counts = run_plan(p, progress=False)
    assert counts["ran"] == 3 and counts["failed"] == 0
    assert time.perf_counter() - t0 >= 1.0  # it waited for the live claim to lapse
    with Store(p.store_path) as s:
        assert s.done_ids(p.study_key) == set(ids)
        assert s.claimed_by_others(p.study_key, "nobody") == set()  # no claim left behind


def test_a_run_another_process_finishes_is_not_computed_again(write_study, tmp_path):
    p = plan(write_study(sweep="sigma_syn = [0.0, 0.1]"), store=tmp_path / "s.sqlite")
    first = p.runs[0]
    with Store(p.store_path) as s:
        s.claim(p.study_key, first.run_id, "other", ttl=60)

    def finish_it():  # the other process stores its run a moment later
        time.sleep(1.0)
        with Store(p.store_path) as s:
            s.add(p.study_key, first.run_id, first.axes, first.config, {"accuracy": 0.5}, 0, 0)

    helper = threading.Thread(target=finish_it)
    helper.start()
    counts = run_plan(p, progress=False)
    helper.join()
    assert counts["ran"] == 1 and counts["others"] == 1


def test_lease_renews_while_open(tmp_path):
    path = tmp_path / "s.sqlite"
    with Lease(path, ttl=0.4) as lease, Store(path) as s:
        assert s.claim("st", "r", lease.owner, lease.ttl)
        time.sleep(0.8)  # two leases long: only renewal keeps it
        assert s.claimed_by_others("st", "someone else") == {"r"}
    with Store(path) as s:
        assert s.claimed_by_others("st", "someone else") == set()  # released on close


def test_two_processes_split_a_study(write_study, tmp_path):
    results = tmp_path / "results"
    warm = write_study(sweep="sigma_syn = [0.0]", name="warm")  # trains and caches the model
    assert run_plan(plan(warm, store=results / "warm.sqlite"), progress=False)["ran"] == 1
    sweep = "sigma_syn = [0.0, 0.05, 0.1, 0.15]\nsigma_te = [0.0, 0.05, 0.1]"
    study = write_study(sweep=sweep, repeats=6, name="s")
    cmd = [sys.executable, "-m", "nvmsim.cli", "run", str(study), "--store",
           str(results / "s.sqlite"), "--quiet"]  # fmt: skip
    env = {**os.environ, "NVMSIM_LEASE_SECONDS": "20"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outs
    ran = [int(re.search(r"(\d+) runs done now", out).group(1)) for out in outs]
    assert sum(ran) == 12, outs  # every run computed once, by one of them
    with Store(results / "s.sqlite") as s:
        assert len(s.done_ids("s")) == 12
