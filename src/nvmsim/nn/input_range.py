"""DAC input ranges learned in hardware-aware training, carried by the trained torch model.

A network trained with ``input_range = "learned"`` (:mod:`nvmsim.training.hwa`) comes back as
a plain torch model whose attribute ``nvmsim_input_ranges`` maps each analog layer's name (its
module path in the converted model, ``"fc1"`` or ``"lstm.arrays.ih_l0"``) to the DAC range it
learned. :func:`nvmsim.convert` fixes each of those layers' DAC range to it (instead of
calibrating on the first batch) when the config has a DAC with ``dac_range = "auto"``;
checkpoints keep the ranges in their metadata. Like batch-norm statistics, the ranges belong
to the trained network, not to the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import nn

from nvmsim.nn.base import AnalogMixin

#: The torch model's attribute that holds ``{analog layer name: learned DAC range}``.
ATTR = "nvmsim_input_ranges"


def checked_ranges(ranges: object, where: str) -> dict[str, float]:
    """``ranges`` as ``{name: range}``; a one-line error naming ``where`` unless every name is
    a string and every range a finite number above 0."""
    if not isinstance(ranges, Mapping):
        raise ValueError(f"{where}: input ranges must map layer names to numbers, got {ranges!r}")
    out = {}
    for name, value in ranges.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not isinstance(name, str) or not ok or not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"{where}: input range of layer {name!r} must be a finite number > 0, got {value!r}"
            )
        out[name] = float(value)
    return out


def learned_ranges(model: nn.Module) -> dict[str, float]:
    """The DAC ranges ``model`` learned (empty if it learned none)."""
    return dict(getattr(model, ATTR, None) or {})


def attach_ranges(model: nn.Module, ranges: Mapping[str, float]) -> nn.Module:
    """Record learned DAC ranges on a torch model (checked); returns ``model``."""
    object.__setattr__(model, ATTR, checked_ranges(ranges, type(model).__name__))
    return model


def apply_ranges(analog: nn.Module, ranges: Mapping[str, float]) -> None:
    """Fix the DAC range of every analog layer of ``analog`` named in ``ranges`` (layers
    left digital, by ``exclude`` say, are skipped)."""
    for name, layer in analog.named_modules():
        if isinstance(layer, AnalogMixin) and name in ranges:
            layer.set_input_range(ranges[name])
