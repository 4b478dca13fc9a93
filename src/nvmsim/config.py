"""Validated settings for every part of the simulator, loadable from TOML.

All models forbid unknown keys, so a typo in a config file is an error that names the key
(and the file, when loaded with :func:`load_toml`), never a silently ignored setting.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from nvmsim.cores import CORES, core_values
from nvmsim.devices.presets import preset_names, preset_values

NoiseKind = Literal["additive", "proportional"]
ProgKind = Literal["additive", "proportional", "weight"]
ClipMode = Literal["zero", "range", "none"]


def _refuse_text(what: str):
    """A check that refuses a string or a boolean where a number belongs: pydantic's lax
    mode would read ``"0.1"`` as 0.1 and ``true`` as 1, hiding a wrong value in a file."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"should be {what}, not a boolean")
        if isinstance(value, str | bytes):
            raise ValueError(f"should be {what}, not a string")
        return value

    return check


#: A float field that takes numbers only (any int or float, never a string or a boolean).
Number = Annotated[float, BeforeValidator(_refuse_text("a number"))]
#: :data:`Number`, and finite.
FiniteNumber = Annotated[Number, Field(allow_inf_nan=False)]
#: An int field that takes integers only (never a string or a boolean).
Integer = Annotated[int, BeforeValidator(_refuse_text("an integer"))]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class NoiseConfig(_Strict):
    """Gaussian conductance noise.

    ``additive``: std ``sigma * Gmax``; ``proportional``: std ``sigma * G``. For programming
    error, ``weight`` is paper 003's ``g(w) = (1 + sigma * N(0, 1)) * w`` on the weight itself.
    """

    kind: ProgKind = "proportional"
    sigma: Number = Field(0.0, ge=0.0, allow_inf_nan=False)


class ReadNoiseConfig(NoiseConfig):
    kind: NoiseKind = "proportional"  # type: ignore[assignment]


SigmaKind = Literal["table", "polynomial"]
_FINITE = {"allow_inf_nan": False}

#: Largest weight error from float32 rounding of conductances, relative to the weight range.
WEIGHT_RTOL = 1e-5
#: Weights are conductance differences, ``(G - Gref) * 2 Wmax / (1 - Gmin)`` at worst (offset
#: mapping); float32 rounds each G near Gmax by up to 2**-25, so the weight error is up to
#: ``2**-23 / (1 - Gmin)`` of Wmax. Keeping it below WEIGHT_RTOL bounds ``1 - 1/on_off_ratio``.
MIN_ON_OFF_RATIO = 1.0 / (1.0 - 2.0**-23 / WEIGHT_RTOL)


class _ConductanceDependent(_Strict):
    """Fields shared by noise whose std may depend on the conductance ``G`` (``Gmax == 1``).

    ``table``: std in units of Gmax interpolated piecewise-linearly in ``g_points`` (strictly
    increasing) -> ``sigma_points``, constant beyond the ends. ``polynomial``: std
    ``max(0, sum_k coeffs[k] * G**k)`` in units of Gmax (aihwkit's PCM form). For these two
    kinds ``sigma`` is not used.
    """

    g_points: tuple[Number, ...] = ()
    sigma_points: tuple[Number, ...] = ()
    coeffs: tuple[Number, ...] = ()

    @model_validator(mode="after")
    def _shape_of_table(self):
        kind = self.kind  # type: ignore[attr-defined]
        if kind == "table":
            g, s = self.g_points, self.sigma_points
            if len(g) < 2 or len(g) != len(s):
                raise ValueError(
                    "kind = 'table' needs g_points and sigma_points of equal length >= 2"
                )
            if not all(math.isfinite(v) for v in (*g, *s)):
                raise ValueError("g_points and sigma_points must be finite")
            if any(b <= a for a, b in zip(g, g[1:], strict=False)):
                raise ValueError("g_points must be strictly increasing")
            if min(s) < 0:
                raise ValueError("sigma_points must be >= 0")
        elif self.g_points or self.sigma_points:
            raise ValueError("g_points / sigma_points are only used with kind = 'table'")
        if kind == "polynomial":
            if not self.coeffs or not all(math.isfinite(c) for c in self.coeffs):
                raise ValueError("kind = 'polynomial' needs finite coeffs (c0, c1, ...)")
        elif self.coeffs:
            raise ValueError("coeffs are only used with kind = 'polynomial'")
        return self

    @property
    def active(self) -> bool:
        """Whether this noise is on at all."""
        kind = self.kind  # type: ignore[attr-defined]
        if kind == "table":
            return max(self.sigma_points) > 0
        if kind == "polynomial":
            return any(c != 0 for c in self.coeffs)
        return self.sigma > 0  # type: ignore[attr-defined]


class ProgrammingErrorConfig(_ConductanceDependent, NoiseConfig):
    """Programming error, drawn once at ``program()``: Gaussian with std ``sigma * Gmax``
    (additive), ``sigma * G`` (proportional), from a table or polynomial in ``G``, or paper
    003's ``weight`` error."""

    kind: ProgKind | SigmaKind = "proportional"  # type: ignore[assignment]


class DeviceReadNoiseConfig(_ConductanceDependent, ReadNoiseConfig):
    """Gaussian read noise, fresh on every read: additive, proportional, table or polynomial."""

    kind: NoiseKind | SigmaKind = "proportional"  # type: ignore[assignment]


class FlickerNoiseConfig(_Strict):
    """1/f read noise integrated over the read bandwidth ``[f_min, f_max]`` (Hz).

    Per read it is Gaussian with variance ``k * G**2 * ln(f_max / f_min)`` (Joshi et al. 2020,
    aihwkit's PCM model). Reads are treated as independent (the slow correlation of 1/f noise
    between successive reads is not modelled).
    """

    k: Number = Field(0.0, ge=0.0, **_FINITE)
    f_min: Number = Field(1.0, gt=0.0, **_FINITE)
    f_max: Number = Field(1e6, gt=0.0, **_FINITE)

    @property
    def active(self) -> bool:
        return self.k > 0

    @model_validator(mode="after")
    def _band(self) -> FlickerNoiseConfig:
        if self.f_max <= self.f_min:
            raise ValueError("f_max must be greater than f_min")
        return self


class TelegraphNoiseConfig(_Strict):
    """Random telegraph noise: on each read a device sits in its second state with
    probability ``p``, where its conductance is shifted by ``delta * Gmax`` (additive) or
    ``delta * G`` (proportional); ``delta`` < 0 lowers it. Mean shift ``p * dG``, variance
    ``p * (1 - p) * dG**2``."""

    kind: NoiseKind = "proportional"
    delta: Number = Field(0.0, ge=-1.0, le=1.0)
    p: Number = Field(0.5, ge=0.0, le=1.0)

    @property
    def active(self) -> bool:
        return self.delta != 0 and self.p > 0


class RetentionConfig(_Strict):
    """Relaxation ``G(t) = G_inf + (G - G_inf) * exp(-t / tau)``, ``tau`` in seconds.

    ``target`` is ``G_inf``: ``"gmin"`` (each device's Gmin), ``"mid"`` (the middle of each
    device's range) or a normalised conductance in ``[0, 1]``.
    """

    tau: Number = Field(math.inf, gt=0.0)
    target: Literal["gmin", "mid"] | Number = "gmin"

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        ok = v in ("gmin", "mid") or (
            isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0
        )
        if not ok:
            raise ValueError(f"target must be 'gmin', 'mid' or a number in [0, 1], got {v!r}")
        return v

    @property
    def active(self) -> bool:
        return self.tau != math.inf


class DeviceConfig(_Strict):
    """One cell's physics. Conductances are normalised so that ``Gmax == 1``.

    Effects compose in this order (see docs/devices.md): target mapping -> quantisation to
    ``bits`` / ``levels`` -> device range factor (``range_std``) -> programming error ->
    faults (stuck-at, dead rows/columns) -> clip; then, at ``drift_to(t)``, power-law drift ->
    retention; then, on each read, read noise (Gaussian, 1/f, telegraph) -> clip -> drift
    compensation -> ADC.

    ``preset = "name"`` or ``preset_file = "path.toml"`` fills in values first; explicit keys
    override them.
    """

    name: str = "custom"
    citation: str = ""
    on_off_ratio: Number = Field(float("inf"), gt=1.0)
    g_max_siemens: Number = Field(1e-4, gt=0.0, allow_inf_nan=False)
    bits: Integer | None = Field(None, ge=1, le=16)
    level_spacing: Literal["uniform", "geometric"] = "uniform"
    levels: tuple[Number, ...] | None = None
    range_std: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    programming_error: ProgrammingErrorConfig = ProgrammingErrorConfig()
    read_noise: DeviceReadNoiseConfig = DeviceReadNoiseConfig()
    flicker_noise: FlickerNoiseConfig = FlickerNoiseConfig()
    telegraph_noise: TelegraphNoiseConfig = TelegraphNoiseConfig()
    drift_nu: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    drift_nu_std: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    drift_t0: Number = Field(1.0, gt=0.0, allow_inf_nan=False)
    retention: RetentionConfig = RetentionConfig()
    #: True or "global": one gain per tile (Joshi et al. 2020); "column": one per physical
    #: column; "array": one per array (row block x column block), each from an all-ones
    #: calibration read right after programming and again at read time
    drift_compensation: bool | Literal["global", "column", "array"] = False
    stuck_at_gmin: Number = Field(0.0, ge=0.0, le=1.0)
    stuck_at_gmax: Number = Field(0.0, ge=0.0, le=1.0)
    dead_rows: Number = Field(0.0, ge=0.0, le=1.0)
    dead_cols: Number = Field(0.0, ge=0.0, le=1.0)
    dead_state: Literal["open", "gmin"] = "open"
    clip: ClipMode = "zero"

    @field_validator("on_off_ratio")
    @classmethod
    def _resolvable(cls, v: float) -> float:
        if v < MIN_ON_OFF_RATIO:
            raise ValueError(
                f"on_off_ratio must be >= {MIN_ON_OFF_RATIO:.4f}: float32 rounding of G "
                f"(2**-25 Gmax) gives weight errors of 2**-23 / (1 - 1/on_off_ratio) of Wmax, "
                f"above {WEIGHT_RTOL:g} for smaller ratios"
            )
        return v

    @property
    def g_min(self) -> float:
        """Normalised minimum conductance ``Gmin / Gmax``."""
        return 0.0 if self.on_off_ratio == float("inf") else 1.0 / self.on_off_ratio

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """``preset = "reram"`` or ``preset_file = "my.toml"`` fills in values; explicit keys
        override them (tables are merged key by key)."""
        if not isinstance(data, dict) or not ({"preset", "preset_file"} & data.keys()):
            return data
        data = dict(data)
        if "preset_file" in data:
            if "preset" in data:
                raise ValueError("give either preset or preset_file, not both")
            path = data.pop("preset_file")
            if not isinstance(path, str | Path):
                raise ValueError(
                    f"preset_file = {_shown(path)}: should be the path of a preset file (a string)"
                )
            data = _merge(preset_file_values(path), data)
        if "preset" in data:
            name = _preset_name(data.pop("preset"), "device", preset_names())
            data = _merge(preset_values(name), data)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> DeviceConfig:
        if self.stuck_at_gmin + self.stuck_at_gmax > 1.0:
            raise ValueError("stuck_at_gmin + stuck_at_gmax must not exceed 1")
        if self.levels is not None:
            lv = self.levels
            if self.bits is not None:
                raise ValueError("give either bits or levels, not both")
            if len(lv) < 2 or any(b <= a for a, b in zip(lv, lv[1:], strict=False)):
                raise ValueError("levels must be at least 2 strictly increasing conductances")
            if not (0.0 <= lv[0] and lv[-1] <= 1.0):
                raise ValueError("levels are normalised conductances and must lie in [0, 1]")
        if self.level_spacing == "geometric":
            if self.bits is None:
                raise ValueError("level_spacing = 'geometric' needs bits")
            if self.g_min <= 0:
                raise ValueError("level_spacing = 'geometric' needs a finite on_off_ratio")
        return self


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; nested tables are merged one level deep."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


class CrossbarConfig(_Strict):
    """How a weight matrix is laid out on arrays, and the arrays' wires.

    ``r_row`` / ``r_col`` are the resistances (ohm) of one wire segment between neighbouring
    cells; with either > 0 every array's exact IR drop is solved once at programming time.
    ``conv_rows``: ``"channel"`` keeps each input channel's kernel rows on one array (arrays of
    ``floor(tile_rows / k) * k`` rows for a kernel of ``k`` taps, as conv mappers do);
    ``"packed"`` fills every array to ``tile_rows`` rows (a kernel may straddle two arrays).
    """

    mapping: Literal["differential", "offset"] = "differential"
    tile_rows: Integer = Field(256, ge=1)
    tile_cols: Integer = Field(256, ge=1)
    weight_clip_percentile: Number | None = Field(None, gt=0.0, le=100.0)
    bias: Literal["digital", "analog"] = "digital"
    conv_rows: Literal["channel", "packed"] = "channel"
    #: bit slicing: each weight is a ``weight_slices * device.bits``-bit integer split over
    #: ``weight_slices`` arrays of ``device.bits``-bit cells, each array read and digitised on
    #: its own and the slices shifted and added digitally (Xiao et al. 2022; ISAAC)
    weight_slices: Integer = Field(1, ge=1, le=16)
    #: recurrent layers: ``"split"`` puts ``W_ih`` and ``W_hh`` on arrays of their own (the
    #: input matrix read for all steps at once, as aihwkit's analog LSTM); ``"joint"`` stacks
    #: ``[W_ih | W_hh]`` as the rows of one array set per layer and direction, read once per
    #: step with ``[x_t; h_{t-1}]`` (paper 000's Mosaics core): one noise draw and one ADC
    #: conversion per gate column and step instead of two
    recurrent: Literal["split", "joint"] = "split"
    r_row: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    r_col: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    r_access: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    both_ends: bool = False

    @property
    def parasitics(self) -> bool:
        """Whether wire resistance makes IR drop worth solving."""
        return self.r_row > 0 or self.r_col > 0 or self.r_access > 0


class AdcModelConfig(_Strict):
    """An ADC's architecture and errors (:mod:`nvmsim.crossbar.adc`; Spear et al. 2023).

    ``gain_std`` is relative, ``offset_std`` and ``noise`` are in LSB; mismatch is drawn
    once per chip instance (at programming), noise at every conversion. ``inl`` is a table of
    LSB at evenly spaced points over the input range, ``inl_poly`` polynomial coefficients
    (``c0 + c1 x + ...``, LSB) in the normalised input ``x`` in ``[-1, 1]``, ``dnl`` a table
    of code-width errors (LSB) over the range whose running sum adds to the INL.
    """

    kind: Literal["uniform", "sar", "ramp"] = "uniform"
    gain_std: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    offset_std: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    noise: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    capacitor_std: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    columns_per_adc: Integer = Field(1, ge=1)
    inl: tuple[Number, ...] = ()
    inl_poly: tuple[Number, ...] = ()
    dnl: tuple[Number, ...] = ()

    @model_validator(mode="after")
    def _finite_tables(self) -> AdcModelConfig:
        for name in ("inl", "inl_poly", "dnl"):
            values = getattr(self, name)
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{name} must hold finite numbers")
            if name != "inl_poly" and len(values) == 1:
                raise ValueError(f"{name} is a table over the range: give at least 2 points")
        return self


class ConverterConfig(_Strict):
    """DAC on the rows and ADC on the columns. ``None`` bits means ideal (no quantisation).

    Ranges are in the layer's own units (inputs for the DAC, partial sums for the ADC);
    ``"auto"`` calibrates the range from the first batch read and then keeps it.
    """

    dac_bits: Integer | None = Field(None, ge=1, le=16)
    dac_range: Number | Literal["auto"] = "auto"
    adc_bits: Integer | None = Field(None, ge=1, le=16)
    adc_range: Number | Literal["auto"] = "auto"
    #: ``"auto"`` ranges: the max of |x| (None) or this percentile over the calibration batch
    adc_range_percentile: Number | None = Field(None, gt=0.0, le=100.0)
    #: one ADC range per array (all its columns) or per physical column
    adc_range_per: Literal["array", "column"] = "array"
    adc_model: AdcModelConfig = AdcModelConfig()
    #: Gaussian noise on every array column's partial sum at every read, before the ADC
    #: (std in partial-sum units; aihwkit's ``out_noise``)
    output_noise: Number = Field(0.0, ge=0.0, allow_inf_nan=False)
    #: noise management (aihwkit's): ``"abs_max"`` divides each input vector (each sample of
    #: a convolution) by its max |x| before the DAC, whose range is then 1, and multiplies the
    #: digitised output back; ADC range and output noise are in those normalised units
    noise_management: Literal["none", "abs_max"] = "none"
    #: bound management (aihwkit's ``ITERATIVE``): a vector whose read saturates an ADC is
    #: read again with its inputs halved, up to ``max_bound_factor`` times smaller
    bound_management: Literal["none", "iterative"] = "none"
    max_bound_factor: Number = Field(16.0, ge=1.0, allow_inf_nan=False)
    #: bit-serial inputs: the DAC code is applied this many bits per read, each read through
    #: the ADC and the reads shifted and added digitally (None: all bits in one read)
    input_bits_per_read: Integer | None = Field(None, ge=1, le=16)
    #: inputs as two's-complement codes of a symmetric DAC, or unsigned codes over
    #: ``[0, dac_range]`` (negative inputs clamp to 0: for inputs after a ReLU)
    input_encoding: Literal["twos_complement", "unsigned"] = "twos_complement"
    #: attention's activation-by-activation products (``Q K^T``, ``A V``): exact digital
    #: arithmetic, or through converters of ``dac_bits`` / ``adc_bits`` (operands and results
    #: quantised, each over its own range per sequence and head)
    attention_products: Literal["digital", "quantized"] = "digital"

    @model_validator(mode="after")
    def _positive_ranges(self) -> ConverterConfig:
        for name in ("dac_range", "adc_range"):
            value = getattr(self, name)
            if value != "auto" and not (value > 0 and value < float("inf")):
                raise ValueError(f"{name} must be a positive finite number or 'auto'")
        model = self.adc_model
        if model != AdcModelConfig() and self.adc_bits is None:
            raise ValueError("adc_model needs adc_bits (an ideal ADC has no model)")
        if model.kind != "uniform" and self.adc_bits is not None and self.adc_bits < 2:
            raise ValueError(f"a {model.kind} ADC needs adc_bits >= 2")
        if self.input_bits_per_read is not None and self.dac_bits is None:
            raise ValueError("input_bits_per_read needs dac_bits (the code to apply bit-serially)")
        if self.input_encoding == "unsigned" and self.dac_bits is None:
            raise ValueError("input_encoding = 'unsigned' needs dac_bits")
        if self.bound_management != "none" and self.adc_bits is None:
            raise ValueError("bound_management needs adc_bits (it reacts to ADC saturation)")
        if self.noise_management != "none" and self.dac_range not in ("auto", 1.0):
            raise ValueError("with noise_management the DAC range is 1 (normalised inputs)")
        return self


class AnalogConfig(_Strict):
    """Everything an analog layer needs."""

    device: DeviceConfig = DeviceConfig()
    crossbar: CrossbarConfig = CrossbarConfig()
    converter: ConverterConfig = ConverterConfig()
    read_noise_mode: Literal["moment", "sample"] = "moment"
    #: how a CPU read draws its normals: ``"blocked"``, seeded blocks on all threads (fast,
    #: independent of the thread count) or ``"serial"``, torch's one stream per generator
    #: (the stream of nvmsim before blocks; see :mod:`nvmsim.crossbar.normals`)
    read_noise_stream: Literal["blocked", "serial"] = "blocked"
    moment_rtol: Number = Field(1e-4, ge=0.0)
    seed: Integer = Field(0, ge=0)

    @model_validator(mode="after")
    def _sampling_without_parasitics(self) -> AnalogConfig:
        if self.read_noise_mode == "sample" and self.crossbar.parasitics:
            raise ValueError(
                "read_noise_mode = 'sample' does not solve IR drop per read; use 'moment' "
                "with crossbar r_row / r_col / r_access"
            )
        return self

    @property
    def draws_at_read(self) -> bool:
        """Whether a read draws normals (read, 1/f or telegraph noise, output noise): where
        ``read_noise_stream`` can change a result."""
        dev = self.device
        noisy = dev.read_noise.active or dev.flicker_noise.active or dev.telegraph_noise.active
        return noisy or self.converter.output_noise > 0

    @property
    def sliced(self) -> bool:
        """Whether weights are bit-sliced or inputs bit-serial (a layer of several reads)."""
        return self.crossbar.weight_slices > 1 or self.converter.input_bits_per_read is not None

    @property
    def input_reads(self) -> int:
        """Reads per input vector: ``ceil(dac_bits / input_bits_per_read)``, 1 in one shot."""
        conv = self.converter
        if conv.input_bits_per_read is None:
            return 1
        return math.ceil(conv.dac_bits / conv.input_bits_per_read)

    @model_validator(mode="after")
    def _slicing(self) -> AnalogConfig:
        k, dev = self.crossbar.weight_slices, self.device
        if k > 1 and (dev.bits is None or dev.levels is not None or dev.level_spacing != "uniform"):
            raise ValueError(
                "crossbar.weight_slices > 1 needs device.bits (uniform levels per cell)"
            )
        if k > 1 and k * dev.bits > 24:
            raise ValueError(
                f"weight_slices * device.bits = {k * dev.bits} bits; at most 24 stay exact"
            )
        if self.sliced and self.crossbar.bias == "analog":
            raise ValueError(
                "bit-sliced weights and bit-serial inputs keep the bias digital "
                "(crossbar.bias = 'digital')"
            )
        if self.sliced and self.crossbar.parasitics:
            raise ValueError("bit-sliced and bit-serial reads do not solve IR drop; set r_* = 0")
        conv = self.converter
        managed = (conv.noise_management, conv.bound_management) != ("none", "none")
        if self.sliced and managed:
            raise ValueError(
                "bit-sliced and bit-serial reads take integer codes: noise and bound "
                "management are for one-shot reads"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _device_shorthand(cls, data: Any) -> Any:
        """``preset = "isaac"`` fills in a whole core (:mod:`nvmsim.cores`; explicit tables
        are merged key by key over it); ``device = "reram"`` is short for
        ``[device] preset = "reram"``."""
        if isinstance(data, dict) and isinstance(data.get("device"), str):
            data = {**data, "device": {"preset": data["device"]}}
        if isinstance(data, dict) and "preset" in data:
            data = dict(data)
            core = core_values(_preset_name(data.pop("preset"), "core", sorted(CORES)))
            mine = data.get("device")
            if isinstance(mine, dict) and mine.keys() & {"preset", "preset_file"}:
                core["device"].pop("name", None)  # the named device's own name
                core["device"].pop("preset", None)
            data = _merge(core, data)
        return data


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the source and the field."""


M = TypeVar("M", bound=BaseModel)


_TYPE_TAGS = {"float", "int", "str", "bool", "list", "dict", "tuple", "set", "none", "union"}


def _field_path(loc: tuple) -> str:
    """A pydantic error location without its union-branch tags (``float``,
    ``literal['auto']``, ``function-after[...]``, model class names)."""
    keep = [
        str(p)
        for p in loc
        if not (isinstance(p, str) and (p in _TYPE_TAGS or "[" in p or "-" in p or p[:1].isupper()))
    ]
    return ".".join(keep) or "(top level)"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _preset_name(value: Any, kind: str, known: list[str]) -> str:
    """``value`` if it can name a preset (a string; an unknown one is refused by its table)."""
    if not isinstance(value, str):
        raise ValueError(
            f"preset = {_shown(value)}: should be the name of a {kind} preset (a string); "
            f"known: {', '.join(known)}"
        )
    return value


def format_validation_error(err: ValidationError, source: str, prefix: str = "") -> str:
    """One line per field: ``source: prefix.field.path = value: message``, the messages of a
    union's branches joined with "or" (no pydantic internals)."""
    fields: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for e in err.errors():
        path = _field_path(e["loc"])
        path = f"{prefix}.{path}" if prefix and path != "(top level)" else prefix or path
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required, missing"
        elif e["msg"].startswith("Input should be "):
            msg = "should be " + msg
        if msg not in fields.setdefault(path, []):
            fields[path].append(msg)
        if e["type"] not in ("missing", "extra_forbidden") and isinstance(
            e.get("input"), str | int | float | bool | type(None)
        ):
            values.setdefault(path, e["input"])
    lines = []
    for path, msgs in fields.items():
        shown = f" = {_shown(values[path])}" if path in values else ""
        head = f"{source}: " if source else ""
        lines.append(f"{head}{path}{shown}: {' or '.join(msgs)}")
    return "\n".join(lines)


def validate(model: type[M], data: Any, source: str = "config") -> M:
    """Validate ``data`` into ``model``, raising :class:`ConfigError` with readable messages."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


#: Deepest nesting of tables and arrays a TOML file may have (real files use a few levels;
#: deeper ones would only exhaust the recursion of every reader after the parser).
MAX_TOML_DEPTH = 64


class _TooDeep(Exception):
    pass


def _anchor_paths(node: Any, base: Path, depth: int = 0) -> Any:
    """Relative ``preset_file`` values, anywhere in a parsed file, made relative to ``base``
    (the file's folder) so that a config means the same from any working directory.
    Raises :class:`_TooDeep` past :data:`MAX_TOML_DEPTH` levels."""
    if depth > MAX_TOML_DEPTH:
        raise _TooDeep
    if isinstance(node, dict):
        return {
            k: str(base / v)
            if k == "preset_file" and isinstance(v, str) and not Path(v).is_absolute()
            else _anchor_paths(v, base, depth + 1)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_anchor_paths(v, base, depth + 1) for v in node]
    return node


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, with errors that name the file; relative ``preset_file`` paths in
    it are taken relative to the file's folder."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _anchor_paths(tomllib.load(fh), path.parent)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: malformed TOML: {err}") from None
    except (RecursionError, _TooDeep):
        raise ConfigError(
            f"{path}: tables or arrays nested too deeply (more than {MAX_TOML_DEPTH} levels)"
        ) from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None


def load_toml(path: str | Path, model: type[M] = AnalogConfig) -> M:  # type: ignore[assignment]
    """Load and validate a TOML file into ``model`` (default :class:`AnalogConfig`)."""
    return validate(model, read_toml(path), source=str(path))


# Device presets: the data is in nvmsim.devices.presets; building them is here.


def preset(name: str, **overrides: Any) -> DeviceConfig:
    """A validated :class:`DeviceConfig` for a named preset."""
    return DeviceConfig.model_validate({"preset": name, **overrides})


def preset_file_values(path: str | Path) -> dict[str, Any]:
    """The raw values of a user preset file, checked; errors name the file and the field.

    The file holds :class:`DeviceConfig` fields at the top level (or in one
    ``[device]`` table) and a non-empty ``citation``; ``name`` defaults to the file's stem and
    ``preset = "pcm"`` may name a built-in preset to start from.
    """
    path = Path(path)
    raw = read_toml(path)
    if set(raw) == {"device"} and isinstance(raw["device"], dict):
        raw = dict(raw["device"])
    if "preset_file" in raw:
        raise ConfigError(f"{path}: preset_file: a preset file cannot load another preset file")
    citation = raw.get("citation")
    if not isinstance(citation, str) or not citation.strip():
        raise ConfigError(f"{path}: citation: a preset file must cite its source (a string)")
    raw.setdefault("name", path.stem)
    validate(DeviceConfig, raw, source=str(path))
    return raw


def load_preset_file(path: str | Path) -> DeviceConfig:
    """A validated :class:`DeviceConfig` from a user preset file.

    Raises :class:`ConfigError` naming the file and the field for a missing
    file, malformed TOML, an unknown key or a bad value.
    """
    return validate(DeviceConfig, preset_file_values(path), source=str(path))
