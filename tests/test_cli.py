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


def test_listing_commands():
    for cmd, needle in [("devices", "reram"), ("models", "119,322"), ("data", "digits")]:
        res = runner.invoke(app, [cmd])
        assert res.exit_code == 0, res.output
        assert needle in res.output
