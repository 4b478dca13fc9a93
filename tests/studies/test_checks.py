"""Plan-time checks: a study that cannot run fails before its store exists, naming the study
file and the field."""

import time

import pytest
from typer.testing import CliRunner

from nvmsim.cli import app
from nvmsim.config import ConfigError
from nvmsim.studies.study import plan

runner = CliRunner()


def _rewrite(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    "old, new, match",
    [
        ('arch = "mlp"', 'arch = "nope"', r"models\.mlp: unknown model 'nope'"),
        ("sizes = [64, 24, 10]", "size = [64, 24, 10]", r"models\.mlp: .*unexpected keyword"),
        ("sizes = [64, 24, 10]", "sizes = [784, 24, 10]", r"models\.mlp does not take digits"),
        ("sizes = [64, 24, 10]", "sizes = [64, 24, 5]", "outputs of shape \\(5,\\).*10 classes"),
        ('dataset = "digits"', 'dataset = "digits"\ncrop = [9, 4]', r"data\.crop = \[9, 4\]"),
        ('dataset = "digits"', 'dataset = "nope"', r"data\.dataset = 'nope': unknown dataset"),
        ("repeats = 3", "repeats = 3\nseed = 9223372036854775808", "seed"),
        ('name = "s"', 'name = "../../escape"', "not a plain name"),
        ("repeats = 3", "repeats = 1000000000", "repeats = 1000000000: should be less than"),
    ],
)
def test_plan_refuses_with_file_and_field(write_study, tmp_path, old, new, match):
    study = _rewrite(write_study(), old, new)
    with pytest.raises(ConfigError, match=match) as info:
        plan(study)
    assert str(study) in str(info.value)
    store = tmp_path / "never" / "s.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert not store.parent.exists()


def test_huge_sweep_is_counted_not_expanded(write_study):
    axes = "\n".join(f"{a} = [{', '.join(str(i / 1e4) for i in range(1000))}]"
                     for a in ("sigma_syn", "sigma_te", "sigma_prog"))  # fmt: skip
    study = write_study(sweep=axes)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="1,000,000,000 points, more than the limit"):
        plan(study)
    assert time.perf_counter() - t0 < 30  # generous: the point is no 10^9-point allocation


def test_point_errors_name_the_study_file(write_study):
    study = write_study(sweep="sigma_syn = [0.1, -1.0]")
    with pytest.raises(ConfigError, match=r"sweep point \{'sigma_syn': -1.0\}") as info:
        plan(study)
    assert str(info.value).startswith(str(study))


def test_data_dir_resolves_from_the_study_folder(write_study, tmp_path, monkeypatch):
    study = _rewrite(write_study(), 'dataset = "digits"', 'dataset = "digits"\ndata_dir = "d"')
    (tmp_path / "d").mkdir()
    monkeypatch.chdir(tmp_path.parent)  # elsewhere: "d" would not exist from here
    p = plan(study)
    assert p.runs[0].config["data"]["data_dir"] == str((tmp_path / "d").resolve())


def test_nvmsim_data_pointing_at_a_file_is_an_error(write_study, tmp_path, monkeypatch):
    bogus = tmp_path / "file.txt"
    bogus.write_text("x")
    monkeypatch.setenv("NVMSIM_DATA", str(bogus))
    study = _rewrite(write_study(), 'dataset = "digits"', 'dataset = "mnist"')
    _rewrite(study, "sizes = [64,", "sizes = [784,")
    with pytest.raises(ConfigError, match="NVMSIM_DATA = .*file.txt' is not a folder"):
        plan(study)


def test_jump_tables_resolve_from_the_study_folder(write_study, tmp_path, monkeypatch):
    onchip = '[scenario]\nonchip = { table = "file", set_table = "tables/set.csv" }\n'
    study = write_study(extra=onchip)
    monkeypatch.chdir(tmp_path.parent)
    p = plan(study, check_data=False)
    got = p.runs[0].config["scenario"]["onchip"]["set_table"]
    assert got == str((tmp_path / "tables" / "set.csv").resolve())


def test_a_model_too_large_for_memory_is_refused_at_plan_time(write_study):
    study = _rewrite(write_study(), "sizes = [64, 24, 10]", "sizes = [64, 400000, 400000, 10]")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"models\.mlp: 596\.2 GiB of weights need about"):
        plan(study)  # built on the meta device: nothing was allocated
    assert time.perf_counter() - t0 < 30


def test_a_checkpoint_with_a_nan_bias_stops_the_study(write_study, tmp_path):
    import json

    from safetensors.torch import save_file

    from nvmsim.io.checkpoint import FORMAT, FORMAT_VERSION, _digest
    from nvmsim.models import build

    model = build("mlp", sizes=[64, 24, 10])
    tensors = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    tensors["3.bias"][3] = float("nan")
    info = {"arch": {"name": "mlp", "kwargs": {"sizes": [64, 24, 10]}}}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "sha256": _digest(tensors),
            "info": json.dumps(info)}  # fmt: skip
    save_file(tensors, tmp_path / "nan.safetensors", metadata=meta)
    study = write_study(extra='[models.file]\ncheckpoint = "nan.safetensors"\n',
                        sweep="model = ['file']")  # fmt: skip
    store = tmp_path / "never.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store)])
    assert res.exit_code == 2 and not store.exists()
    assert "models.file.checkpoint" in res.output and "'3.bias'] contain NaN" in res.output


def test_an_overflowing_device_fails_its_run_and_stores_nothing_non_finite(write_study, tmp_path):
    from nvmsim.studies.store import Store

    study = write_study(sweep="sigma_syn = [0.0, 1e20]", repeats=2)
    store = tmp_path / "s.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store), "--quiet"])
    assert res.exit_code == 2 and "1 runs done now" in res.output
    assert "read-noise variance overflows float32" in res.output
    with Store(store) as s:
        (row,) = s.rows("s")
    assert row["axes"] == {"sigma_syn": 0.0}


@pytest.mark.parametrize(
    ("sweep", "match"),
    [
        ('"kwargs.sizes" = [[64, -3, 10]]',
         r"models\.mlp: Trying to create tensor with negative dimension -3"),
        ('"kwargs.sizes" = [[64, 9223372036854775807, 10]]',
         r"models\.mlp: Storage size calculation overflowed"),
        ('"kwargs.sizes" = [[64, 4611686018427387904, 10]]', r"models\.mlp: .*overflow"),
        ('"kwargs.sizes" = [[64, 2147483648, 10]]', r"models\.mlp: 600\.0 GiB of weights need"),
    ],
)  # fmt: skip
def test_model_kwargs_torch_refuses_are_one_line_at_plan_time(write_study, tmp_path, sweep, match):
    study = write_study(sweep=sweep)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=match) as info:
        plan(study)  # built on the meta device: nothing of that size is allocated
    assert time.perf_counter() - t0 < 30
    assert str(info.value).startswith(f"{study}: ") and "\n" not in str(info.value)
    store = tmp_path / "never" / "s.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "Traceback" not in res.output and not store.parent.exists()


@pytest.mark.parametrize(
    ("extra", "sweep", "match"),
    [
        ("", "sigma_syn = [0.0, 1e300]",
         r"sweep point \{'sigma_syn': 1e\+300\}: analog\.device\.read_noise\.sigma gives a noise "
         r"std of 1e\+300, above 3\.4e\+38 \(float32's largest number\)"),
        ("", "sigma_prog = [1e39]", r"analog\.device\.programming_error\.sigma gives a noise std"),
        ("", "sigma_te = [1e300]", r"scenario\.sigma_te gives a noise std of 1e\+300"),
        ("", '"analog.device.read_noise" = [{ kind = "table", g_points = [0, 1], '
         "sigma_points = [0, 1e300] }]", r"analog\.device\.read_noise\.sigma_points gives"),
        ("", '"analog.device.programming_error" = [{ kind = "polynomial", coeffs = [1e300] }]',
         r"analog\.device\.programming_error\.coeffs gives a noise std of 1e\+300"),
        ("", '"analog.device.flicker_noise.k" = [1e300]', r"flicker_noise\.k gives a noise std"),
        ("", '"analog.converter.output_noise" = [1e300]', r"converter\.output_noise gives"),
    ],
)  # fmt: skip
def test_a_noise_beyond_float32_is_refused_at_plan_time(write_study, tmp_path, extra, sweep,
                                                        match):  # fmt: skip
    study = write_study(extra=extra, sweep=sweep)
    with pytest.raises(ConfigError, match=match) as info:
        plan(study, check_data=False)
    assert str(info.value).startswith(f"{study}: ") and "\n" not in str(info.value)
    store = tmp_path / "never" / "s.sqlite"
    res = runner.invoke(app, ["run", str(study), "--store", str(store)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert not store.parent.exists()


def test_a_hwa_training_device_beyond_float32_is_refused(write_study):
    study = _rewrite(write_study(sweep="sigma_syn = [0.0]"), "train = { epochs = 3, ",
                     'train = { mode = "hwa", analog = { device = { read_noise = '
                     "{ sigma = 1e300 } } }, epochs = 3, ")  # fmt: skip
    with pytest.raises(ConfigError, match=r"train\.analog\.device\.read_noise\.sigma gives"):
        plan(study, check_data=False)


def test_large_but_representable_noise_still_plans(write_study):
    p = plan(write_study(sweep="sigma_syn = [0.0, 1e20, 3e38]"), check_data=False)
    assert [r.axes["sigma_syn"] for r in p.runs] == [0.0, 1e20, 3e38]
