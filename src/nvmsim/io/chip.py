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
from nvmsim.io.checkpoint import one_line, read_safetensors, value_problem
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


def _stream_named(config: object) -> object:
    """A saved config; a file from before ``read_noise_stream`` read on the serial stream."""
    if isinstance(config, dict) and "read_noise_stream" not in config:
        return {**config, "read_noise_stream": "serial"}
    return config


def _config_difference(saved: object, mine: object, where: str = "") -> str | None:
    """The first setting in which a saved config differs from the model's, or None."""
    if isinstance(saved, dict) and isinstance(mine, dict):
        for key in sorted(set(saved) | set(mine), key=str):
            if key not in saved or key not in mine:
                return f"{where}{key}: in {'the model' if key in mine else 'the file'} only"
            differs = _config_difference(saved[key], mine[key], f"{where}{key}.")
            if differs:
                return differs
        return None
    if saved == mine:
        return None

    def shown(value: object) -> str:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    return f"{where.rstrip('.') or 'config'}: file {shown(saved)}, model {shown(mine)}"


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
    except (KeyError, ValueError, RecursionError) as e:
        msg = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise ChipError(f"{path}: chip metadata 'layers' is malformed: {msg}") from None
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
    problem = value_problem(state, expected)
    if problem:
        raise ChipError(f"{path}: the weights: {problem}")
    # Validate every layer's state before changing anything: a failed load leaves the model.
    known = {_key(name, part, b) for name, layer in layers.items() for part, _ in _parts(layer)
             for b in STATE} | {f"{_GEN}{name}" for name in layers}  # fmt: skip
    extra = sorted(k for k in tensors if not k.startswith(_MODEL) and k not in known)
    if extra:
        raise ChipError(f"{path}: unexpected tensor {extra[0]!r}")
    loaded = {}
    for name, layer in layers.items():
        differs = _config_difference(_stream_named(saved[name]["config"]),
                                     layer.config.model_dump(mode="json"))  # fmt: skip
        if differs:
            raise ChipError(
                f"{path}: layer {name!r} was programmed with another config ({differs})"
            )
        layer._ensure_programmed()  # the model's own state gives this architecture's shapes
        scalars, parts = saved[name]["scalars"], _parts(layer)
        per = scalars if isinstance(layer.tile, SlicedTile) else {"": scalars}
        if not isinstance(per, dict) or set(per) != {p for p, _ in parts}:
            raise ChipError(f"{path}: layer {name!r} scalars do not match its tiles")
        for values in per.values():
            problem = _scalar_problem(values)
            if problem:
                raise ChipError(f"{path}: layer {name!r} scalars: {problem}")
        parts_state = {
            part: (_tile_state(path, name, part, tile, layer, tensors), per[part])
            for part, tile in parts
        }
        gen = _generator_state(path, name, layer, saved[name], tensors)
        loaded[name] = (parts_state, gen, True)
    backup = {name: _snapshot(layer) for name, layer in layers.items()}
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        _apply(model, layers, state, loaded)
    except (ValueError, RuntimeError, TypeError) as e:  # the state does not read: undo
        _apply(model, layers, weights, backup)
        raise ChipError(f"{path}: the programmed state does not read: {one_line(e)}") from None
    return model


def _apply(model: nn.Module, layers: dict, state: dict, per_layer: dict) -> None:
    """Put weights and, per layer, ``(tile state and scalars per part, generator state,
    whether the chip holds these weights)`` into ``model``; a generator state of ``None``
    restarts the read-noise stream from the seed (another device's cannot continue)."""
    model.load_state_dict(state)
    for name, layer in layers.items():
        parts, gen, current = per_layer[name]
        for part, tile in _parts(layer):
            state_of, scalars_of = parts[part]
            for b, t in state_of.items():
                setattr(tile, b, t)
            for s, v in scalars_of.items():
                setattr(tile, s, v)
            tile._derive()
        if isinstance(layer.tile, SlicedTile):
            layer.tile.restore(layer._matrix())
        layer._programmed_version = layer._version() if current else None
        if gen is not None:
            layer.generator.set_state(gen)
        else:
            layer.reseed(layer.seed + 1)


def _snapshot(layer: AnalogMixin) -> tuple[dict, torch.Tensor, bool]:
    """What :func:`_apply` needs to put ``layer`` back as it is now."""
    parts = {
        part: ({b: getattr(t, b) for b in STATE}, {s: getattr(t, s) for s in SCALARS})
        for part, t in _parts(layer)
    }
    return parts, layer.generator.get_state(), layer.is_current()


#: The scalars' own limits: a drift time is >= 0; a weight range and a scale are > 0
_SCALAR_MIN = {"time": (0.0, True), "wmax": (0.0, False), "scale": (0.0, False)}


def _scalar_problem(values: object) -> str | None:
    if not isinstance(values, dict) or set(values) != set(SCALARS):
        return f"expected the keys {list(SCALARS)}"
    for key, v in values.items():
        if v is None and key != "time":
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            return f"{key} must be a number, got {v!r:.40}"
        try:
            f = float(v)
        except OverflowError:
            return f"{key} is too large"
        if not math.isfinite(f):
            return f"{key} must be finite, got {f}"
        if key in _SCALAR_MIN:
            low, inclusive = _SCALAR_MIN[key]
            if f < low or (f == low and not inclusive):
                return f"{key} must be {'>=' if inclusive else '>'} {low:g}, got {f:g}"
    return None


def _generator_state(
    path: Path, name: str, layer: AnalogMixin, meta: dict, tensors: dict
) -> torch.Tensor | None:
    """The saved read-noise generator state when it can continue on this layer's device
    (``None``: restart from the seed), checked by loading it into a scratch generator."""
    key = f"{_GEN}{name}"
    if key not in tensors:
        raise ChipError(f"{path}: layer {name!r} lacks its read-noise generator state")
    device = meta.get("generator_device")
    if not isinstance(device, str):
        raise ChipError(f"{path}: layer {name!r} generator_device must be a device name")
    if device != layer.generator.device.type:
        return None
    state = tensors[key]
    scratch = torch.Generator(device=layer.generator.device)
    if state.dtype != torch.uint8 or state.shape != scratch.get_state().shape:
        raise ChipError(f"{path}: layer {name!r} read-noise generator state is malformed")
    try:
        scratch.set_state(state)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ChipError(
            f"{path}: layer {name!r} read-noise generator state is invalid: {one_line(e)}"
        ) from None
    return state


def _calibrated_shape(tile: AnalogTile, b: str) -> tuple[int, ...] | None:
    """The shape a calibrated converter range takes on ``tile`` (``None``: the tile's own)."""
    conv = tile.config.converter
    if b == "dac_range":
        return ()
    if b == "adc_range":
        if conv.adc_range != "auto":
            return ()
        cols = (tile.cols,) if conv.adc_range_per == "column" else ()
        return (tile.groups, tile.row_blocks, *cols)
    return None


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
        want = _calibrated_shape(tile, b) if calibrated else None
        if want is None:
            if mine is None:
                raise ChipError(f"{path}: layer {name!r} has a {b!r} its config does not make")
            want = tuple(mine.shape)
        if tuple(t.shape) != want:
            raise ChipError(
                f"{path}: layer {name!r} {b!r} has shape {tuple(t.shape)}, the model's {want}"
            )
        boolean = b in ("dead", "dead_ref")
        if boolean != (t.dtype == torch.bool) or t.is_complex():
            kind = "bool" if boolean else "a real float"
            raise ChipError(f"{path}: layer {name!r} {b!r} has dtype {t.dtype}, expected {kind}")
        if boolean:
            new[b] = t.to(device=dvc)
            continue
        problem = value_problem({b: t}, {b: layer.weight})
        if problem:
            raise ChipError(f"{path}: layer {name!r} {problem}")
        v = t.to(device=dvc, dtype=layer.weight.dtype)
        if b in ("dac_range", "adc_range") and not bool((v > 0).all()):
            raise ChipError(f"{path}: layer {name!r} {b!r} must be > 0")
        new[b] = v
    return new
