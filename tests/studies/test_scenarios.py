"""The scenario registry and the typed run: one class and one registration add a scenario;
each checks its options at plan time; the typed run is the JSON the ids are hashed from."""

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from nvmsim.cli import app
from nvmsim.config import ConfigError
from nvmsim.studies import scenarios
from nvmsim.studies.schema import load_study
from nvmsim.studies.spec import RunSpec
from nvmsim.studies.store import Store
from nvmsim.studies.study import plan
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
