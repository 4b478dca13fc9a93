"""A report of runs that cannot be reported (bad rows, missing metrics, a failure while
rendering) is one clear error and leaves no output behind; axis values that are lists or
tables (a swept ``kwargs.sizes``) are reported."""

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from nvmsim.cli import app
from nvmsim.report import build
from nvmsim.report.build import write_report
from nvmsim.report.export import export
from nvmsim.studies.schema import load_study
from nvmsim.studies.store import APPLICATION_ID, Store
from nvmsim.studies.sweep import expand
from tests.report.conftest import make_rows

runner = CliRunner()


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: m.pop("repeats"), r"r\.db: run r0: no 'repeats' metric \(the report needs it\)"),
        (lambda m: m.update(accuracy="NaN"), r"r\.db: run r0: metric 'accuracy' holds 'NaN'"),
        (lambda m: m.update(accuracy=1e308), r"run r0: metric 'accuracy' = 1e\+308 is out of"),
        (lambda m: m.update(accuracy_std=[1]), r"run r0: metric 'accuracy_std' holds a list"),
        (lambda m: m.update(software_accuracy=9), r"'software_accuracy' = 9 is not a fraction"),
        (lambda m: m.update(repeats=10**400), r"metric 'repeats' = 1000.* is out of range"),
    ],
)
def test_bad_rows_are_refused_before_anything_is_written(tmp_path, change, match):
    rows = make_rows()
    change(rows[0]["metrics"])
    with pytest.raises(ValueError, match=match):
        write_report(rows, tmp_path / "new" / "out", "s", store_path="r.db")
    assert _tree(tmp_path) == []  # not even the folders


def test_runs_with_no_reported_metric_get_a_report_without_results(tmp_path):
    """A scenario that stores none of the reported metrics (a plugin's own) still reports its
    setup and provenance."""
    rows = [{"run_id": f"r{i}", "axes": {"sigma_syn": s}, "metrics": {"loss": 1.0, "repeats": 2}}
            for i, s in enumerate((0.0, 0.1))]  # fmt: skip
    paths = write_report(rows, tmp_path / "out", "s", store_path="r.db")
    assert paths["markdown"].is_file() and "Provenance" in paths["markdown"].read_text()


def test_a_failure_while_rendering_leaves_no_output(rows, tmp_path, monkeypatch):
    def broken(doc, folder):
        raise OSError("disk full")

    monkeypatch.setattr(build, "render_html", broken)
    with pytest.raises(OSError, match="disk full"):
        write_report(rows, tmp_path / "a" / "out", "s")
    assert _tree(tmp_path) == []
    old = tmp_path / "old"  # an earlier report stays as it was
    old.mkdir()
    (old / "results.md").write_text("earlier report\n")
    with pytest.raises(OSError, match="disk full"):
        write_report(rows, old, "s")
    assert _tree(tmp_path) == ["old", "old/results.md"]
    assert (old / "results.md").read_text() == "earlier report\n"


def test_a_report_replaces_an_earlier_one_in_place(rows, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.md").write_text("earlier report\n")
    (out / "notes.txt").write_text("mine\n")
    paths = write_report(rows, out, "s")
    assert paths["markdown"] == out / "results.md" and paths["figure"] == out / "accuracy.png"
    assert (out / "results.md").read_text().startswith("# s\n")
    assert (out / "notes.txt").read_text() == "mine\n"
    assert _tree(tmp_path) == ["out", *(f"out/{n}" for n in (
        "accuracy.pdf", "accuracy.png", "accuracy.svg", "notes.txt", "report.html",
        "results.md"))]  # fmt: skip


@pytest.mark.parametrize("value", [[64, 10], {"preset": "pcm"}])
def test_list_and_table_axis_values_are_reported(tmp_path, value):
    rows = make_rows()
    for i, r in enumerate(rows):
        r["axes"]["kwargs.sizes"] = value if i % 2 else [64, 32, 10]
    paths = write_report(rows, tmp_path / "out", "s", pool=["kwargs.sizes"])
    md = paths["markdown"].read_text()
    assert "| [64, 32, 10] |" in md and f"| {json.dumps(value, separators=(', ', ': '))} |" in md
    assert "### accuracy, pooled over kwargs.sizes" in md
    assert paths["figure"].is_file()


def test_an_x_axis_that_cannot_be_plotted_falls_back_to_a_numeric_one(rows, tmp_path):
    for i, r in enumerate(rows):
        r["axes"]["kwargs.sizes"] = [64, 10 + i]
    del rows[0]["axes"]["sigma_te"]  # and one run without the chosen axis
    paths = write_report(rows, tmp_path / "out", "s", x="sigma_te")
    assert "read noise sigma" in paths["markdown"].read_text()
    paths = write_report(rows, tmp_path / "out2", "s", x="kwargs.sizes")
    assert paths["figure"].is_file()


def test_export_refuses_a_bad_metric_and_writes_nothing(rows, tmp_path):
    rows[2]["metrics"]["accuracy"] = "NaN"
    with pytest.raises(ValueError, match=r"runs\.csv: run r2: metric 'accuracy' holds 'NaN'"):
        export(rows, tmp_path / "runs.csv")
    assert _tree(tmp_path) == []


# Through the CLI: a store of the study whose rows are then damaged, as the fuzzer did.
GOOD = {"accuracy": 0.9, "accuracy_std": 0.01, "accuracy_all": [0.89, 0.91], "loss": 0.3,
        "loss_std": 0.02, "software_accuracy": 0.95, "repeats": 2, "test_images": 360}  # fmt: skip


@pytest.fixture
def study_store(write_study, tmp_path):
    study = write_study(sweep="sigma_syn = [0.0, 0.1]", repeats=2)
    spec, _ = load_study(study)
    store = tmp_path / "s.sqlite"
    with Store(store) as s:
        for i, r in enumerate(expand(spec)):
            s.add(spec.name, r.run_id, r.axes, r.config, GOOD, 1_796_000_000.0 + i, 1.0)
    return study, store


def _report(study, store, tmp_path):
    out, csv_path = tmp_path / "rep", tmp_path / "rep.csv"
    res = runner.invoke(
        app, ["report", str(study), "--store", str(store), "--out", str(out),
              "--export", str(csv_path)],
    )  # fmt: skip
    return res, out, csv_path


def test_cli_report_of_the_sound_store(study_store, tmp_path):
    res, out, csv_path = _report(*study_store, tmp_path)
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file() and csv_path.is_file()


@pytest.mark.parametrize(
    "column, value, match",
    [
        ("metrics", "[" * 100_000 + "]" * 100_000, "malformed row: metrics: nested too deeply"),
        ("axes", '{"a":' * 50_000 + "1" + "}" * 50_000, "malformed row: axes: nested too deeply"),
        ("metrics", json.dumps({**GOOD, "accuracy": "high"}), "metric 'accuracy' holds 'high'"),
        ("metrics", json.dumps({**GOOD, "accuracy": {"a": 1}}), "'accuracy' holds an object"),
        ("metrics", json.dumps({**GOOD, "accuracy": "NaN"}), "metric 'accuracy' holds 'NaN'"),
        ("metrics", json.dumps({**GOOD, "accuracy": 1e308}), "metric 'accuracy' = 1e+308 is"),
        ("metrics", '{"accuracy": 1' + "0" * 400 + "}", "metric 'accuracy' = 1000"),
        ("metrics", "{}", "metrics: no 'accuracy' metric (none stored)"),
        ("metrics", '{"loss": 1.0}', "metrics: no 'accuracy' metric"),
        ("axes", '{"sigma_syn": "abc"}', "axis 'sigma_syn': 'abc' where the run's config holds"),
        ("seconds", -1e308, "seconds = -1e+308 is not a wall time"),
    ],
)
def test_cli_report_of_a_damaged_row_is_one_line_and_no_output(
    study_store, tmp_path, column, value, match
):
    study, store = study_store
    db = sqlite3.connect(store)
    db.execute(f"UPDATE runs SET {column} = ?", (value,))
    db.commit()
    db.close()
    res, out, csv_path = _report(study, store, tmp_path)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "s.sqlite: run " in lines[0] and match in lines[0], res.output
    assert not out.exists() and not csv_path.exists()


def test_cli_refuses_a_store_with_our_id_and_wrong_columns(write_study, tmp_path):
    store = tmp_path / "w.sqlite"
    db = sqlite3.connect(store)
    db.executescript("CREATE TABLE runs (run_id TEXT, study TEXT); CREATE TABLE claims (a);")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    before = store.read_bytes()
    for cmd in ("run", "status", "report"):
        res = runner.invoke(app, [cmd, str(write_study()), "--store", str(store)])
        assert res.exit_code == 2, res.output
        assert "w.sqlite: a damaged nvmsim result store (format 2): table 'runs' has columns" in (
            res.output
        )
        assert "Traceback" not in res.output
    assert store.read_bytes() == before
