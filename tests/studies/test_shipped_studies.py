"""Every study file in studies/ validates and expands to runs (full and --quick), and its
documented run command names the file itself."""

from pathlib import Path

import pytest

from nvmsim.studies.schema import load_study
from nvmsim.studies.sweep import expand

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.toml"))


def test_studies_are_shipped():
    names = {p.stem for p in STUDIES}
    assert {"table2", "fig3", "fig4", "testnoise", "energy", "retrain_fc", "drift"} <= names


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_file_validates_and_expands(path):
    """Validation and expansion only (no data needed: `nvmsim run` checks data itself)."""
    spec, _ = load_study(path)
    full, quick = expand(spec, False), expand(spec, True)
    assert full and 0 < len(quick) <= len(full)  # --quick caps epochs: an epochs axis may merge
    assert len({r.run_id for r in full}) == len(full), "two points resolve alike"
    assert {r.run_id for r in quick}.isdisjoint(r.run_id for r in full)
    assert f"studies/{path.name}" in path.read_text(), "the header should give its command"


def test_digits_example_runs_and_reports_in_seconds(tmp_path):
    """The documented example study needs no download: run it (--quick) and report it."""
    from typer.testing import CliRunner

    from nvmsim.cli import app

    path = next(p for p in STUDIES if p.stem == "digits_example")
    args = [str(path), "--quick", "--store", str(tmp_path / "d.sqlite")]
    res = CliRunner().invoke(app, ["run", *args, "--quiet"])
    assert res.exit_code == 0 and "8 runs done now" in res.output, res.output
    res = CliRunner().invoke(app, ["report", *args, "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "results.md").read_text()
    assert "## Software baseline" in md and "read noise sigma (x Gmax)" in md
