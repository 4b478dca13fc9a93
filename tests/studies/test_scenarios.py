"""The scenario registry and the typed run: one class and one registration add a scenario;
each checks its options at plan time; the typed run is the JSON the ids are hashed from."""

import re
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from nvmsim.cli import app
from nvmsim.config import ConfigError
from nvmsim.studies import runner, scenarios
from nvmsim.studies.schema import load_study
from nvmsim.studies.spec import RunSpec
from nvmsim.studies.store import Store
from nvmsim.studies.study import plan, run_plan
from nvmsim.studies.sweep import canonical, expand

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_the_typed_run_is_lossless(path):
    spec, _ = load_study(path)
    for r in expand(spec, quick=True)[:50]:
        assert canonical(r.spec.tree()) == canonical(r.config)
        assert RunSpec.from_tree(r.config) == r.spec


class _ConstantOptions(BaseModel, extra="forbid"):
    value: float = Field(ge=0, le=1)


@pytest.fixture
def constant_scenario():
    """A toy scenario, registered for one test: 'accuracy' is a given constant."""

    @scenarios.register
    class Constant(scenarios.Scenario):
        name = "constant"
        Options: ClassVar = _ConstantOptions
        trains_in_software = False

        def evaluate(self, run, ctx):
            return {"accuracy": self.options(run).value, "repeats": run.repeats}

    yield Constant
    del scenarios.SCENARIOS["constant"]


def test_adding_a_scenario_is_one_class_and_one_registration(
    constant_scenario, write_study, tmp_path
):
    study = write_study(extra="[scenario]\nconstant = { value = 0.25 }\n")
    store = tmp_path / "s.sqlite"
    res = CliRunner().invoke(app, ["run", str(study), "--store", str(store), "--quiet"])
    assert res.exit_code == 0, res.output
    with Store(store) as s:
        assert {r["metrics"]["accuracy"] for r in s.rows("s")} == {0.25}
    assert not (tmp_path / "models").exists()  # trains_in_software = False: nothing trained


@pytest.mark.parametrize(
    ("metrics", "match"),
    [
        ({"accuracy": 0.5, "repeats": 1, "loss": "high"}, r"metric 'loss' holds 'high', not a"),
        ({"accuracy": 1.5, "repeats": 1}, r"metric 'accuracy' = 1\.5 is not a fraction"),
        ({"loss": 0.1, "repeats": 1}, r"the scenario returned no 'accuracy'"),
    ],
)
def test_a_result_the_store_could_not_read_back_fails_its_run(
    constant_scenario, write_study, tmp_path, monkeypatch, metrics, match
):
    """A scenario's result is checked as the store checks what it reads: a bad one is a
    failed run, named, and nothing is stored."""
    monkeypatch.setattr(constant_scenario, "evaluate", lambda self, run, ctx: dict(metrics))
    study = write_study(extra="[scenario]\nconstant = { value = 0.25 }\n")
    store = tmp_path / "s.sqlite"
    res = CliRunner().invoke(app, ["run", str(study), "--store", str(store), "--quiet"])
    assert res.exit_code == 2 and re.search(match, res.output), res.output
    with Store(store) as s:
        assert s.rows("s") == []


@pytest.mark.parametrize(
    "table, match",
    [
        ("constant = { valeu = 0.25 }", r"scenario\.constant\.valeu: unknown key"),
        ("constant = { value = 7 }", r"scenario\.constant\.value = 7: should be less than"),
        ("constnat = { value = 0.25 }", r"scenario\.constnat: unknown key \(scenarios with"),
        ("onchip = { asymetry = 0.5 }", r"scenario\.onchip\.asymetry: unknown setting"),
        ("onchip = {}\nretrain_detector = true", "retrain_detector and onchip cannot be combined"),
    ],
)
def test_scenario_options_fail_at_plan_time(constant_scenario, write_study, tmp_path, table, match):
    study = write_study(extra=f"[scenario]\n{table}\n")
    with pytest.raises(ConfigError, match=match) as info:
        plan(study)
    assert str(info.value).startswith(str(study))


def test_selection():
    spec = RunSpec.from_tree(expand(load_study(STUDIES[0])[0])[0].config).scenario
    assert scenarios.scenario_for(spec).name in scenarios.SCENARIOS
    assert scenarios.scenario_for(spec.model_copy(update={"onchip": {}})).name == "onchip"
    assert scenarios.scenario_for(spec.model_copy(update={"retrain_detector": True})).name == (
        "retrain_detector"
    )
    with pytest.raises(ValueError, match="registered already"):
        scenarios.register(scenarios.SCENARIOS["inference"])


def _fake_load(name, split, data_dir=None, *, subset=None, seed=0, **kw):
    """Sparse random 22x24 images (the mlp528 input), a fixed draw per split."""
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = subset or 40
    x = torch.rand(n, 1, 22, 24, generator=g)
    return x * (x > 0.7), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture
def onchip_run(write_study, monkeypatch):
    """The JSON and train key of a small on-chip run (set-only devices, occasional RESET,
    two repeats) of mlp528 on fake data."""
    monkeypatch.setattr(runner, "load", _fake_load)
    onchip = 'onchip = { device = "set_only", refresh_every = 10, n_steps = 100 }'
    study = write_study(extra=f"[scenario]\n{onchip}\n", sweep="sigma_syn = [0.0]", repeats=2)
    run = expand(load_study(study)[0])[0]
    tree = {**run.config, "source": {**run.config["source"], "arch": "mlp528"}, "kwargs": {}}
    tree["train"] = {**tree["train"], "epochs": 1, "train_subset": 30}
    tree["data"] = {**tree["data"], "test_subset": 25, "preprocess": "unit"}
    return tree, run.train_key


def test_onchip_scenario_trains_each_repeat_on_chip(onchip_run, tmp_path):
    tree, key = onchip_run
    cache = tmp_path / "cache"
    out = scenarios.evaluate(tree, key, cache)
    for k in ("accuracy", "accuracy_std", "accuracy_all", "repeats", "train_accuracy",
              "saturated_fraction", "pulses_per_example", "refreshes"):  # fmt: skip
        assert k in out
    assert out["repeats"] == 2 and len(out["accuracy_all"]) == 2
    assert out["train_images"] == 30 and out["test_images"] == 25
    assert out["set_pulses_per_example"] > 0 and out["reset_pulses_per_example"] == 0  # set_only
    assert out == scenarios.evaluate(tree, key, cache) | {
        "seconds_per_epoch": out["seconds_per_epoch"]
    }
    assert not cache.exists()  # nothing trained in software


def test_onchip_scenario_names_an_unknown_setting(onchip_run, tmp_path):
    tree, key = onchip_run
    bad = {**tree, "scenario": {**tree["scenario"], "onchip": {"bogus": 1}}}
    with pytest.raises(ValueError, match=r"scenario\.onchip\.bogus: unknown setting"):
        scenarios.evaluate(bad, key, tmp_path)


def test_study_sweeps_onchip_fields(tmp_path):
    path = tmp_path / "oc.toml"
    path.write_text(
        textwrap.dedent(
            """
            name = "oc"
            repeats = 1
            [models.fc]
            arch = "fc_tanh"
            kwargs = { n_fe = 16, inputs = 64 }
            train = { epochs = 1, train_subset = 150 }
            [data]
            dataset = "digits"
            test_subset = 100
            [scenario]
            onchip = { n_steps = 300, lr = 0.05, w_max = [1.0, 2.0] }
            [sweep]
            "scenario.onchip.asymmetry" = [1.0, 0.5]
            """
        )
    )
    p = plan(path, store=tmp_path / "oc.sqlite")
    counts = run_plan(p, progress=False)
    assert counts["ran"] == 2 and not counts["errors"], counts
    with Store(p.store_path) as store:
        assert len(store.done_ids(p.study_key)) == 2
