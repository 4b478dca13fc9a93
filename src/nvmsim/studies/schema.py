"""The study file: what to train, how to program it, which scenarios and axes to sweep.

A study TOML has top-level settings, one ``[models.<label>]`` table per model, a base
``[analog]`` config (as :class:`nvmsim.config.AnalogConfig`), a base ``[scenario]`` and
``[sweep]`` axes. Every axis value is applied to a copy of the base run and validated before
anything runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from nvmsim.config import (
    AnalogConfig,
    ConfigError,
    FiniteNumber,
    Integer,
    read_toml,
    validate,
)
from nvmsim.training.hwa import Injection

# Bounds on what a study file can ask for (each repeat keeps its metrics; a detector width is
# allocated per repeat): generous for any real study, far below what would exhaust memory.
MAX_REPEATS = 100_000
MAX_WIDTH = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class TrainSpec(_Strict):
    """Software training of a model that has no checkpoint (cached by config hash)."""

    epochs: Integer = Field(10, ge=0)
    batch_size: Integer = Field(128, ge=1)
    lr: FiniteNumber = Field(1e-3, gt=0)
    # rmsprop has Keras's defaults (rho 0.9, epsilon 1e-7); momentum is for sgd and rmsprop.
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    momentum: FiniteNumber = Field(0.0, ge=0.0, lt=1.0)
    sigma_neu: FiniteNumber = Field(0.0, ge=0.0)
    train_subset: Integer | None = Field(None, ge=1)
    # Initial weights: torch's defaults, or Keras's (glorot-uniform kernels, zero biases).
    init: Literal["torch", "keras"] = "torch"
    # Replicate of the training run: other initial weights and shuffling, the same recipe.
    seed: Integer = Field(0, ge=0, lt=2**63)
    # "hwa": train through the analog forward pass of the device in [train.analog]
    # (nvmsim.training.hwa), with the noise injection in [train.hwa].
    mode: Literal["standard", "hwa"] = "standard"
    analog: AnalogConfig | None = None
    hwa: Injection = Injection()

    @field_validator("analog", mode="before")
    @classmethod
    def _device_preset(cls, v: Any) -> Any:
        if isinstance(v, dict) and isinstance(v.get("device"), str):
            v = {**v, "device": {"preset": v["device"]}}
        return v

    @model_validator(mode="after")
    def _momentum_needs_optimizer(self) -> TrainSpec:
        if self.momentum and self.optimizer == "adam":
            raise ValueError("momentum applies to optimizer 'sgd' or 'rmsprop', not 'adam'")
        return self

    @model_validator(mode="after")
    def _hwa_needs_a_device(self) -> TrainSpec:
        if self.mode == "hwa" and self.analog is None:
            raise ValueError("train.mode = 'hwa' needs the training device in [train.analog]")
        if self.mode == "standard" and (self.analog is not None or self.hwa != Injection()):
            raise ValueError("train.analog and train.hwa apply only with train.mode = 'hwa'")
        return self


class ModelSpec(_Strict):
    """A registry architecture (trained here), a safetensors checkpoint, or a Keras file."""

    arch: str | None = None
    kwargs: dict[str, Any] = {}
    checkpoint: str | None = None
    keras: str | None = None
    train: TrainSpec = TrainSpec()

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        given = [k for k in ("arch", "checkpoint", "keras") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of arch, checkpoint, keras")
        return self


class DataSpec(_Strict):
    dataset: str = "digits"
    test_subset: Integer | None = Field(None, ge=1)
    preprocess: str = "unit"
    crop: tuple[Integer, Integer] | None = None
    data_dir: str | None = None

    @field_validator("preprocess")
    @classmethod
    def _known_preprocess(cls, v: str) -> str:
        from nvmsim.data.preprocess import PREPROCESSORS

        if v not in PREPROCESSORS:
            raise ValueError(f"unknown preprocess {v!r}; known: {', '.join(sorted(PREPROCESSORS))}")
        return v


class ScenarioSpec(_Strict):
    """How a programmed model is evaluated: test-set noise and time after programming.

    Any other key names a registered scenario and holds its options
    (``[scenario] my_scenario = {...}``); ``nvmsim.studies.scenarios`` checks them at plan
    time (the schema cannot know the registry without importing it).
    """

    model_config = ConfigDict(extra="allow", validate_default=True)

    test_noise: Literal["gaussian", "speckle", "salt_pepper"] = "gaussian"
    sigma_te: FiniteNumber = Field(0.0, ge=0.0)
    clip_inputs: StrictBool = False
    drift_time: FiniteNumber = Field(0.0, ge=0.0)
    reprogram_each_repeat: StrictBool = True
    # Paper 003: program only the feature extractor, keep the detector digital, retrain it.
    retrain_detector: StrictBool = False
    split_at: Integer | str | None = None
    detector_hidden: Integer | None = Field(None, ge=1, le=MAX_WIDTH)
    retrain_epochs: Integer = Field(5, ge=0)
    retrain_lr: FiniteNumber = Field(1e-3, gt=0)
    retrain_batch: Integer = Field(128, ge=1)
    retrain_subset: Integer | None = Field(None, ge=1)
    repeat_chunk: Integer = Field(20, ge=1, le=MAX_REPEATS)
    # Paper 004: train on chip instead (a table validated by nvmsim.training.onchip).
    onchip: dict[str, Any] | None = None
    # Paper 000 Table III: also report energy per inference on this technology (reram, ...).
    energy: str | None = None
    conv_mapping: Literal["im2col", "unrolled", "toeplitz"] = "im2col"

    @field_validator("energy")
    @classmethod
    def _known_technology(cls, v: str | None) -> str | None:
        from nvmsim.energy.technology import technology_names

        if v is not None and v not in technology_names():
            raise ValueError(f"unknown technology {v!r}; known: {', '.join(technology_names())}")
        return v


# Short axis names -> dotted paths into a run's resolved config (see sweep.resolve).
AXES: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "dataset": ("data.dataset",),
    "preprocess": ("data.preprocess",),
    "sigma_syn": ("analog.device.read_noise.sigma",),
    "read_noise_kind": ("analog.device.read_noise.kind",),
    "sigma_prog": ("analog.device.programming_error.sigma",),
    "alpha": ("analog.device.programming_error.sigma",),
    "bits": ("analog.device.bits",),
    "device": ("analog.device.preset",),
    "on_off_ratio": ("analog.device.on_off_ratio",),
    "mapping": ("analog.crossbar.mapping",),
    "tile_size": ("analog.crossbar.tile_rows", "analog.crossbar.tile_cols"),
    "r_wire": ("analog.crossbar.r_row", "analog.crossbar.r_col"),
    "adc_bits": ("analog.converter.adc_bits",),
    "dac_bits": ("analog.converter.dac_bits",),
    "sigma_te": ("scenario.sigma_te",),
    "test_noise": ("scenario.test_noise",),
    "drift_time": ("scenario.drift_time",),
    "energy": ("scenario.energy",),
    "sigma_neu": ("train.sigma_neu",),
    "hidden_layers": ("kwargs.hidden_layers",),
    "epochs": ("train.epochs",),
    "t": ("kwargs.t",),
    "detector_hidden": ("scenario.detector_hidden",),
    "n_fe": ("kwargs.n_fe",),
}
PATH_ROOTS = ("analog.", "scenario.", "train.", "data.", "kwargs.")


def axis_paths(name: str) -> tuple[str, ...]:
    """Dotted paths an axis sets; a dotted name is its own path."""
    if name in AXES:
        return AXES[name]
    if name.startswith(PATH_ROOTS):
        return (name,)
    known = ", ".join(sorted(AXES))
    raise ValueError(f"unknown axis {name!r}; known: {known}, or a dotted path under {PATH_ROOTS}")


class SweepSpec(_Strict):
    """Cartesian axes (``name = [values]``) and optional zipped groups walked together."""

    model_config = ConfigDict(extra="allow")
    zip: list[dict[str, list[Any]]] = []

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        for name, values in self.axes().items():
            axis_paths(name)
            if not isinstance(values, list) or not values:
                raise ValueError(f"axis {name!r} must be a non-empty list")
        for group in self.zip:
            lengths = {len(v) for v in group.values()}
            if len(lengths) > 1:
                raise ValueError(f"zipped axes {sorted(group)} have different lengths {lengths}")
            for name in group:
                axis_paths(name)
        return self

    def axes(self) -> dict[str, list[Any]]:
        return dict(self.model_extra or {})


class QuickSpec(_Strict):
    """What ``--quick`` changes: subsets, epochs and repeats capped."""

    train_subset: Integer = Field(2000, ge=1)
    test_subset: Integer = Field(1000, ge=1)
    epochs: Integer = Field(2, ge=0)
    repeats: Integer = Field(3, ge=1, le=MAX_REPEATS)


class ReportSpec(_Strict):
    """How ``nvmsim report`` draws the study: the x axis (default: the first numeric axis),
    the axes that split each figure into panels (default: none), and the axes whose runs a
    further table pools (e.g. training seeds: mean, std, min and max over them)."""

    x: str | None = None
    panels: list[str] = []
    log_x: StrictBool = False
    pool: list[str] = []


class StudySpec(_Strict):
    name: str
    description: str = ""
    seed: Integer = Field(0, ge=0, lt=2**63)  # stored as a 64-bit SQLite integer
    repeats: Integer = Field(10, ge=1, le=MAX_REPEATS)
    metrics: list[Literal["accuracy", "loss"]] = ["accuracy", "loss"]
    models: dict[str, ModelSpec]
    data: DataSpec = DataSpec()
    analog: dict[str, Any] = {}
    scenario: ScenarioSpec = ScenarioSpec()
    sweep: SweepSpec = SweepSpec()
    quick: QuickSpec = QuickSpec()
    report: ReportSpec = ReportSpec()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        """A name, not a path: it names the store and model cache under nvmsim-results/."""
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}", v):
            raise ValueError(
                f"{v!r} is not a plain name: use letters, digits and _ . + - (no folders, "
                "no leading dot, at most 128 characters)"
            )
        return v

    @field_validator("models")
    @classmethod
    def _some_models(cls, v: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        if not v:
            raise ValueError("a study needs at least one [models.<label>] table")
        return v

    @model_validator(mode="after")
    def _report_axes_are_swept(self) -> StudySpec:
        swept = set(self.sweep.axes()) | {n for group in self.sweep.zip for n in group}
        rep = self.report
        named = ([rep.x] if rep.x is not None else []) + rep.panels + rep.pool
        for name in named:
            if name not in swept:
                raise ValueError(
                    f"report: {name!r} is not a swept axis; swept: {', '.join(sorted(swept))}"
                )
        return self


def load_study(path: str | Path) -> tuple[StudySpec, Path]:
    """Parse and validate a study file; relative file and folder paths (checkpoints, Keras
    files, ``data.data_dir``, jump-tables, preset files) resolve against its folder."""
    path = Path(path)
    raw = read_toml(path)
    spec = validate(StudySpec, raw, source=str(path))
    base = path.resolve().parent
    if spec.data.data_dir is not None:
        spec.data.data_dir = str((base / Path(spec.data.data_dir).expanduser()).resolve())
    onchip = spec.scenario.onchip or {}
    for key in ("set_table", "reset_table"):  # measured jump-tables of on-chip training
        if isinstance(onchip.get(key), str):
            onchip[key] = str((base / Path(onchip[key]).expanduser()).resolve())
    for label, m in spec.models.items():
        for key in ("checkpoint", "keras"):
            value = getattr(m, key)
            if value is None:
                continue
            full = (base / value).resolve()
            if not full.is_file():
                raise ConfigError(f"{path}: models.{label}.{key}: file not found: {full}")
            _check_model_file(key, full, f"{path}: models.{label}.{key}")
            setattr(m, key, str(full))
    return spec, base


def _check_model_file(kind: str, full: Path, where: str) -> None:
    """Load a checkpoint or Keras file once, so that a malformed one stops the study before
    any run starts (and before the store is created)."""
    if kind == "checkpoint":
        from nvmsim.io.checkpoint import CheckpointError as Bad
        from nvmsim.io.checkpoint import load_checkpoint as load
    else:
        from nvmsim.io.keras import KerasImportError as Bad
        from nvmsim.io.keras import load_keras as load
    try:
        load(full)
    except Bad as err:
        raise ConfigError(f"{where}: {err}") from None
