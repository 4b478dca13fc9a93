"""Presets with their sources, user preset files, and the ``nvmsim devices`` listing."""

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import nvmsim
from nvmsim.cli import app
from nvmsim.config import (
    AnalogConfig,
    ConfigError,
    DeviceConfig,
    load_preset_file,
    load_toml,
    preset,
    validate,
)
from nvmsim.devices import behaviour
from nvmsim.devices.presets import PRESETS, preset_names, summary
from nvmsim.nn.convert import drift_to

USER = """
name = "my-taox"
citation = "Our lab, wafer 7, 2024 measurements"
on_off_ratio = 20
g_max_siemens = 5e-5
bits = 4
level_spacing = "geometric"
drift_nu = 0.02
retention = { tau = 1e6, target = "mid" }
telegraph_noise = { kind = "proportional", delta = -0.05, p = 0.1 }

[programming_error]
kind = "table"
g_points = [0.05, 0.5, 1.0]
sigma_points = [0.01, 0.03, 0.02]

[read_noise]
kind = "polynomial"
coeffs = [0.002, 0.01]
"""


def write(tmp_path, text, name="mydevice.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_presets_validate_and_cite_their_sources():
    assert {"ideal", "reram", "sonos", "pcm", "pcmo", "ecram"} <= set(preset_names())
    for name in preset_names():
        d = preset(name)
        assert d.name == name and len(d.citation) > 20
        assert set(summary(d)) >= {"prog. error", "read noise", "drift / retention"}
    assert "Nat. Commun." in preset("pcm").citation
    assert "IEDM 2018" in preset("ecram").citation and "Science" in preset("ecram").citation
    assert "Pr0.7Ca0.3MnO3" in preset("pcmo").citation


def test_pcm_programming_noise_is_the_polynomial_of_joshi_2020():
    d = preset("pcm")
    g = torch.tensor([0.0, 1.0], dtype=torch.float64)
    std = behaviour.programming_std(d, g)
    c = PRESETS["pcm"]["programming_error"]["coeffs"]
    assert float(std[0]) == pytest.approx(c[0]) and float(std[1]) == pytest.approx(sum(c))
    assert float(std[1]) == pytest.approx((0.26348 + 1.9650 - 1.1731) / 25)


def test_behaviour_curves():
    d = preset("pcm")
    t = torch.tensor([1.0, 20.0, 2000.0], dtype=torch.float64)
    g = behaviour.conductance_vs_time(d, torch.tensor([1.0], dtype=torch.float64), t)
    torch.testing.assert_close(g[0], torch.tensor([1.0, 1.0, 100.0**-0.05], dtype=torch.float64))
    e = preset("ecram")
    g = behaviour.conductance_vs_time(e, torch.tensor([1.0], dtype=torch.float64), t * 1e8)
    assert float(g[0, -1]) == pytest.approx(0.55, abs=1e-6)  # relaxed to mid-range
    rtn = DeviceConfig(telegraph_noise={"kind": "additive", "delta": 0.2, "p": 0.5})
    assert float(behaviour.read_std(rtn, torch.tensor([0.5]))) == pytest.approx(0.1)


def test_user_preset_file_loads_validates_and_runs(tmp_path, monkeypatch):
    path = write(tmp_path, USER)
    dev = load_preset_file(path)
    assert dev.name == "my-taox" and dev.citation.startswith("Our lab")
    assert dev.programming_error.kind == "table" and dev.level_spacing == "geometric"
    # through a config file, with an override on top of the file's values
    cfg_path = write(
        tmp_path,
        f'seed = 1\n[device]\npreset_file = "{path}"\nread_noise = {{ coeffs = [0.0, 0.02] }}\n',
        "run.toml",
    )
    cfg = load_toml(cfg_path)
    assert cfg.device.name == "my-taox" and cfg.device.read_noise.coeffs == (0.0, 0.02)
    assert cfg.device.read_noise.kind == "polynomial"  # kept from the file
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    analog = nvmsim.convert(model, cfg)
    drift_to(analog, 3600.0)
    y = analog(torch.rand(4, 8))
    assert y.shape == (4, 3) and torch.isfinite(y).all()
    # a relative path is taken from the config file's folder, whatever the working directory
    (tmp_path / "configs").mkdir()
    rel = write(tmp_path / "configs", '[device]\npreset_file = "../mydevice.toml"\n', "rel.toml")
    monkeypatch.chdir("/")
    assert load_toml(rel).device.name == "my-taox"
    # a [device] table in the file works too, and the name defaults to the file's stem
    text = "[device]\n" + USER.replace('name = "my-taox"\n', "")
    text = text.replace("[programming_error]", "[device.programming_error]")
    text = text.replace("[read_noise]", "[device.read_noise]")
    assert load_preset_file(write(tmp_path, text, "lab_device.toml")).name == "lab_device"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (USER.replace("bits = 4", "bitz = 4"), "bitz: unknown key"),
        (USER.replace("coeffs = [0.002, 0.01]", "coeffs = []"), "read_noise"),
        (USER.replace("on_off_ratio = 20", "on_off_ratio = 0.5"), "on_off_ratio"),
        (USER.replace("p = 0.1", "p = 1.5"), "telegraph_noise.p"),
        (USER.replace('target = "mid"', 'target = "max"'), "retention.target"),
        (USER.replace('citation = "Our lab, wafer 7, 2024 measurements"', ""), "citation"),
        (USER.replace("[read_noise]", "[read_noise"), "malformed TOML"),
        (USER + '\npreset_file = "other.toml"\n', "preset_file"),
        ("citation = 'x'\n[programming_error]\nsigma = -1\n", "programming_error.sigma"),
    ],
)
def test_malformed_preset_file_names_file_and_field(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_preset_file(path)
    assert str(path) in str(err.value) and needle in str(err.value)
    # the same error, through a config that names the file
    with pytest.raises(ConfigError) as err:
        validate(AnalogConfig, {"device": {"preset_file": str(path)}}, source="run.toml")
    assert "run.toml: device" in str(err.value) and str(path) in str(err.value)
    assert needle in str(err.value)


def test_preset_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_preset_file(tmp_path / "missing.toml")
    path = write(tmp_path, USER)
    with pytest.raises(ConfigError, match="either preset or preset_file"):
        validate(AnalogConfig, {"device": {"preset_file": str(path), "preset": "pcm"}})


def test_device_config_validation():
    with pytest.raises(ConfigError, match="bits or levels"):
        validate(DeviceConfig, {"bits": 2, "levels": [0.1, 1.0]})
    with pytest.raises(ConfigError, match="increasing"):
        validate(DeviceConfig, {"levels": [0.5, 0.2]})
    with pytest.raises(ConfigError, match="finite on_off_ratio"):
        validate(DeviceConfig, {"bits": 2, "level_spacing": "geometric"})
    with pytest.raises(ConfigError, match="strictly increasing"):
        validate(
            DeviceConfig,
            {"read_noise": {"kind": "table", "g_points": [0, 0], "sigma_points": [0, 1]}},
        )
    with pytest.raises(ConfigError, match="only used with kind = 'polynomial'"):
        validate(DeviceConfig, {"read_noise": {"coeffs": [0.1]}})
    with pytest.raises(ConfigError, match="f_max"):
        validate(DeviceConfig, {"flicker_noise": {"k": 1e-3, "f_min": 10, "f_max": 1}})
    # a preset's table and an override merge key by key
    d = validate(DeviceConfig, {"preset": "pcmo", "retention": {"tau": 5.0}})
    assert d.retention.tau == 5.0 and d.retention.target == "gmin"


def test_cli_lists_presets_citations_and_user_files(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["devices"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for needle in ("pcmo", "ecram", "IEDM 2018", "Nat. Commun."):
        assert needle in res.output
    path = write(tmp_path, USER)
    res = runner.invoke(app, ["devices", "--file", str(path), "--plot", str(tmp_path / "img")])
    assert res.exit_code == 0, res.output
    assert "my-taox" in res.output and "Our lab" in res.output
    pngs = sorted((tmp_path / "img").glob("*.png"))
    assert len(pngs) == len(preset_names()) + 1
    assert all(p.stat().st_size < 200_000 for p in pngs)
    bad = write(tmp_path, USER.replace("bits = 4", "bitz = 4"), "bad.toml")
    res = runner.invoke(app, ["devices", "--file", str(bad)])
    assert res.exit_code == 2 and "bitz" in res.output


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('citation = "x"\npreset = { a = 1 }\n',
         r"preset = \{'a': 1\}: should be the name of a device preset"),
        ('citation = "x"\npreset = ["pcm"]\n', r"preset = \['pcm'\]: should be the name"),
        ('citation = "x"\nlevels = ["a", "b"]\n',
         r"levels\.0 = 'a': should be a number, not a string; .*levels\.1 = 'b': should be"),
        ('citation = "x"\nlevels = ' + "[" * 1000 + "]" * 1000 + "\n", "nested too deeply"),
    ],
)  # fmt: skip
def test_cli_bad_preset_files_are_one_line(tmp_path, text, match):
    import re

    path = write(tmp_path, text, "bad.toml")
    res = CliRunner().invoke(app, ["devices", "--file", str(path)])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith(f"error: {path}: ") and re.search(match, lines[0]), res.output
    assert "device presets" not in res.output
