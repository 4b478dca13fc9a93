import json

from typer.testing import CliRunner

from nvmsim.cli import app

runner = CliRunner()


def test_demo_runs_and_reports_software_and_analog_accuracy():
    res = runner.invoke(app, ["demo", "--epochs", "5", "--repeats", "2"])
    assert res.exit_code == 0, res.output
    assert "software (torch)" in res.output and "ReRAM preset" in res.output


def test_bench_json_reports_ratios():
    res = runner.invoke(app, ["bench", "--quick", "--json", "--no-irdrop"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    cases = {(r["group"], r["case"]) for r in out["inference"]}
    assert ("MLP 784-300-10", "prog. error + proportional read noise") in cases
    assert all(r["ratio"] > 0 and r["per_second"] > 0 for r in out["inference"])
    (oc,) = out["onchip"]
    assert oc["examples"] == 1000 and oc["seconds"] > 0 and oc["baseline_seconds"] > 0


def test_listing_commands():
    for cmd, needle in [("devices", "reram"), ("models", "119,322"), ("data", "digits")]:
        res = runner.invoke(app, [cmd])
        assert res.exit_code == 0, res.output
        assert needle in res.output


def test_devices_plots_presets_and_a_measured_jumptable(tmp_path):
    import numpy as np

    g = np.linspace(0.0, 0.95, 400)
    np.savetxt(tmp_path / "cell.csv", np.c_[g, 0.02 * (1 - g)], delimiter=",", header="g,dg",
               comments="")  # fmt: skip
    res = runner.invoke(
        app, ["devices", "--jumptable", str(tmp_path / "cell.csv"), "--plot", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "jumptable_cell.png").stat().st_size > 1000
    assert (tmp_path / "device_reram.png").stat().st_size > 1000
    bad = tmp_path / "bad.csv"
    bad.write_text("g,dg\n0.1,oops\n")
    res = runner.invoke(app, ["devices", "--jumptable", str(bad)])
    assert res.exit_code != 0 and "bad.csv" in res.output
    assert "device presets" not in res.output  # checked before anything is printed
