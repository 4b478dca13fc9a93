"""Settings of on-chip training (the ``[scenario] onchip`` table of a study) and their
validation into one ValueError that names every bad field."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class OnChipConfig(BaseModel):
    """Settings of on-chip training (the ``[scenario] onchip`` table of a study)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    # devices and their jump-tables
    device: Literal["bidirectional", "set_only", "float"] = "bidirectional"
    table: Literal["linear", "nonlinear", "file"] = "linear"
    n_steps: float = Field(1000.0, gt=0, allow_inf_nan=False)
    spread: float = Field(0.0, ge=0, allow_inf_nan=False)
    asymmetry: float = Field(1.0, gt=0, allow_inf_nan=False)
    compensate: bool = False
    compensate_by: Literal["fewer_reset", "more_set"] = "fewer_reset"
    nonlinear_extent: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    strength: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    set_table: str | None = None
    reset_table: str | None = None
    bins: int = Field(100, ge=1)
    pair_update: Literal["both", "plus"] = "both"
    # mapping and reads
    w_max: float | list[float] | None = None
    read_noise: float = Field(0.0, ge=0, allow_inf_nan=False)
    read_noise_kind: Literal["additive", "proportional"] = "additive"
    # the update rule
    rule: Literal["slots", "stochastic", "exact"] = "slots"
    lr: float = Field(0.1, gt=0, allow_inf_nan=False)
    lr_decay: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    x_pulses: int = Field(4, ge=1, le=64)
    d_pulses: int = Field(4, ge=1, le=64)
    loss: Literal["ce", "mse"] = "ce"
    # occasional RESET
    refresh_every: int | None = Field(None, ge=0)
    refresh_threshold: float = Field(0.9, gt=0, le=1, allow_inf_nan=False)
    refresh_mode: Literal["pulses", "ideal"] = "pulses"
    # statistics and run length (None: the study's train settings)
    saturation_tol: float = Field(0.02, ge=0, lt=0.5, allow_inf_nan=False)
    epochs: int | None = Field(None, ge=0)
    train_subset: int | None = Field(None, ge=1)
    init_scale: float = Field(1.0, ge=0, allow_inf_nan=False)
    curve: bool = True

    @model_validator(mode="after")
    def _check(self) -> OnChipConfig:
        if self.table == "file" and not self.set_table:
            raise ValueError("set_table: table = 'file' needs a set_table path")
        if self.table != "file" and (self.set_table or self.reset_table):
            raise ValueError("set_table: a table file is only read with table = 'file'")
        if self.table != "nonlinear" and (self.nonlinear_extent != 0 or self.strength != 1):
            raise ValueError("nonlinear_extent, strength: only used with table = 'nonlinear'")
        if self.w_max is None:
            pass
        elif isinstance(self.w_max, list):
            if not self.w_max or any(not (v > 0 and math.isfinite(v)) for v in self.w_max):
                raise ValueError("w_max: must be > 0 (a number or one per layer)")
        elif not (self.w_max > 0 and math.isfinite(self.w_max)):
            raise ValueError("w_max: must be > 0")
        return self

    @property
    def refresh_interval(self) -> int:
        """Examples between occasional-RESET checks (0: never)."""
        if self.refresh_every is not None:
            return self.refresh_every
        return 100 if self.device == "set_only" else 0


def parse_config(
    raw: dict[str, Any] | OnChipConfig, source: str = "scenario.onchip"
) -> OnChipConfig:
    """Validate a raw ``onchip`` table; a ValueError names the field and the problem."""
    if isinstance(raw, OnChipConfig):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a table of settings, got {type(raw).__name__}")
    try:
        return OnChipConfig.model_validate(raw)
    except ValidationError as err:
        msgs = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(table)"
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown setting"
            msgs.append(f"{source}.{loc}: {msg}")
        raise ValueError("; ".join(msgs)) from None
