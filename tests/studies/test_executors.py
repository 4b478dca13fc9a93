import importlib.util

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
    noiseless = [m for m in a.values() if m["accuracy_std"] == 0.0]
    assert noiseless
    for m in noiseless:  # no noise at all: the analog model is torch's model
        assert m["accuracy"] == pytest.approx(m["software_accuracy"], abs=1e-12)
