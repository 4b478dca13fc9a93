"""The one table of human-readable labels and units for sweep axes and metrics.

Figures, tables and exports take their wording from here, so a key reads the same everywhere
(``sigma_syn`` -> "read noise sigma (x G)"). A unit is either fixed or depends on a "kind"
stored in each run's resolved config (a proportional noise sigma is relative to ``G``, an
additive one to ``Gmax``); an unknown key falls back to the key itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nvmsim.studies.schema import AXES

# Unit of a noise sigma per noise kind (nvmsim.devices.noise); table/polynomial give no unit.
NOISE_UNITS = {"additive": "x Gmax", "proportional": "x G"}
# Unit of the test-input noise level per perturbation (nvmsim.data.perturb), on [0, 1] pixels.
INPUT_NOISE_UNITS = {
    "gaussian": "x pixel range", "speckle": "x pixel value", "salt_pepper": "fraction of pixels",
}  # fmt: skip

PROG_UNIT = ("analog.device.programming_error.kind", NOISE_UNITS)

# key -> (text, unit): a unit is a string, or (config path of a kind, {kind: unit}).
LABELS: dict[str, tuple[str, Any]] = {
    # metrics
    "accuracy": ("accuracy", "%"),
    "accuracy_before": ("accuracy before retraining", "%"),
    "improvement": ("accuracy gain from retraining", "pp"),
    "train_accuracy": ("training accuracy", "%"),
    "software_accuracy": ("software (digital) accuracy", "%"),
    "loss": ("test loss (cross-entropy)", ""),
    "software_loss": ("software (digital) test loss", ""),
    "energy_nj": ("energy per inference", "nJ"),
    "vmm_nj": ("crossbar VMM energy per inference", "nJ"),
    "seconds": ("wall time", "s"),
    "repeats": ("device instances (repeats)", ""),
    # sweep axes (nvmsim.studies.schema.AXES; dotted paths resolve to these)
    "model": ("model", ""),
    "dataset": ("dataset", ""),
    "preprocess": ("input preprocessing", ""),
    "sigma_syn": ("read noise sigma", ("analog.device.read_noise.kind", NOISE_UNITS)),
    "read_noise_kind": ("read noise kind", ""),
    "sigma_prog": ("programming error sigma", PROG_UNIT),
    "alpha": ("programming error sigma", PROG_UNIT),
    "bits": ("conductance resolution", "bits"),
    "device": ("device preset", ""),
    "on_off_ratio": ("on/off ratio Gmax/Gmin", ""),
    "mapping": ("weight mapping", ""),
    "tile_size": ("tile size (rows = columns)", ""),
    "r_wire": ("wire resistance per segment", "ohm"),
    "adc_bits": ("ADC resolution", "bits"),
    "dac_bits": ("DAC resolution", "bits"),
    "sigma_te": ("test-input noise sigma", ("scenario.test_noise", INPUT_NOISE_UNITS)),
    "test_noise": ("test-input noise kind", ""),
    "drift_time": ("drift time", "s"),
    "energy": ("technology (energy model)", ""),
    "sigma_neu": ("neuron noise sigma in training", ""),
    "hidden_layers": ("hidden layers", ""),
    "epochs": ("training epochs", ""),
    "t": ("RNN time steps", ""),
    "detector_hidden": ("detector hidden units", ""),
    "n_fe": ("feature-extractor width", ""),
    "train.seed": ("training seed", ""),
    "train.batch_size": ("batch size", ""),
    "train.init": ("weight initialisation", ""),
    "train.mode": ("training (standard / hardware-aware)", ""),
    "train.device": ("training device (hardware-aware)", ""),
    "train.train_subset": ("training images used", ""),
    "data.test_subset": ("test images used", ""),
    "data.crop": ("input crop", "pixels"),
    "data.data_dir": ("data folder", ""),
    "train.lr": ("learning rate", ""),
    "train.optimizer": ("optimizer", ""),
    "train.momentum": ("momentum", ""),
    "analog.converter.input_bits_per_read": ("input bits per read", "bits"),
    "analog.crossbar.weight_slices": ("weight slices", ""),
    "scenario.clip_inputs": ("noisy inputs clipped to [0, 1]", ""),
    "scenario.onchip.lr": ("on-chip learning rate", ""),
    "scenario.onchip.asymmetry": ("on-chip SET/RESET asymmetry", ""),
    "scenario.onchip.strength": ("on-chip nonlinearity strength", ""),
    "scenario.onchip.nonlinear_extent": ("on-chip nonlinear extent", ""),
}

# Metrics that are fractions in the store and reported in percent (their ``_std`` too).
PERCENT = frozenset(
    {"accuracy", "accuracy_before", "improvement", "train_accuracy", "software_accuracy"}
)


def is_percent(key: str) -> bool:
    """Whether metric ``key`` (or its ``_std``) is a fraction reported in percent."""
    return key.removesuffix("_std") in PERCENT


def as_percent(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` with every fraction metric scaled to percent and renamed ``<key>_pct``,
    so an export states its unit in the column name; other metrics are kept as they are."""
    return {
        (f"{k}_pct" if is_percent(k) else k): (round(100 * v, 10) if is_percent(k) else v)
        for k, v in metrics.items()
    }


def _entry(key: str) -> tuple[str, Any] | None:
    """The table entry of ``key``, or of the short axis name that a dotted path stands for."""
    if key in LABELS:
        return LABELS[key]
    for short, paths in AXES.items():
        if paths == (key,) and short in LABELS:
            return LABELS[short]
    return None


def _lookup(tree: Mapping[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def unit(key: str, configs: Iterable[Mapping[str, Any]] = ()) -> str:
    """The unit of ``key`` ("" if none, or if a kind-dependent unit differs between the
    runs' resolved ``configs``)."""
    entry = _entry(key)
    if entry is None:
        return ""
    spec = entry[1]
    if isinstance(spec, str):
        return spec
    path, by_kind = spec
    kinds = {_lookup(c, path) for c in configs}
    return by_kind.get(kinds.pop(), "") if len(kinds) == 1 else ""


def label(key: str, configs: Iterable[Mapping[str, Any]] = ()) -> str:
    """``text (unit)`` of ``key`` for an axis or table header; the key itself if unknown."""
    entry = _entry(key)
    if entry is None:
        return key
    u = unit(key, configs)
    return f"{entry[0]} ({u})" if u else entry[0]


def text(key: str) -> str:
    """The words of ``key`` without a unit (legends, panel titles); the key if unknown."""
    entry = _entry(key)
    return key if entry is None else entry[0]


def group_label(names: list[str], key: tuple, fmt) -> str:
    """``text = value, ...`` of one group of runs (a legend entry or a panel title)."""
    return ", ".join(f"{text(n)} = {fmt(v)}" for n, v in zip(names, key, strict=True))
