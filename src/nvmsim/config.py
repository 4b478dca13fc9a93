"""Validated settings for every part of the simulator, loadable from TOML.

All models forbid unknown keys, so a typo in a config file is an error that names the key
(and the file, when loaded with :func:`load_toml`), never a silently ignored setting.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NoiseKind = Literal["additive", "proportional"]
ProgKind = Literal["additive", "proportional", "weight"]
ClipMode = Literal["zero", "range", "none"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class NoiseConfig(_Strict):
    """Gaussian conductance noise.

    ``additive``: std ``sigma * Gmax``; ``proportional``: std ``sigma * G``. For programming
    error, ``weight`` is paper 003's ``g(w) = (1 + sigma * N(0, 1)) * w`` on the weight itself.
    """

    kind: ProgKind = "proportional"
    sigma: float = Field(0.0, ge=0.0, allow_inf_nan=False)


class ReadNoiseConfig(NoiseConfig):
    kind: NoiseKind = "proportional"  # type: ignore[assignment]


class DeviceConfig(_Strict):
    """One cell's physics. Conductances are normalised so that ``Gmax == 1``."""

    name: str = "custom"
    on_off_ratio: float = Field(float("inf"), gt=1.0)
    g_max_siemens: float = Field(1e-4, gt=0.0, allow_inf_nan=False)
    bits: int | None = Field(None, ge=1, le=16)
    programming_error: NoiseConfig = NoiseConfig()
    read_noise: ReadNoiseConfig = ReadNoiseConfig()
    drift_nu: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    drift_nu_std: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    drift_t0: float = Field(1.0, gt=0.0, allow_inf_nan=False)
    stuck_at_gmin: float = Field(0.0, ge=0.0, le=1.0)
    stuck_at_gmax: float = Field(0.0, ge=0.0, le=1.0)
    clip: ClipMode = "zero"

    @property
    def g_min(self) -> float:
        """Normalised minimum conductance ``Gmin / Gmax``."""
        return 0.0 if self.on_off_ratio == float("inf") else 1.0 / self.on_off_ratio

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """``preset = "reram"`` fills in a preset's values; explicit keys override them."""
        if isinstance(data, dict) and "preset" in data:
            from nvmsim.devices.presets import preset_values

            data = dict(data)
            base = preset_values(data.pop("preset"))
            for key, value in data.items():
                if isinstance(value, dict) and isinstance(base.get(key), dict):
                    base[key] = {**base[key], **value}
                else:
                    base[key] = value
            data = base
        return data

    @model_validator(mode="after")
    def _fault_rates(self) -> DeviceConfig:
        if self.stuck_at_gmin + self.stuck_at_gmax > 1.0:
            raise ValueError("stuck_at_gmin + stuck_at_gmax must not exceed 1")
        return self


class CrossbarConfig(_Strict):
    """How a weight matrix is laid out on arrays, and the arrays' wires.

    ``r_row`` / ``r_col`` are the resistances (ohm) of one wire segment between neighbouring
    cells; with either > 0 every array's exact IR drop is solved once at programming time.
    """

    mapping: Literal["differential", "offset"] = "differential"
    tile_rows: int = Field(256, ge=1)
    tile_cols: int = Field(256, ge=1)
    weight_clip_percentile: float | None = Field(None, gt=0.0, le=100.0)
    bias: Literal["digital", "analog"] = "digital"
    r_row: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    r_col: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    r_access: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    both_ends: bool = False

    @property
    def parasitics(self) -> bool:
        """Whether wire resistance makes IR drop worth solving."""
        return self.r_row > 0 or self.r_col > 0 or self.r_access > 0


class ConverterConfig(_Strict):
    """DAC on the rows and ADC on the columns. ``None`` bits means ideal (no quantisation).

    Ranges are in the layer's own units (inputs for the DAC, partial sums for the ADC);
    ``"auto"`` calibrates the range from the first batch read and then keeps it.
    """

    dac_bits: int | None = Field(None, ge=1, le=16)
    dac_range: float | Literal["auto"] = "auto"
    adc_bits: int | None = Field(None, ge=1, le=16)
    adc_range: float | Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _positive_ranges(self) -> ConverterConfig:
        for name in ("dac_range", "adc_range"):
            value = getattr(self, name)
            if value != "auto" and not (value > 0 and value < float("inf")):
                raise ValueError(f"{name} must be a positive finite number or 'auto'")
        return self


class AnalogConfig(_Strict):
    """Everything an analog layer needs."""

    device: DeviceConfig = DeviceConfig()
    crossbar: CrossbarConfig = CrossbarConfig()
    converter: ConverterConfig = ConverterConfig()
    read_noise_mode: Literal["moment", "sample"] = "moment"
    moment_rtol: float = Field(1e-4, ge=0.0)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _sampling_without_parasitics(self) -> AnalogConfig:
        if self.read_noise_mode == "sample" and self.crossbar.parasitics:
            raise ValueError(
                "read_noise_mode = 'sample' does not solve IR drop per read; use 'moment' "
                "with crossbar r_row / r_col / r_access"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _device_shorthand(cls, data: Any) -> Any:
        """``device = "reram"`` is short for ``[device] preset = "reram"``."""
        if isinstance(data, dict) and isinstance(data.get("device"), str):
            data = {**data, "device": {"preset": data["device"]}}
        return data


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the source and the field."""


M = TypeVar("M", bound=BaseModel)


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path: message``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def validate(model: type[M], data: Any, source: str = "config") -> M:
    """Validate ``data`` into ``model``, raising :class:`ConfigError` with readable messages."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, with errors that name the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: malformed TOML: {err}") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None


def load_toml(path: str | Path, model: type[M] = AnalogConfig) -> M:  # type: ignore[assignment]
    """Load and validate a TOML file into ``model`` (default :class:`AnalogConfig`)."""
    return validate(model, read_toml(path), source=str(path))
