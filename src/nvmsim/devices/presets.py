"""Device presets: representative parameters of real technologies, with their sources.

Data only (validation into a :class:`~nvmsim.config.DeviceConfig` is in :mod:`nvmsim.config`).
Values are normalised as everywhere in nvmsim (``Gmax == 1``, ``sigma`` relative); the
absolute ``g_max_siemens`` matters only for energy and IR drop. They are starting points
taken from the cited work, not a fit to any one chip: override any field in a config file,
or write your own preset file (:func:`nvmsim.config.load_preset_file`): a TOML file with
:class:`~nvmsim.config.DeviceConfig` fields and a ``citation``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # No non-ideality at all: analog layers reproduce torch exactly.
    "ideal": {
        "name": "ideal",
        "citation": "No non-ideality: the analog layers reproduce torch exactly (reference).",
    },
    # TaOx ReRAM as modelled by Sandia for paper 000 (on/off ~10, LRS ~10 kOhm); noise level
    # sigma_syn = 0.025 as studied in Bennett et al. (paper 000).
    "reram": {
        "name": "reram",
        "citation": (
            "Marinella et al., 'Multiscale co-design analysis of energy, latency, area, and "
            "accuracy of a ReRAM analog neural training accelerator', IEEE JETCAS 8(1), 2018 "
            "(TaOx, on/off ~10, LRS ~10 kOhm); sigma_syn = 0.025 as in paper 000."
        ),
        "on_off_ratio": 10.0,
        "g_max_siemens": 1e-4,
        "programming_error": {"kind": "proportional", "sigma": 0.025},
        "read_noise": {"kind": "proportional", "sigma": 0.025},
    },
    # Charge-trap SONOS in subthreshold: currents of nA, very large on/off, few-percent
    # programming spread.
    "sonos": {
        "name": "sonos",
        "citation": (
            "Xiao et al., 'An accurate, error-tolerant, and energy-efficient neural network "
            "inference engine based on SONOS analog memory', IEEE TCAS-I 69(4), 2022."
        ),
        "on_off_ratio": 1000.0,
        "g_max_siemens": 1e-6,
        "programming_error": {"kind": "proportional", "sigma": 0.02},
        "read_noise": {"kind": "proportional", "sigma": 0.005},
    },
    # Phase-change memory: Gmax ~25 uS; programming noise std c0 + c1 G + c2 G^2 with the
    # coefficients of Nandakumar et al. / aihwkit's PCMLikeNoiseModel (0.26348, 1.9650,
    # -1.1731 uS at Gmax = 25 uS, here divided by 25: ~1 % of Gmax at Gmin, ~4 % at Gmax);
    # drift exponent nu ~0.05 with spread, measured from t0 = 20 s.
    "pcm": {
        "name": "pcm",
        "citation": (
            "Joshi et al., 'Accurate deep neural network inference using computational "
            "phase-change memory', Nat. Commun. 11, 2473 (2020); programming-noise polynomial "
            "of Nandakumar et al., ICECS 2019 (as in aihwkit's PCMLikeNoiseModel)."
        ),
        "on_off_ratio": 100.0,
        "g_max_siemens": 25e-6,
        "programming_error": {
            "kind": "polynomial",
            "coeffs": [0.26348 / 25, 1.9650 / 25, -1.1731 / 25],
        },
        "read_noise": {"kind": "proportional", "sigma": 0.01},
        "drift_nu": 0.05,
        "drift_nu_std": 0.01,
        "drift_t0": 20.0,
    },
    # Pr0.7Ca0.3MnO3: non-filamentary, area-dependent (interface) switching with gradual but
    # stochastic steps: a modest conductance contrast, sizeable write noise and device-to-device
    # spread, and LRS relaxation towards the HRS (retention loss; improved, not removed, by the
    # MoOx buffer of Jang et al.). Representative values, not a fit.
    "pcmo": {
        "name": "pcmo",
        "citation": (
            "Park et al., 'Neuromorphic speech systems using advanced ReRAM-based synapse', "
            "IEDM 2013 (Pr0.7Ca0.3MnO3 synapse arrays); Jang et al. and Fumarola et al., "
            "'Bidirectional non-filamentary RRAM as an analog neuromorphic synapse', Parts I "
            "and II, IEEE J-EDS 6, 2018 (Al/Mo/PCMO contrast, stochastic steps, LRS "
            "retention), the PCMO data used in Sandia's CrossSim studies."
        ),
        "on_off_ratio": 8.0,
        "g_max_siemens": 5e-6,
        "programming_error": {"kind": "proportional", "sigma": 0.05},
        "read_noise": {"kind": "proportional", "sigma": 0.01},
        "range_std": 0.1,
        "retention": {"tau": 1e7, "target": "gmin"},
    },
    # Electrochemical RAM (Li-ion / ionic floating gate): many near-linear symmetric states,
    # very low cycle-to-cycle noise (< 0.5 %, paper 001), high resistance (low parasitics);
    # without an access device the stored charge relaxes towards the electrochemical
    # equilibrium (mid range). tau is illustrative: set it from your own retention data.
    "ecram": {
        "name": "ecram",
        "citation": (
            "Tang et al., 'ECRAM as scalable synaptic cell for high-speed, low-power "
            "neuromorphic computing', IEDM 2018; Fuller et al., 'Parallel programming of an "
            "ionic floating-gate memory array for scalable neuromorphic computing', Science "
            "364, 570 (2019); read noise < 0.5 % as cited in paper 001 (Li et al., 2021)."
        ),
        "on_off_ratio": 10.0,
        "g_max_siemens": 1e-6,
        "programming_error": {"kind": "proportional", "sigma": 0.01},
        "read_noise": {"kind": "proportional", "sigma": 0.005},
        "retention": {"tau": 1e8, "target": "mid"},
    },
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset_values(name: str) -> dict[str, Any]:
    """A fresh copy of a preset's raw values (for merging with user overrides)."""
    if name not in PRESETS:
        raise ValueError(f"unknown device preset {name!r}; known: {', '.join(preset_names())}")
    return copy.deepcopy(PRESETS[name])


def _noise(cfg) -> str:
    kind = cfg.kind
    if kind == "table":
        pts = ", ".join(f"{g:g}:{s:g}" for g, s in zip(cfg.g_points, cfg.sigma_points, strict=True))
        return f"table G:std {pts}"
    if kind == "polynomial":
        return "poly " + " ".join(f"{c:+.3g}G^{k}" for k, c in enumerate(cfg.coeffs))
    if not cfg.sigma:
        return "-"
    return (
        f"{cfg.sigma:g} {'x Gmax' if kind == 'additive' else 'x G' if kind != 'weight' else 'x w'}"
    )


def summary(dev) -> dict[str, str]:
    """A short text for every group of a device's parameters (for tables and docs)."""
    levels = (
        f"{len(dev.levels)} listed"
        if dev.levels is not None
        else f"{2**dev.bits} {dev.level_spacing}"
        if dev.bits is not None
        else "analog"
    )
    read = [_noise(dev.read_noise)] if dev.read_noise.active else []
    if dev.flicker_noise.active:
        f = dev.flicker_noise
        read.append(f"1/f K={f.k:g} [{f.f_min:g}, {f.f_max:g}] Hz")
    if dev.telegraph_noise.active:
        tn = dev.telegraph_noise
        unit = "Gmax" if tn.kind == "additive" else "G"
        read.append(f"RTN {tn.delta:+g} {unit} p={tn.p:g}")
    time = []
    if dev.drift_nu or dev.drift_nu_std:
        time.append(f"nu {dev.drift_nu:g} ± {dev.drift_nu_std:g} (t0 {dev.drift_t0:g} s)")
    if dev.retention.active:
        time.append(f"tau {dev.retention.tau:.3g} s -> {dev.retention.target}")
    faults = []
    if dev.stuck_at_gmin or dev.stuck_at_gmax:
        faults.append(f"stuck {dev.stuck_at_gmin:g}/{dev.stuck_at_gmax:g}")
    if dev.dead_rows or dev.dead_cols:
        faults.append(f"dead rows {dev.dead_rows:g} cols {dev.dead_cols:g} ({dev.dead_state})")
    if dev.range_std:
        faults.append(f"range spread {dev.range_std:g}")
    return {
        "Gmax (S)": f"{dev.g_max_siemens:.3g}",
        "on/off": "inf" if math.isinf(dev.on_off_ratio) else f"{dev.on_off_ratio:g}",
        "levels": levels,
        "prog. error": _noise(dev.programming_error) if dev.programming_error.active else "-",
        "read noise": "; ".join(read) or "-",
        "drift / retention": "; ".join(time) or "-",
        "variability / faults": "; ".join(faults) or "-",
        "drift comp.": {True: "global", False: "no"}.get(
            dev.drift_compensation, dev.drift_compensation
        ),
    }
