"""Learned DAC ranges carried by a torch model into ``convert`` and checkpoints."""

import json
import math

import pytest
import torch
from safetensors.torch import save as st_save
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.io import CheckpointError, load_checkpoint
from nvmsim.io.checkpoint import _digest
from nvmsim.nn import convert
from nvmsim.nn.input_range import attach_ranges, learned_ranges

DAC = validate(AnalogConfig, {"converter": {"dac_bits": 3}})


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2), nn.LSTM(2, 3))


def test_convert_fixes_the_learned_ranges_of_the_named_layers():
    net = attach_ranges(_net(), {"0": 0.5, "3.arrays.hh_l0": 2.0})
    analog = convert(net, DAC).requires_grad_(False)
    x = torch.rand(7, 4) * 2
    y = analog[:3](x)
    layers = dict(analog.named_modules())
    assert float(layers["0"].tile.dac_range) == 0.5  # fixed, not max |x|
    assert float(layers["2"].tile.dac_range) == pytest.approx(float(analog[:2](x).abs().max()))
    analog[3](y.unsqueeze(1))
    assert float(layers["3.arrays.hh_l0"].tile.dac_range) == 2.0
    # the learned range sets the DAC step: inputs beyond it clip
    q = layers["0"].tile.dac(x.clone())
    assert float(q.max()) == pytest.approx(0.5) and torch.allclose(
        q, torch.round(x.clamp(-0.5, 0.5) / (0.5 / 3)) * (0.5 / 3)
    )
    # without a DAC, or with a fixed one in the config, the ranges do nothing
    fixed = validate(AnalogConfig, {"converter": {"dac_bits": 3, "dac_range": 4.0}})
    first = convert(net, fixed)[0]
    first(x)
    assert float(first.tile.dac_range) == 4.0


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, "2", True])
def test_bad_ranges_are_refused(bad):
    with pytest.raises(ValueError, match="input range of layer '0' must be a finite number > 0"):
        attach_ranges(_net(), {"0": bad})


@pytest.mark.parametrize("ranges", [{"0": -2.0}, {"0": "big"}, [1.0]])
def test_checkpoint_with_malformed_ranges_is_refused(tmp_path, ranges):
    tensors = {k: v.contiguous() for k, v in _net().state_dict().items()}
    info = {"arch": {"name": "net"}, "input_ranges": ranges}
    meta = {"format": "nvmsim-checkpoint", "format_version": "1", "sha256": _digest(tensors),
            "info": json.dumps(info)}  # fmt: skip
    path = tmp_path / "c.st"
    path.write_bytes(st_save(tensors, metadata=meta))
    with pytest.raises(CheckpointError, match=r"c\.st: metadata: input range") as err:
        load_checkpoint(path, build=_net())
    assert "\n" not in str(err.value)


def test_learned_ranges_of_a_model_without_them_are_empty():
    assert learned_ranges(_net()) == {}
