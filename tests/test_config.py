import pytest

from nvmsim.config import AnalogConfig, ConfigError, DeviceConfig, load_toml, validate


def write(tmp_path, text, name="cfg.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_toml_round_trip_with_preset_and_override(tmp_path):
    p = write(
        tmp_path,
        """
seed = 7
[device]
preset = "reram"
read_noise = { sigma = 0.1 }
[converter]
adc_bits = 8
""",
    )
    cfg = load_toml(p)
    assert cfg.seed == 7
    assert cfg.device.name == "reram" and cfg.device.on_off_ratio == 10.0
    assert cfg.device.read_noise.sigma == 0.1
    assert cfg.device.read_noise.kind == "proportional"  # kept from the preset
    assert cfg.converter.adc_bits == 8 and cfg.converter.dac_bits is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[device]\nsigm = 1\n", "device.sigm: unknown key"),
        ("[device.read_noise]\nsigma = -0.1\n", "device.read_noise.sigma"),
        ("[device]\nbits = 17\n", "device.bits"),
        ("[device]\non_off_ratio = 1.0\n", "device.on_off_ratio"),
        ("[device]\non_off_ratio = 1.000000001\n", "on_off_ratio must be >= 1.0121: float32"),
        ("[device.read_noise]\nkind = 'weight'\n", "device.read_noise.kind"),
        ("[converter]\nadc_range = -2\n", "adc_range"),
        ("[device]\nstuck_at_gmin = 0.7\nstuck_at_gmax = 0.7\n", "stuck_at_gmin + stuck_at_gmax"),
        ("device = 'nonsense'\n", "unknown device preset 'nonsense'"),
        ("[device\n", "malformed TOML"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_toml(p)
    assert str(p) in str(err.value)
    assert needle in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_toml(tmp_path / "nope.toml")


def test_device_shorthand_and_gmin():
    cfg = validate(AnalogConfig, {"device": "sonos"})
    assert cfg.device.g_min == pytest.approx(1e-3)
    assert DeviceConfig().g_min == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 2000 + "]" * 2000 + "\n",  # past the parser's recursion limit
        "a = " + "{b = " * 2000 + "1" + "}" * 2000 + "\n",
        "a = " + "[" * 100 + "1" + "]" * 100 + "\n",  # parses, but past MAX_TOML_DEPTH
    ],
    ids=["arrays", "tables", "parsed"],
)
def test_deeply_nested_toml_is_one_line_naming_the_file(tmp_path, text):
    from nvmsim.config import read_toml

    p = write(tmp_path, text)
    for load in (read_toml, load_toml):
        with pytest.raises(ConfigError, match=r"nested too deeply \(more than 64 levels\)") as err:
            load(p)
        assert str(err.value).startswith(f"{p}: ") and "\n" not in str(err.value)


def test_nesting_up_to_the_limit_still_reads(tmp_path):
    from nvmsim.config import MAX_TOML_DEPTH, read_toml

    depth = MAX_TOML_DEPTH - 1  # the top-level table is one level
    p = write(tmp_path, "a = " + "[" * depth + "1" + "]" * depth + "\n")
    assert read_toml(p)["a"] == eval("[" * depth + "1" + "]" * depth)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"device": {"read_noise": {"sigma": "0.1"}}},
         r"device\.read_noise\.sigma = '0\.1': should be a number, not a string"),
        ({"device": {"range_std": True}}, r"device\.range_std = True: should be a number, not a "
         "boolean"),
        ({"device": {"bits": True}}, r"device\.bits = True: should be an integer, not a boolean"),
        ({"device": {"bits": "4"}}, r"device\.bits = '4': should be an integer, not a string"),
        ({"device": {"levels": [0, "0.5", 1]}}, r"device\.levels\.1 = '0\.5': should be a number"),
        ({"crossbar": {"tile_rows": "64"}}, r"crossbar\.tile_rows = '64': should be an integer"),
        ({"converter": {"dac_bits": 4, "dac_range": "0.5"}},
         r"converter\.dac_range = '0\.5': should be a number, not a string or should be 'auto'"),
        ({"seed": False}, r"seed = False: should be an integer, not a boolean"),
    ],
)  # fmt: skip
def test_numbers_refuse_strings_and_booleans(data, match):
    with pytest.raises(ConfigError, match=match) as err:
        validate(AnalogConfig, data)
    assert "\n" not in str(err.value)


def test_numbers_still_take_ints_and_numpy_scalars():
    import numpy as np

    cfg = validate(AnalogConfig, {
        "device": {"read_noise": {"sigma": 1}, "bits": np.int64(4), "range_std": np.float32(0.5)},
        "converter": {"dac_bits": 4, "dac_range": 2},
    })  # fmt: skip
    assert cfg.device.read_noise.sigma == 1.0 and isinstance(cfg.device.read_noise.sigma, float)
    assert cfg.device.bits == 4 and cfg.device.range_std == 0.5
    assert cfg.converter.dac_range == 2.0


@pytest.mark.parametrize(
    ("device", "match"),
    [
        ({"preset": {"zzz": 1}}, r"preset = \{'zzz': 1\}: should be the name of a device preset"),
        ({"preset": ["pcm"]}, r"preset = \['pcm'\]: should be the name of a device preset"),
        ({"preset": 3}, r"preset = 3: should be the name of a device preset \(a string\); known: "),
        ({"preset_file": 3}, r"preset_file = 3: should be the path of a preset file"),
        ({"preset_file": ["a.toml"]}, r"preset_file = \['a\.toml'\]: should be the path"),
    ],
)
def test_a_preset_that_is_not_a_name_is_one_config_error(device, match):
    with pytest.raises(ConfigError, match=match) as err:
        validate(AnalogConfig, {"device": device})
    assert str(err.value).startswith("config: device: ") and "\n" not in str(err.value)


def test_a_preset_file_whose_preset_is_a_table_names_the_file(tmp_path):
    from nvmsim.config import load_preset_file

    p = write(tmp_path, 'citation = "x"\npreset = { a = 1 }\n', "dev.toml")
    with pytest.raises(ConfigError, match=r"preset = \{'a': 1\}: should be the name") as err:
        load_preset_file(p)
    assert str(err.value).startswith(f"{p}: ")
