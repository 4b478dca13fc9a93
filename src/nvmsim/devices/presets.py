"""Device presets: representative parameters of real technologies, with their sources.

Values are normalised as everywhere in nvmsim (``Gmax == 1``, ``sigma`` relative); the
absolute ``g_max_siemens`` matters only for energy and IR drop. They are starting points
taken from the cited work, not a fit to any one chip: override any field in a config file.
"""

from __future__ import annotations

import copy
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # No non-ideality at all: analog layers reproduce torch exactly.
    "ideal": {"name": "ideal"},
    # TaOx ReRAM as modelled by Sandia for paper 000: Marinella et al., "Multiscale co-design
    # analysis of energy, latency, area, and accuracy of a ReRAM analog neural training
    # accelerator", IEEE JETCAS 8(1), 2018 (on/off ~10, LRS ~10 kOhm); noise level sigma_syn =
    # 0.025 as studied in Bennett et al. (paper 000).
    "reram": {
        "name": "reram",
        "on_off_ratio": 10.0,
        "g_max_siemens": 1e-4,
        "programming_error": {"kind": "proportional", "sigma": 0.025},
        "read_noise": {"kind": "proportional", "sigma": 0.025},
    },
    # Charge-trap SONOS in subthreshold: Xiao et al., "An accurate, error-tolerant, and
    # energy-efficient neural network inference engine based on SONOS analog memory", IEEE
    # TCAS-I 69(4), 2022 (currents of nA, very large on/off, few-percent programming spread).
    "sonos": {
        "name": "sonos",
        "on_off_ratio": 1000.0,
        "g_max_siemens": 1e-6,
        "programming_error": {"kind": "proportional", "sigma": 0.02},
        "read_noise": {"kind": "proportional", "sigma": 0.005},
    },
    # Phase-change memory: Joshi et al., "Accurate deep neural network inference using
    # computational phase-change memory", Nat. Commun. 11, 2473 (2020): Gmax ~25 uS,
    # programming noise of ~1 uS (additive ~4 %), drift exponent nu ~0.05 with spread.
    "pcm": {
        "name": "pcm",
        "on_off_ratio": 100.0,
        "g_max_siemens": 25e-6,
        "programming_error": {"kind": "additive", "sigma": 0.04},
        "read_noise": {"kind": "proportional", "sigma": 0.01},
        "drift_nu": 0.05,
        "drift_nu_std": 0.01,
        "drift_t0": 20.0,
    },
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset_values(name: str) -> dict[str, Any]:
    """A fresh copy of a preset's raw values (for merging with user overrides)."""
    if name not in PRESETS:
        raise ValueError(f"unknown device preset {name!r}; known: {', '.join(preset_names())}")
    return copy.deepcopy(PRESETS[name])


def preset(name: str, **overrides: Any):
    """A validated :class:`~nvmsim.config.DeviceConfig` for a named preset."""
    from nvmsim.config import DeviceConfig

    return DeviceConfig.model_validate({"preset": name, **overrides})
