"""Core presets: whole analog cores (device, arrays, converters), with their sources.

Data only, validated into an :class:`~nvmsim.config.AnalogConfig` by ``preset = "name"``
(``[analog] preset = "isaac"`` in a study); explicit keys override the preset's, table by
table. They describe an architecture's organisation and precision; devices are ideal cells
of the stated bits unless the source fixes a technology, so a study can put its own device
(``device.preset = "reram"``) into the core.
"""

from __future__ import annotations

import copy
from typing import Any

CORES: dict[str, dict[str, Any]] = {
    # ISAAC (Shafiee et al., ISCA 2016): 128 x 128 memristor arrays of 2-bit cells, inputs fed
    # one bit per read (1-bit DACs), one 8-bit SAR ADC shared by the 128 columns of an array,
    # shift-and-add after the ADC. ISAAC uses 16-bit weights and inputs; this preset is its
    # 8-bit configuration (4 slices of 2 bits, 8-bit inputs), as CrossSim's ISAAC-style cores.
    "isaac": {
        "device": {"name": "isaac-2bit", "bits": 2},
        "crossbar": {"tile_rows": 128, "tile_cols": 128, "weight_slices": 4},
        "converter": {
            "dac_bits": 8,
            "input_bits_per_read": 1,
            "adc_bits": 8,
            "adc_model": {"kind": "sar", "columns_per_adc": 128},
        },
    },
    # PRIME (Chi et al., ISCA 2016): ReRAM mats of 256 x 256 cells with 4-bit MLC, an 8-bit
    # weight as two 4-bit cells (high and low) on positive and negative arrays, 6-bit inputs
    # applied as two 3-bit phases, and 6-bit reconfigurable sense amplifiers as ADCs.
    "prime": {
        "device": {"name": "prime-4bit", "bits": 4},
        "crossbar": {"tile_rows": 256, "tile_cols": 256, "weight_slices": 2},
        "converter": {"dac_bits": 6, "input_bits_per_read": 3, "adc_bits": 6},
    },
    # aihwkit's InferenceRPUConfig() defaults (IBM aihwkit 0.9, simulator/configs/configs.py,
    # parameters/io.py): PCM-like devices, 512 x 512 tiles, digital bias, global drift
    # compensation; per input vector abs-max noise management, a 7-bit DAC (inp_res 1/126 of
    # [-1, 1]), out_noise 0.06 and a 9-bit ADC over +-12 (out_res 1/510) in units of the
    # normalised input times the weight, iterative bound management up to 16x.
    "aihwkit_inference": {
        "device": {"preset": "pcm", "drift_compensation": "global"},
        "crossbar": {"tile_rows": 512, "tile_cols": 512, "bias": "digital"},
        "converter": {
            "dac_bits": 7,
            "adc_bits": 9,
            "adc_range": 12.0,
            "output_noise": 0.06,
            "noise_management": "abs_max",
            "bound_management": "iterative",
            "max_bound_factor": 16.0,
        },
    },
}


def core_values(name: str) -> dict[str, Any]:
    """A copy of one core preset's values; unknown names list the known ones."""
    if name not in CORES:
        raise ValueError(f"unknown core preset {name!r}; known: {', '.join(sorted(CORES))}")
    return copy.deepcopy(CORES[name])
