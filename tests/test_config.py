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
