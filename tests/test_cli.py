import json

from typer.testing import CliRunner

from nvmsim.cli import app

runner = CliRunner()


def test_demo_runs_and_reports_software_and_analog_accuracy():
    res = runner.invoke(app, ["demo", "--epochs", "5", "--repeats", "2"])
    assert res.exit_code == 0, res.output
    assert "software (torch)" in res.output and "ReRAM" in res.output
    assert "95 % CI" in res.output and "sampling noise" in res.output


def test_demo_prints_a_valid_interval_around_every_accuracy(monkeypatch):
    """Each printed 95 % CI is an interval of percentages that holds its row's accuracy."""
    import re

    monkeypatch.setenv("COLUMNS", "200")  # one line per row
    res = runner.invoke(app, ["demo", "--epochs", "5", "--repeats", "2"])
    assert res.exit_code == 0, res.output
    row = re.compile(r"│ (.+?) +│ +([\d.]+) │ +([\d.]+) – ([\d.]+) │")
    rows = {m[1]: tuple(map(float, m.groups()[1:])) for m in row.finditer(res.output)}
    assert len(rows) == 9 and "software (torch)" in rows, res.output  # software + 8 devices
    for setting, (acc, low, high) in rows.items():
        assert 0 <= low <= acc <= high <= 100 and low < high, setting


def test_demo_interval_is_the_wilson_interval_around_the_accuracy():
    from scipy import stats

    from nvmsim.demo import accuracy_ci

    low, high = accuracy_ci(0.9, 360)
    assert low < 0.9 < high and 0.02 < high - 0.9 < 0.9 - low < 0.04  # ±3 points
    ci = stats.binomtest(324, 360).proportion_ci(method="wilson")
    assert (low, high) == (ci.low, ci.high)
    assert accuracy_ci(1.0, 360)[1] == 1.0


def test_bench_json_reports_ratios():
    res = runner.invoke(app, ["bench", "--quick", "--json", "--no-irdrop"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    cases = {(r["group"], r["case"]) for r in out["inference"]}
    assert ("MLP 784-300-10", "prog. error + proportional read noise") in cases
    groups = {g for g, _ in cases}
    assert any(g.startswith("LSTM") for g in groups) and any(
        g.startswith("Transformer") for g in groups
    )
    assert all(r["ratio"] > 0 and r["per_second"] > 0 for r in out["inference"])
    isaac = [r for r in out["inference"] if r["case"].startswith("ISAAC")]
    assert {r["group"].split(" ")[0] for r in isaac} == {"MLP", "ResNet-18"}
    assert all(r["reads"] == 32 and r["ratio_per_read"] == r["ratio"] / 32 for r in isaac)
    (oc,) = out["onchip"]
    assert oc["examples"] == 1000 and oc["seconds"] > 0 and oc["baseline_seconds"] > 0
    held = "CNN 000, PCM preset: prog. error per batch + read noise drawn per batch, batch 128"
    assert [r["case"] for r in out["hwa"]][2:] == [held]  # after the two per-read gradients
    for hwa in out["hwa"]:
        assert hwa["examples"] == 2000
        assert hwa["ratio"] == hwa["seconds"] / hwa["baseline_seconds"]


def test_listing_commands():
    for cmd, needle in [("devices", "reram"), ("models", "119,322"), ("data", "digits")]:
        res = runner.invoke(app, [cmd])
        assert res.exit_code == 0, res.output
        assert needle in res.output


def test_models_lists_every_registry_entry_with_its_parameter_count(monkeypatch):
    """Every registry name is a row; mlp shows its kwargs; a count matches sum(p.numel())."""
    from nvmsim.models import REGISTRY, build

    monkeypatch.setenv("COLUMNS", "250")
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    rows = {}
    for line in res.output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0]:
            rows[cells[0]] = cells
    assert set(REGISTRY) <= set(rows)
    assert rows["mlp"][1:3] == ["sizes, sigma_neu=0.0, bounded=False", "set by kwargs"]
    expected = sum(p.numel() for p in build("mlp300").parameters())
    assert rows["mlp300"][2] == f"{expected:,}"


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


def _bad_inputs(tmp_path):
    """(name, path) of a missing file, an unreadable one (a folder) and a malformed one."""
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"name = [unclosed\n\x00\xff")
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    return [("missing", tmp_path / "missing.toml"), ("unreadable", folder), ("malformed", bad)]


def _commands(path, tmp_path):
    """Every command, each with ``path`` where it takes a file or folder."""
    return [
        ["run", str(path), "--quiet"],
        ["status", str(path)],
        ["report", str(path)],
        ["devices", "--file", str(path)],
        ["devices", "--jumptable", str(path)],
        ["summary", str(path)],
        ["energy", str(path)],
        ["data", "--data-dir", str(path)],
        ["irdrop", "--rows", "4", "--cols", "4", "--figure", str(path / "f.png")],
        ["demo", "--epochs", str(path)],
        ["bench", "--quick", "--bogus", str(path)],
        ["models", str(path)],
    ]


def test_every_command_fails_in_one_line_with_exit_2(tmp_path):
    for kind, path in _bad_inputs(tmp_path):
        for args in _commands(path, tmp_path):
            if kind == "unreadable" and args[0] in ("data", "irdrop"):
                continue  # a folder is what these take
            res = runner.invoke(app, args)
            lines = res.output.strip().splitlines()
            assert res.exit_code == 2, (kind, args, res.output)
            assert len(lines) == 1 and lines[0].startswith("error: "), (kind, args, res.output)
            assert "Traceback" not in res.output


def test_study_command_file_errors_are_one_line(write_study, tmp_path):
    study = write_study(sweep="sigma_syn = [0.0]")
    store = tmp_path / "s.sqlite"
    args = [str(study), "--store", str(store)]
    assert runner.invoke(app, ["run", *args, "--quiet", "--quick"]).exit_code == 0
    outfile = tmp_path / "a-file"
    outfile.write_text("x")
    foreign = tmp_path / "theirs.sqlite"
    foreign.write_text("not sqlite")
    cases = [
        (
            ["report", *args, "--quick", "--export", str(tmp_path / "no" / "x.csv")],
            "does not exist",
        ),
        (["report", *args, "--quick", "--out", str(outfile)], "must be a folder"),
        (["report", *args, "--quick", "--export", str(tmp_path / "x.json")], ".csv or .parquet"),
        (["run", str(study), "--store", str(outfile / "sub" / "s.sqlite")], "cannot create"),
        (["status", str(study), "--store", str(foreign)], "not an SQLite file"),
        (["run", str(study), "--store", str(foreign)], "not an SQLite file"),
        (["run", str(study), "--address", "127.0.0.1:1"], "--address is for --executor ray"),
    ]
    for argv, match in cases:
        res = runner.invoke(app, argv)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1 and match in lines[0], (argv, res.output)
    assert foreign.read_text() == "not sqlite"
    assert not (tmp_path / "x.json").exists() and not list(tmp_path.glob("x.json.tmp*"))
    assert not list(tmp_path.glob("*-quick"))  # a refused export writes no report either


def test_user_text_is_printed_literally(write_study, tmp_path):
    study = write_study(sweep="sigma_syn = [0.0]")
    res = runner.invoke(app, ["status", str(study), "--quick", "--store", str(tmp_path / "s.db")])
    assert res.exit_code == 0 and "s [quick]: 0 done" in res.output
    bad = write_study(sweep="model = ['mlp', 'ghost']", name="g")
    res = runner.invoke(app, ["status", str(bad)])
    assert res.exit_code == 2 and "names no [models.ghost] table" in res.output


def _one_error_line(res) -> str:
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith("error: ") and "Traceback" not in res.output
    return lines[0]


def test_hostile_study_files_fail_in_one_line(write_study, tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 2000 + "]" * 2000 + "\n")
    cases = [
        (deep, "deep.toml: tables or arrays nested too deeply"),
        (write_study(sweep="device = [{ zzz = 1 }]", name="a"),
         "analog: device: preset = {'zzz': 1}: should be the name of a device preset"),
        (write_study(sweep='"kwargs.sizes" = [[64, -3, 10]]', name="b"),
         "models.mlp: Trying to create tensor with negative dimension -3"),
        (write_study(sweep="sigma_syn = [1e300]", name="c"),
         "analog.device.read_noise.sigma gives a noise std of 1e+300"),
        (write_study(sweep='sigma_syn = ["0.1"]', name="d"),
         "device.read_noise.sigma = '0.1': should be a number, not a string"),
        (write_study(repeats="true", name="e"), "repeats = True: should be an integer"),
    ]  # fmt: skip
    for study, needle in cases:
        store = tmp_path / f"{study.stem}.sqlite"
        for cmd in ("status", "run"):
            line = _one_error_line(runner.invoke(app, [cmd, str(study), "--store", str(store)]))
            assert needle in line, (cmd, study, line)
        assert not store.exists()


def test_devices_errors_with_several_fields_are_one_line(tmp_path):
    bad = tmp_path / "two.toml"
    bad.write_text('citation = "x"\nbits = 99\nrange_std = -1\n')
    line = _one_error_line(runner.invoke(app, ["devices", "--file", str(bad)]))
    assert "two.toml: bits = 99: should be less than or equal to 16; " in line
    assert "two.toml: range_std = -1: should be greater than or equal to 0" in line


def test_devices_refuses_a_jumptable_declaring_a_huge_array(tmp_path):
    import io
    import zipfile

    from numpy.lib import format as npy

    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for key in ("g", "dg"):
            buf = io.BytesIO()
            npy.write_array_header_1_0(
                buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
            )
            zf.writestr(f"{key}.npy", buf.getvalue() + b"\0" * 64)
    line = _one_error_line(runner.invoke(app, ["devices", "--jumptable", str(path)]))
    assert "huge.npz: array 'g' declares shape (1000000000000,)" in line
