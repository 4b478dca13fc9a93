"""Plan-time checks: everything a study needs is there and fits, before any store exists.

Each distinct model is built once on torch's meta device (no memory for its weights, so a
file cannot make this allocate) and one batch of its dataset's input shape is pushed through
it; each dataset is looked up once. A bad arch, model kwarg, crop or a network that does not
fit its data fails here, naming the study file and the field.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from nvmsim.config import AnalogConfig, ConfigError
from nvmsim.data.registry import DATASETS
from nvmsim.models.catalog import FORWARD_ERRORS, meta_output_shape
from nvmsim.studies.runner import build_model
from nvmsim.studies.schema import DataSpec
from nvmsim.studies.sweep import Run


def input_shape(data: DataSpec, where: str) -> tuple[int, ...]:
    """The ``(C, H, W)`` a model sees from a run's data, crop applied."""
    name = data.dataset
    info = DATASETS.get(name)
    if info is None:
        known = ", ".join(DATASETS)
        raise ConfigError(f"{where}: data.dataset = {name!r}: unknown dataset; known: {known}")
    c, h, w = info.shape
    crop = data.crop
    if crop:
        ch, cw = crop
        if not (0 < ch <= h and 0 < cw <= w):
            raise ConfigError(
                f"{where}: data.crop = [{ch}, {cw}] does not fit {name}'s {h}x{w} images"
            )
        h, w = ch, cw
    return (c, h, w)


#: Errors that building a model from a file's kwargs may raise: a bad kwarg (TypeError,
#: ValueError), a negative or overflowing tensor size (RuntimeError, OverflowError) or, for a
#: model loaded from a file, one too large for memory (MemoryError).
BUILD_ERRORS = (TypeError, ValueError, RuntimeError, OverflowError, MemoryError)


def check_models(runs: list[Run], where: str | Path) -> None:
    """Build each distinct model of the runs on the meta device and run one batch through it."""
    seen = set()
    for r in runs:
        run = r.spec
        shape = input_shape(run.data, str(where))
        key = (run.model, repr(run.kwargs), run.train.sigma_neu, shape)
        if key in seen:
            continue
        seen.add(key)
        field = f"models.{run.model}"
        try:
            if run.source.arch:
                with torch.device("meta"):
                    model = build_model(run)
            else:
                model = build_model(run)  # the file was read and checked by load_study
        except BUILD_ERRORS as err:
            raise ConfigError(f"{where}: {field}: {_first_line(err)}") from None
        _check_size(model, f"{where}: {field}")
        dataset = run.data.dataset
        classes = DATASETS[dataset].num_classes
        try:
            out = meta_output_shape(model, shape)
        except FORWARD_ERRORS as err:
            raise ConfigError(
                f"{where}: {field} does not take {dataset} inputs of shape "
                f"{shape}: {_first_line(err)}"
            ) from None
        if out != (2, classes):
            raise ConfigError(
                f"{where}: {field} gives outputs of shape {out[1:]} per input; "
                f"{dataset} has {classes} classes"
            )


#: The largest float32 number: runs compute in float32, so a noise std above it is infinite.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _noise_stds(cfg: AnalogConfig, part: str) -> Iterator[tuple[str, float]]:
    """``(field, std)`` for every noise of an analog config whose std a file sets: the
    largest std each can reach (conductances in units of Gmax, ADC errors in LSB)."""
    dev = cfg.device
    for name in ("programming_error", "read_noise"):
        noise = getattr(dev, name)
        if noise.kind == "table":
            yield f"{part}.device.{name}.sigma_points", max(noise.sigma_points)
        elif noise.kind == "polynomial":
            yield f"{part}.device.{name}.coeffs", sum(abs(c) for c in noise.coeffs)
        else:
            yield f"{part}.device.{name}.sigma", noise.sigma
    flicker = dev.flicker_noise
    yield (
        f"{part}.device.flicker_noise.k",
        math.sqrt(flicker.k) * math.sqrt(math.log(flicker.f_max / flicker.f_min)),
    )
    yield f"{part}.device.range_std", dev.range_std
    conv = cfg.converter
    yield f"{part}.converter.output_noise", conv.output_noise
    for name in ("gain_std", "offset_std", "noise", "capacitor_std"):
        yield f"{part}.converter.adc_model.{name}", getattr(conv.adc_model, name)


def check_noise(runs: list[Run], where: str | Path) -> None:
    """Refuse a noise whose std cannot be represented in float32 (the runs' precision), so
    that it fails here, naming the field, and not in every run; a smaller but still huge
    std is left to the runs, which stop with a non-finite result error."""
    for r in runs:
        run = r.spec
        parts = [("analog", run.analog), ("train.analog", run.train.analog)]
        fields = [
            ("scenario.sigma_te", run.scenario.sigma_te),
            ("train.sigma_neu", run.train.sigma_neu),
        ]
        for part, cfg in parts:
            if cfg is not None:
                fields += _noise_stds(cfg, part)
        for field, std in fields:
            if std > FLOAT32_MAX:
                raise ConfigError(
                    f"{where}: sweep point {r.axes}: {field} gives a noise std of {std:.3g}, "
                    f"above {FLOAT32_MAX:.3g} (float32's largest number): no run can simulate "
                    "it"
                )


ANALOG_COPIES = 6  # conductances, references and read tensors an analog layer keeps per weight


def memory_bytes() -> int:
    """This machine's physical memory."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**40  # unknown: do not refuse on a guess


def _check_size(model: torch.nn.Module, where: str) -> None:
    """Refuse a model whose analog state could not fit in this machine's memory."""
    weights = sum(t.numel() * t.element_size() for t in model.parameters())
    need, have = ANALOG_COPIES * weights, memory_bytes()
    if need > have:
        raise ConfigError(
            f"{where}: {weights / 2**30:,.1f} GiB of weights need about {need / 2**30:,.0f} GiB "
            f"on crossbars ({ANALOG_COPIES} tensors per weight); this machine has "
            f"{have / 2**30:,.0f} GiB"
        )


def check_datasets(runs: list[Run], where: str | Path) -> None:
    """Fail early, naming the file to fetch, when a dataset is not available."""
    from nvmsim.data import DatasetError, load

    seen = set()
    for r in runs:
        d = r.spec.data
        if (d.dataset, d.data_dir) in seen:
            continue
        seen.add((d.dataset, d.data_dir))
        try:
            load(d.dataset, "test", d.data_dir, subset=1)
        except DatasetError as err:
            raise ConfigError(f"{where}: data.dataset = {d.dataset!r}: {err}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
