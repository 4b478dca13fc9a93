import csv

from typer.testing import CliRunner

from nvmsim.cli import app

runner = CliRunner()


def test_run_status_report_export(write_study, tmp_path):
    study = write_study()
    store = tmp_path / "r" / "s.sqlite"
    args = [str(study), "--store", str(store)]
    res = runner.invoke(app, ["status", *args])
    assert res.exit_code == 0 and "0 done, 4 pending" in res.output
    res = runner.invoke(app, ["run", *args, "--quiet"])
    assert res.exit_code == 0, res.output
    assert "4 runs done now, 0 already stored" in res.output
    res = runner.invoke(app, ["status", *args])
    assert "4 done, 0 pending" in res.output
    out, csv_path = tmp_path / "report", tmp_path / "runs.csv"
    res = runner.invoke(app, ["report", *args, "--out", str(out), "--export", str(csv_path)])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file() and (out / "accuracy.png").is_file()
    assert "| sigma_syn | sigma_te |" in (out / "results.md").read_text()
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {"axis.sigma_syn", "accuracy", "accuracy_std"} <= set(rows[0])


def test_bad_study_is_a_clear_error_and_touches_no_store(write_study, tmp_path):
    study = write_study(sweep="sigma_syn = [-1.0]")
    store = tmp_path / "never.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store)])
    assert res.exit_code == 2
    assert "read_noise.sigma" in res.output and "Traceback" not in res.output
    assert not store.exists()


def test_report_without_results(write_study, tmp_path):
    res = runner.invoke(app, ["report", str(write_study()), "--store", str(tmp_path / "x.sqlite")])
    assert res.exit_code == 2 and "no results yet" in res.output


def test_a_failing_run_is_reported_and_the_others_are_stored(write_study, tmp_path):
    # mosaics_rnn needs 784 inputs: on 8x8 digits every run of that model fails at evaluation
    extra = "[models.rnn]\narch = 'mosaics_rnn'\nkwargs = { t = 7 }\ntrain = { epochs = 0 }\n"
    study = write_study(extra=extra, sweep="model = ['mlp', 'rnn']\nsigma_syn = [0.0, 0.1]")
    store = tmp_path / "s.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store), "--quiet"])
    assert res.exit_code == 2
    assert "2 runs done now" in res.output and "2 runs failed" in res.output
    assert "RuntimeError" in res.output or "ValueError" in res.output
