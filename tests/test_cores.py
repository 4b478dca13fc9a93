"""Core presets: whole cores from one name, overridable table by table."""

import pytest
import torch
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.cores import CORES
from nvmsim.crossbar.sliced import SlicedTile
from nvmsim.nn import convert


@pytest.mark.parametrize("name", sorted(CORES))
def test_every_core_validates_and_runs(name):
    cfg = AnalogConfig(preset=name)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    x = torch.rand(16, 64)
    with torch.no_grad():
        y, ref = convert(model, cfg)(x), model(x)
    assert torch.isfinite(y).all()
    assert torch.corrcoef(torch.stack([y.flatten(), ref.flatten()]))[0, 1] > 0.9
    assert isinstance(convert(model, cfg)[0].tile, SlicedTile) == (cfg.crossbar.weight_slices > 1)


def test_aihwkit_inference_is_aihwkits_io_defaults():
    c = AnalogConfig(preset="aihwkit_inference").converter
    assert (c.dac_bits, c.adc_bits, c.adc_range, c.output_noise) == (7, 9, 12.0, 0.06)
    assert 2 ** (c.dac_bits - 1) - 1 == 63  # inp_res = 1/126 of [-1, 1]: steps of 1/63
    assert c.adc_range / (2 ** (c.adc_bits - 1) - 1) == pytest.approx(24 / 510)  # out_res
    assert (c.noise_management, c.bound_management, c.max_bound_factor) == (
        "abs_max", "iterative", 16.0,
    )  # fmt: skip


def test_explicit_keys_override_a_core():
    cfg = validate(
        AnalogConfig, {"preset": "isaac", "device": "reram", "converter": {"adc_bits": 6}}
    )
    assert (cfg.device.name, cfg.device.bits, cfg.converter.adc_bits) == ("reram", 2, 6)
    assert cfg.converter.input_bits_per_read == 1 and cfg.crossbar.weight_slices == 4
    with pytest.raises(ValueError, match="unknown core preset 'tpu'; known: aihwkit_inference"):
        validate(AnalogConfig, {"preset": "tpu"})


@pytest.mark.parametrize("name", [["isaac"], {"a": 1}, 3, None])
def test_a_core_preset_that_is_not_a_name_is_one_config_error(name):
    from nvmsim.config import ConfigError

    with pytest.raises(ConfigError, match=r"preset = .*: should be the name of a core preset "
                       r"\(a string\); known: aihwkit_inference, isaac, prime") as err:  # fmt: skip
        validate(AnalogConfig, {"preset": name})
    assert "\n" not in str(err.value)
