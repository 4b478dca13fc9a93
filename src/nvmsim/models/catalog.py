"""What each registered architecture is: its keyword arguments, parameter count and the
datasets whose input it takes (``nvmsim models``).

Every model is built on torch's meta device (no memory for weights) and one batch of each
dataset's shape is pushed through it; it fits a dataset when that gives one score per class.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn

from nvmsim.data.registry import DATASETS, DatasetInfo
from nvmsim.models import REGISTRY, count_parameters


@dataclass(frozen=True)
class ModelEntry:
    """One registry entry: its signature, what it is, and its fit to each dataset."""

    name: str
    kwargs: str
    summary: str
    parameters: int | None  # None: set by required kwargs (e.g. mlp's sizes)
    fits: tuple[str, ...]  # dataset names, with a crop where one is needed


def _signature(fn) -> str:
    params = inspect.signature(fn).parameters.values()
    return ", ".join(
        p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
        for p in params
        if p.name != "self"
    )


def _required(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.default is inspect.Parameter.empty]  # fmt: skip


FORWARD_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)  # a shape that does not fit


def meta_output_shape(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of ``model`` (moved to the meta device) for a batch of two ``shape``
    inputs; raises one of :data:`FORWARD_ERRORS` when the input does not fit."""
    with torch.device("meta"), torch.no_grad():
        return tuple(model.to("meta").eval()(torch.empty(2, *shape)).shape)


def takes(model: nn.Module, shape: tuple[int, ...], classes: int) -> bool:
    """Whether ``model`` maps a batch of ``shape`` inputs to ``classes`` scores each."""
    try:
        return meta_output_shape(model, shape) == (2, classes)
    except FORWARD_ERRORS:
        return False


def _crop_for(n: int, info: DatasetInfo) -> tuple[int, int] | None:
    """The most nearly square crop of ``info``'s images with ``n`` pixels (one channel)."""
    c, h, w = info.shape
    if c != 1:
        return None
    crops = [(a, n // a) for a in range(1, h + 1) if n % a == 0 and n // a <= w]
    return min(crops, key=lambda hw: abs(hw[0] - hw[1])) if crops else None


def _fits(model: nn.Module) -> tuple[str, ...]:
    out = []
    for name, info in DATASETS.items():
        if takes(model, info.shape, info.num_classes):
            out.append(name)
            continue
        first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
        crop = _crop_for(first.in_features, info) if first is not None else None
        if crop and takes(model, (1, *crop), info.num_classes):
            out.append(f"{name} (data.crop = [{crop[0]}, {crop[1]}])")
    return tuple(out)


def entry(name: str) -> ModelEntry:
    """The catalog entry of registry model ``name`` (built with its default kwargs)."""
    fn = REGISTRY[name]
    doc = (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ").replace("``", "")
    if _required(fn):
        fits = tuple(f"{d} (sizes[0] = {math.prod(i.shape)}, sizes[-1] = {i.num_classes})"
                     for d, i in DATASETS.items())  # fmt: skip
        return ModelEntry(name, _signature(fn), doc, None, fits)
    with torch.device("meta"):
        model = fn()
    return ModelEntry(name, _signature(fn), doc, count_parameters(model), _fits(model))


def catalog() -> list[ModelEntry]:
    """Every registered model, by name."""
    return [entry(name) for name in sorted(REGISTRY)]
