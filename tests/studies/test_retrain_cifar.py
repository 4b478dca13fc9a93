"""The CIFAR-10 detector-retraining path, on random CIFAR-shaped data (no files needed)."""

from pathlib import Path

import torch

from nvmsim.studies import runner, scenarios
from nvmsim.studies.schema import load_study
from nvmsim.studies.sweep import expand

STUDY = Path(__file__).resolve().parents[2] / "studies" / "retrain_cifar.toml"


def test_retrain_cifar_study_runs_on_cifar_shaped_data(monkeypatch, tmp_path):
    def fake_load(name, split, data_dir=None, *, subset=None, seed=0, **kw):
        assert name == "cifar10"
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        n = subset or 64
        return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)

    monkeypatch.setattr(runner, "load", fake_load)
    spec, _ = load_study(STUDY)
    run = next(r for r in expand(spec, quick=True) if r.axes["alpha"] == 1.0)
    tree = {**run.config, "repeats": 2}
    tree["train"] = {**tree["train"], "epochs": 1, "train_subset": 64}
    tree["data"] = {**tree["data"], "test_subset": 32}
    tree["scenario"] = {**tree["scenario"], "retrain_epochs": 1, "retrain_subset": 64}
    m = scenarios.evaluate(tree, run.train_key, tmp_path)
    assert m["repeats"] == 2 and len(m["accuracy_all"]) == 2
    assert 0 <= m["accuracy_before"] <= 1 and 0 <= m["accuracy"] <= 1
