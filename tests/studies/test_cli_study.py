import csv

import pytest
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
    assert (out / "report.html").is_file()
    assert all((out / f"accuracy.{ext}").is_file() for ext in ("png", "svg", "pdf"))
    md = (out / "results.md").read_text()
    assert "| read noise sigma" in md and f"| result store | {store.resolve()} |" in md
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {"axis.sigma_syn", "accuracy_pct", "accuracy_std_pct"} <= set(rows[0])


def test_bad_study_is_a_clear_error_and_touches_no_store(write_study, tmp_path):
    study = write_study(sweep="sigma_syn = [-1.0]")
    store = tmp_path / "never.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store)])
    assert res.exit_code == 2
    assert "read_noise.sigma" in res.output and "Traceback" not in res.output
    assert not store.exists()


def test_report_without_results(write_study, tmp_path):
    args = [str(write_study(sweep="sigma_syn = [0.0]")), "--store", str(tmp_path / "x.sqlite")]
    res = runner.invoke(app, ["report", *args])
    assert res.exit_code == 2 and "no results yet" in res.output
    assert runner.invoke(app, ["run", *args, "--quick", "--quiet"]).exit_code == 0
    res = runner.invoke(app, ["report", *args])  # only --quick runs are stored
    assert res.exit_code == 2 and "no stored runs of s" in res.output
    assert "report with --quick" in res.output


def test_a_failing_run_is_reported_and_the_others_are_stored(write_study, tmp_path, monkeypatch):
    from nvmsim.studies import scenarios

    evaluate = scenarios.evaluate

    def flaky(tree, key, cache):
        if tree["analog"]["device"]["read_noise"]["sigma"] > 0:
            raise RuntimeError("simulated failure")
        return evaluate(tree, key, cache)

    monkeypatch.setattr(scenarios, "evaluate", flaky)
    study = write_study(sweep="sigma_syn = [0.0, 0.1]\nsigma_te = [0.0, 0.1]")
    store = tmp_path / "s.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store), "--quiet"])
    assert res.exit_code == 2
    assert "2 runs done now" in res.output and "2 runs failed" in res.output
    assert "RuntimeError: simulated failure" in res.output and str(study) in res.output
    monkeypatch.setattr(scenarios, "evaluate", evaluate)
    res = runner.invoke(app, ["run", str(study), "--store", str(store), "--quiet"])
    assert res.exit_code == 0 and "2 runs done now, 2 already stored" in res.output


def test_detector_retraining_study_recovers_accuracy(tmp_path):
    """Paper 003's claim on digits: a badly programmed extractor is rescued by retraining."""
    study = tmp_path / "r.toml"
    study.write_text(
        "name = 'r'\nrepeats = 4\n"
        "[models.fc]\narch = 'fc_tanh'\nkwargs = { n_fe = 25, inputs = 64 }\n"
        "train = { epochs = 20, batch_size = 32, lr = 3e-3 }\n"
        "[data]\ndataset = 'digits'\n"
        "[scenario]\nretrain_detector = true\nretrain_epochs = 20\nretrain_batch = 32\n"
        "retrain_lr = 3e-3\n[sweep]\nalpha = [0.0, 1.5]\n"
    )
    store = tmp_path / "r.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store), "--quiet"])
    assert res.exit_code == 0, res.output
    from nvmsim.studies.store import Store

    with Store(store) as s:
        m = {r["axes"]["alpha"]: r["metrics"] for r in s.rows("r")}
    assert m[0.0]["accuracy_before"] == pytest.approx(m[0.0]["software_accuracy"])
    assert m[1.5]["accuracy_before"] < m[0.0]["accuracy_before"] - 0.1
    assert m[1.5]["accuracy"] > m[1.5]["accuracy_before"] + 0.1


def test_energy_scenario_reports_energy_per_inference(write_study, tmp_path):
    """``scenario.energy`` adds the energy model's figures to every run, per technology."""
    from nvmsim.energy.model import estimate
    from nvmsim.models import build

    study = write_study(sweep='energy = ["reram", "sonos"]', repeats=1)
    store = tmp_path / "e.sqlite"
    csv_path = tmp_path / "e.csv"
    res = runner.invoke(app, ["run", str(study), "--store", str(store), "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["report", str(study), "--store", str(store), "--out", str(tmp_path / "o"),
              "--export", str(csv_path)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    with csv_path.open() as fh:
        rows = {r["axis.energy"]: r for r in csv.DictReader(fh)}
    model = build("mlp", sizes=[64, 24, 10])
    for tech in ("reram", "sonos"):
        want = estimate(model, tech, (1, 8, 8))
        assert float(rows[tech]["energy_nj"]) == pytest.approx(want.total_nj, rel=1e-9)
    assert float(rows["sonos"]["energy_nj"]) != float(rows["reram"]["energy_nj"])
    bad = write_study(sweep='energy = ["unobtainium"]', name="bad")
    res = runner.invoke(app, ["run", str(bad), "--store", str(tmp_path / "b.sqlite")])
    assert res.exit_code == 2 and "unobtainium" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("key", "name", "content"),
    [("keras", "model.keras", b"not a zip"), ("checkpoint", "model.safetensors", b"\x00" * 7)],
)
def test_malformed_model_file_stops_the_study_before_any_run(tmp_path, key, name, content):
    (tmp_path / name).write_bytes(content)
    study = tmp_path / "s.toml"
    study.write_text(
        f'name = "s"\n[models.m]\n{key} = "{name}"\n[data]\ndataset = "digits"\n'
        "[sweep]\nsigma_syn = [0.0]\n"
    )
    store = tmp_path / "s.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store)])
    assert res.exit_code == 2, res.output
    assert f"models.m.{key}" in res.output and name in res.output
    assert "Traceback" not in res.output and not store.exists()


def test_a_file_that_is_not_a_store_is_a_one_line_error(write_study, tmp_path):
    store = tmp_path / "garbage.sqlite"
    store.write_bytes(b"this is not an SQLite database, just some bytes" * 4)
    before = store.read_bytes()
    for cmd in ("run", "status", "report"):
        res = runner.invoke(app, [cmd, str(write_study()), "--store", str(store)])
        assert res.exit_code == 2, res.output
        assert "garbage.sqlite: not an SQLite file, so not an nvmsim result store" in res.output
        assert "Traceback" not in res.output
    assert store.read_bytes() == before


def test_keras_init_is_a_training_option_with_its_own_cache_key(write_study):
    from nvmsim.studies.schema import load_study
    from nvmsim.studies.sweep import expand

    torch_init = expand(load_study(write_study(name="a"))[0])
    keras = expand(load_study(write_study(sweep='"train.init" = ["torch", "keras"]', name="b"))[0])
    assert {r.train_key for r in torch_init} < {r.train_key for r in keras}
    assert len({r.train_key for r in keras}) == 2


def test_status_and_report_need_only_the_store(write_study, tmp_path, monkeypatch):
    import nvmsim.data

    study = write_study(sweep="sigma_syn = [0.0, 0.1]")
    args = [str(study), "--store", str(tmp_path / "s.sqlite")]
    assert runner.invoke(app, ["run", *args, "--quiet", "--quick"]).exit_code == 0

    def no_data(*a, **k):
        raise nvmsim.data.DatasetError("no datasets on this machine")

    monkeypatch.setattr(nvmsim.data, "load", no_data)
    res = runner.invoke(app, ["status", *args, "--quick"])
    assert res.exit_code == 0 and "2 done, 0 pending" in res.output, res.output
    res = runner.invoke(app, ["report", *args, "--quick", "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0 and (tmp_path / "rep" / "report.html").is_file(), res.output
    res = runner.invoke(app, ["run", *args])  # run checks its data (pending runs without --quick)
    assert res.exit_code == 2 and "no datasets on this machine" in res.output


def test_a_keras_mosaics_rnn_runs_in_a_study(tmp_path):
    """Paper 000's RNN as a Keras file (SimpleRNN(D, relu) over (t, M/t), then Dense) is read
    as a MosaicsRNN and evaluated on crossbars: digits, t = 4 chunks of 16 pixels."""
    import numpy as np

    from tests.io import keras_writer as kw

    rng = np.random.default_rng(0)
    w = lambda *s: rng.standard_normal(s).astype("float32") * 0.3  # noqa: E731
    weights = [("kernel", w(16, 8)), ("recurrent_kernel", w(8, 8)), ("bias", w(8))]
    rnn = kw.layer("SimpleRNN", "simple_rnn", weights, units=8, activation="relu")
    kw.write_legacy_h5(tmp_path / "rnn.h5", [rnn, kw.dense("dense", w(8, 10), w(10))], (4, 16))
    study = tmp_path / "s.toml"
    study.write_text(
        'name = "s"\n[models.rnn]\nkeras = "rnn.h5"\n[data]\ndataset = "digits"\n'
        "[sweep]\nsigma_syn = [0.0, 0.5]\n"
    )
    store = tmp_path / "s.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store), "--quiet"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs.csv"
    res = runner.invoke(app, ["report", str(study), "--store", str(store), "--export", str(out)])
    assert res.exit_code == 0, res.output
    with out.open() as fh:
        acc = {r["axis.sigma_syn"]: float(r["accuracy_pct"]) for r in csv.DictReader(fh)}
    assert len(acc) == 2 and all(0 <= a <= 100 for a in acc.values())
    assert acc["0.0"] != acc["0.5"]  # the core is read on noisy crossbars


def test_a_keras_model_without_flatten_reads_the_dataset_images(tmp_path):
    """A Keras MLP declared on (64,) inputs runs on 8x8 digits: the runner reshapes."""
    import numpy as np

    from tests.io import keras_writer as kw

    rng = np.random.default_rng(0)
    dense = kw.dense("dense", rng.standard_normal((64, 10)).astype("float32"), np.zeros(10, "f4"))
    kw.write_legacy_h5(tmp_path / "mlp.h5", [dense], (64,))
    study = tmp_path / "s.toml"
    study.write_text(
        'name = "s"\n[models.m]\nkeras = "mlp.h5"\n[data]\ndataset = "digits"\n'
        "[sweep]\nsigma_syn = [0.0]\n"
    )
    res = runner.invoke(app, ["run", str(study), "--store", str(tmp_path / "s.sqlite"), "--quiet"])
    assert res.exit_code == 0, res.output
