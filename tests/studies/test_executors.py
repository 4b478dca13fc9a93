import importlib.util
import os
import subprocess
import sys
import time

import pytest

from nvmsim.studies.store import Store
from nvmsim.studies.study import plan, run_plan


def _run(study, store, executor, workers):
    p = plan(study, store=store)
    run_plan(p, executor=executor, workers=workers, progress=False)
    with Store(store) as s:
        return {r["run_id"]: r["metrics"] for r in s.rows(p.study_key)}


@pytest.mark.slow
def test_local_pool_and_ray_give_identical_results(write_study, tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'nvmsim[ray]')")
    study = write_study(
        sweep="sigma_syn = [0.0, 0.2]\nsigma_te = [0.0, 0.1]\nsigma_neu = [0.0, 0.1]"
    )
    pool = _run(study, tmp_path / "pool" / "s.sqlite", "local", 2)
    ray = _run(study, tmp_path / "ray" / "s.sqlite", "ray", 2)
    assert len(pool) == 8
    assert pool == ray


def test_sequential_results_are_reproducible_and_sane(write_study, tmp_path):
    study = write_study()
    a = _run(study, tmp_path / "a" / "s.sqlite", "local", 1)
    b = _run(study, tmp_path / "b" / "s.sqlite", "local", 1)
    assert a == b
    for m in a.values():
        assert 0.0 <= m["accuracy"] <= 1.0 and m["repeats"] == 3 and len(m["accuracy_all"]) == 3
    noiseless = [m for m in a.values() if m["loss_std"] == 0.0]  # accuracies can tie
    assert noiseless
    for m in noiseless:  # no noise at all: the analog model is torch's model
        assert m["accuracy"] == pytest.approx(m["software_accuracy"], abs=1e-12)


PARENT = """
import multiprocessing, sys, time
from nvmsim.studies.executors import die_with_parent

def child(parent):
    die_with_parent(parent, poll=0.05)
    time.sleep(60)

if __name__ == "__main__":
    import os
    p = multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(),))
    p.start()
    print(p.pid, flush=True)
    time.sleep(60)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_workers_exit_when_the_study_process_is_killed(tmp_path):
    """SIGKILL the parent (as a user killing a study would): its worker must not live on."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child is up and watching
    assert _alive(child)
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "worker outlived the killed study process"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().split(")")[-1].split()[0] != "Z"
