"""A programmed chip instance in one safetensors file: re-read a result on the same chip.

``save_chip(model, path)`` writes a converted model's weights (its ``state_dict``), every
analog layer's programmed state (conductances, range factors, dead-line masks, drift
exponents, calibrated converter ranges, drift time) and its read-noise generator state.
``load_chip(model, path)`` puts them back into a model of the same architecture converted with
the same config: it then reads bit-identically to the saved one, read-noise stream included.
Derived read tensors are recomputed on load, not stored.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import save as _st_save
from torch import nn

from nvmsim.crossbar.sliced import SlicedTile
from nvmsim.crossbar.tile import SCALARS, STATE, AnalogTile
from nvmsim.files import atomic_write
from nvmsim.io.checkpoint import read_safetensors
from nvmsim.nn.base import AnalogMixin

FORMAT = "nvmsim-chip"
FORMAT_VERSION = "1"
_MODEL, _TILE, _GEN = "model/", "tile/", "generator/"


class ChipError(ValueError):
    """A chip file that cannot be written, read, or loaded into its model."""


def _layers(model: nn.Module) -> dict[str, AnalogMixin]:
    return {n: m for n, m in model.named_modules() if isinstance(m, AnalogMixin)}


def _parts(layer: AnalogMixin) -> list[tuple[str, AnalogTile]]:
    """A layer's physical tiles: one, or one per weight slice (``"slice0"``, ...)."""
    tile = layer.tile
    return tile.parts() if isinstance(tile, SlicedTile) else [("", tile)]


def _key(name: str, part: str, buffer: str) -> str:
    return f"{_TILE}{name}/{part + '/' if part else ''}{buffer}"


def _scalars(layer: AnalogMixin) -> dict:
    """Scalars of every part: a plain mapping for one tile, one per part for slices."""
    per = {part: {s: getattr(t, s) for s in SCALARS} for part, t in _parts(layer)}
    return per if isinstance(layer.tile, SlicedTile) else per[""]


def save_chip(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights and every analog layer's programmed state to ``path``."""
    path = Path(path)
    layers = _layers(model)
    if not layers:
        raise ChipError(f"{path}: the model has no analog layer; convert it first")
    tensors = {
        _MODEL + k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
    }
    meta_layers = {}
    for name, layer in layers.items():
        layer._ensure_programmed()
        for part, tile in _parts(layer):
            for b in STATE:
                t = getattr(tile, b)
                if t is not None:
                    tensors[_key(name, part, b)] = t.detach().cpu().contiguous().clone()
        tensors[f"{_GEN}{name}"] = layer.generator.get_state().cpu().clone()
        meta_layers[name] = {
            "scalars": _scalars(layer),
            "config": layer.config.model_dump(mode="json"),
            "generator_device": layer.generator.device.type,
        }
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layers": json.dumps(meta_layers),
    }
    return atomic_write(path, _st_save(tensors, metadata=metadata))


def load_chip(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a chip saved by :func:`save_chip` into ``model`` (same architecture, converted with
    the same config); returns ``model``. Nothing is changed when the file does not fit."""
    path = Path(path)
    if not path.is_file():
        raise ChipError(f"{path}: no such chip file")
    tensors, meta = read_safetensors(
        path, FORMAT, FORMAT_VERSION, "chip file", ChipError, with_tensors=True
    )
    try:
        saved = json.loads(meta["layers"])
        if not isinstance(saved, dict) or not all(
            isinstance(v, dict) and {"config", "scalars"} <= set(v) for v in saved.values()
        ):
            raise ValueError("expected an object of layers with 'config' and 'scalars'")
    except (KeyError, ValueError) as e:
        raise ChipError(f"{path}: chip metadata 'layers' is malformed: {e}") from e
    layers = _layers(model)
    if set(saved) != set(layers):
        raise ChipError(
            f"{path}: analog layers {sorted(saved)} do not match the model's {sorted(layers)}"
        )
    state = {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    expected = model.state_dict()
    bad = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    if bad or set(state) != set(expected):
        raise ChipError(
            f"{path}: weights do not fit the model (first mismatch: "
            f"{(bad or sorted(set(state) ^ set(expected)))[0]!r})"
        )
    for v in state.values():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ChipError(f"{path}: the weights contain NaN or inf")
    # Validate every layer's state before changing anything: a failed load leaves the model.
    loaded = {}
    for name, layer in layers.items():
        if saved[name]["config"] != layer.config.model_dump(mode="json"):
            raise ChipError(f"{path}: layer {name!r} was programmed with another config")
        layer._ensure_programmed()  # the model's own state gives this architecture's shapes
        scalars, parts = saved[name]["scalars"], _parts(layer)
        per = scalars if isinstance(layer.tile, SlicedTile) else {"": scalars}
        if not isinstance(per, dict) or set(per) != {p for p, _ in parts}:
            raise ChipError(f"{path}: layer {name!r} scalars do not match its tiles")
        for values in per.values():
            if (
                not isinstance(values, dict)
                or set(values) != set(SCALARS)
                or not all(
                    v is None or (isinstance(v, int | float) and math.isfinite(v))
                    for v in values.values()
                )
            ):
                raise ChipError(f"{path}: layer {name!r} scalars must be finite {list(SCALARS)}")
        loaded[name] = {
            part: (_tile_state(path, name, part, tile, layer, tensors), per[part])
            for part, tile in parts
        }
    model.load_state_dict(state)
    for name, layer in layers.items():
        for part, tile in _parts(layer):
            state_of, scalars_of = loaded[name][part]
            for b, t in state_of.items():
                setattr(tile, b, t)
            for s, v in scalars_of.items():
                setattr(tile, s, v)
            tile._derive()
        if isinstance(layer.tile, SlicedTile):
            layer.tile.restore(layer._matrix())
        layer._programmed_version = layer._version()
        if saved[name].get("generator_device") == layer.generator.device.type:
            layer.generator.set_state(tensors[f"{_GEN}{name}"])
        else:  # another device's stream cannot continue here: restart from the seed
            layer.reseed(layer.seed + 1)
    return model


def _tile_state(
    path: Path,
    name: str,
    part: str,
    tile: AnalogTile,
    layer: AnalogMixin,
    tensors: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor | None]:
    """One tile's saved programmed state, checked against the tile's own and moved to it."""
    dvc = layer.weight.device
    if part:
        name = f"{name}/{part}"
    new: dict[str, torch.Tensor | None] = {}
    for b in STATE:
        key = f"{_TILE}{name}/{b}"
        mine = getattr(tile, b)
        calibrated = b in ("dac_range", "adc_range", "cal_local", "cal_local_ref")
        if key not in tensors:
            if mine is not None and not calibrated:
                raise ChipError(f"{path}: layer {name!r} lacks its {b!r}")
            new[b] = None
            continue
        t = tensors[key]
        if not calibrated and (mine is None or t.shape != mine.shape):
            want = "none" if mine is None else f"shape {tuple(mine.shape)}"
            raise ChipError(
                f"{path}: layer {name!r} {b!r} has shape {tuple(t.shape)}, the model's {want}"
            )
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ChipError(f"{path}: layer {name!r} {b!r} contains NaN or inf")
        dtype = t.dtype if t.dtype == torch.bool else layer.weight.dtype
        new[b] = t.to(device=dvc, dtype=dtype)
    return new
