"""Keras model import without TensorFlow: ``.keras`` (Keras 3) and legacy ``.h5`` files.

``load_keras(path)`` reads the architecture (JSON) and the weights (HDF5, via h5py) and
returns an ``nn.Sequential`` of standard torch modules (``nn.Linear``, ``nn.Conv2d``, pools,
activations) in eval mode, ready for :func:`nvmsim.convert`.

Layouts read (checked against files written by Keras 3.15):

* ``.keras`` (Keras 3, also tf.keras >= 2.13): a zip with ``config.json`` (the model's
  serialised config), ``metadata.json`` and ``model.weights.h5``. In the weights file each
  layer's variables are datasets ``vars/0``, ``vars/1``, ... (kernel, bias; BatchNorm: gamma,
  beta, moving mean, moving variance) in a group ``layers/<key>/vars`` (tf.keras:
  ``_layer_checkpoint_dependencies/<key>/vars``). ``<key>`` is *not* the layer's name but its
  class name in snake case with a per-class counter (``dense``, ``dense_1``, ...); newer Keras
  also writes the layer's name as the ``name`` attribute of ``vars``, which is tried first.
* legacy ``.h5`` (Keras 2 / tf.keras, or Keras 3's ``model.save("x.h5")``): the root attribute
  ``model_config`` holds the JSON config; group ``model_weights`` lists ``layer_names``; group
  ``model_weights/<layer>`` lists ``weight_names`` (``dense/kernel:0`` in Keras 2,
  ``sequential/dense/kernel`` in Keras 3), each a dataset path inside that group.

Supported: ``Sequential`` models and ``Functional`` models that are a simple chain; layers
``InputLayer``, ``Dense`` (with its activation and ``use_bias``), ``Conv2D`` (padding valid /
same, strides, dilation, groups), ``MaxPooling2D``, ``AveragePooling2D`` (valid / same),
``GlobalAveragePooling2D``, ``GlobalMaxPooling2D``, ``ZeroPadding2D``, ``Flatten``,
``BatchNormalization``, ``Dropout``-like layers (identity at inference), ``Activation``,
``ReLU`` (``max_value=1`` gives nvmsim's ``BoundedReLU``), ``LeakyReLU``, ``ELU``,
``Softmax``. Anything else raises :class:`KerasImportError` naming the layer and its type.

Files are not trusted: a malformed or hostile file (truncated, of wrong JSON types, with
invalid layer fields, NaN/inf weights, or weights that declare more than the file stores) is
a one-line :class:`KerasImportError`. Each weight's declared shape is compared with the one
its layer's config gives, and its declared size with what the file stores, before any data
is read (at most ``_MAX_WEIGHT_BYTES`` per weight).

Conventions of the returned torch model:

* Image tensors are channels-first: where Keras takes NHWC input, the torch model takes the
  NCHW transpose and computes the same function (outputs of image shape are NCHW too).
* Keras's ``Flatten`` flattens in HWC order. When a ``Dense`` follows (possibly through
  element-wise layers), that Dense's weight columns are permuted so a plain ``nn.Flatten`` of
  NCHW data gives the Keras result; otherwise a ``ChannelsLastFlatten`` module is used.
* A softmax (a ``Dense(activation="softmax")`` or a ``Softmax`` layer) stays as
  ``nn.Softmax(dim=1)``; ``drop_softmax=True`` removes a final softmax so the model returns
  logits (which is what accuracy studies and cross-entropy training want).
* ``padding="same"`` follows TensorFlow/Keras: any odd padding goes to the bottom/right.
  ``AveragePooling2D(padding="same")`` leaves padded cells out of the mean, as the
  TensorFlow and JAX backends do. (Keras 3.15's torch backend differs when the padding is
  uneven: it pads by repeating the edge values, so a model *run* on that backend gives other
  numbers at those border cells; the weights are unaffected.)
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nvmsim.io.checkpoint import errors_as, one_line
from nvmsim.nn.activations import BoundedReLU

__all__ = ["ChannelsLastFlatten", "KerasImportError", "load_keras"]


class KerasImportError(ValueError):
    """A Keras file that cannot be read or holds something nvmsim cannot translate."""


# --------------------------------------------------------------------------------------
# Torch modules for the few Keras semantics that have no standard torch module
# --------------------------------------------------------------------------------------


class ChannelsLastFlatten(nn.Module):
    """Flatten an NCHW tensor in Keras's NHWC order: ``flatten(x.permute(0, 2, 3, 1))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x.permute(0, 2, 3, 1), 1)


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) for one spatial axis."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


class SamePad2d(nn.Module):
    """Pads NCHW input as TensorFlow's ``padding="same"`` would, for any input size."""

    def __init__(self, kernel, stride, dilation=(1, 1), value: float = 0.0) -> None:
        super().__init__()
        self.kernel, self.stride, self.dilation = tuple(kernel), tuple(stride), tuple(dilation)
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = _same_pads(x.shape[-2], self.kernel[0], self.stride[0], self.dilation[0])
        l, r = _same_pads(x.shape[-1], self.kernel[1], self.stride[1], self.dilation[1])
        if t == b == l == r == 0:
            return x
        return F.pad(x, (l, r, t, b), value=self.value)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, value={self.value}"


class AvgPool2dSame(nn.Module):
    """Keras ``AveragePooling2D(padding="same")``: padded cells are left out of the mean."""

    def __init__(self, kernel, stride) -> None:
        super().__init__()
        self.pad = SamePad2d(kernel, stride)
        self.pool = nn.AvgPool2d(tuple(kernel), tuple(stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(x[:1, :1])
        return self.pool(self.pad(x)) / self.pool(self.pad(ones))


# --------------------------------------------------------------------------------------
# Reading the files
# --------------------------------------------------------------------------------------

_WEIGHTS_MEMBER = "model.weights.h5"
#: Most bytes one weight (an HDF5 dataset) may declare, and the weights file of a ``.keras``
#: archive may unpack to: 4 GiB, a billion float32 values. A file cannot make the importer
#: allocate more, whatever its compression.
_MAX_WEIGHT_BYTES = 4 << 30
#: Most bytes ``config.json`` may unpack to (real configs are kilobytes).
_MAX_CONFIG_BYTES = 64 << 20
#: Largest kernel, pool window, stride, dilation or zero padding accepted from a layer config.
_MAX_WINDOW = 4096


@dataclass
class _Layer:
    class_name: str
    name: str
    config: dict
    key: str  # Keras 3 weights-file key: snake-case class name + per-class counter
    build_input_shape: list | None = None


@dataclass
class _Ctx:
    path: str
    layers: list[_Layer]
    index: int = 0
    flatten_channels: int | None = None  # set by Flatten for the Dense that follows
    modules: list[tuple[str, nn.Module]] = field(default_factory=list)

    def err(self, layer: _Layer, msg: str) -> KerasImportError:
        return KerasImportError(f"{self.path}: layer {layer.name!r} ({layer.class_name}): {msg}")


def _to_snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


def _decode(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf8")
    return value


def _h5_attr_list(group: h5py.Group, name: str) -> list[str] | None:
    """A list-of-strings attribute, including Keras's chunked form (``name0``, ``name1``...)."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    elif f"{name}0" in group.attrs:
        chunks, i = [], 0
        while f"{name}{i}" in group.attrs:
            chunks.append(group.attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    out: list[str] = []
    for chunk in chunks:
        out.extend(str(_decode(v)) for v in np.atleast_1d(np.asarray(chunk, dtype=object)))
    return out


class _Keras3Weights:
    """Weights of a Keras 3 ``model.weights.h5``: ``<container>/<key>/vars/<i>``."""

    def __init__(self, h5: h5py.File) -> None:
        self.file = h5
        self.by_name: dict[str, h5py.Group] = {}
        self.by_path: dict[str, h5py.Group] = {}

        def visit(path: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and path.rsplit("/", 1)[-1] == "vars":
                self.by_path[path] = obj
                name = _decode(obj.attrs.get("name"))
                if isinstance(name, str):
                    self.by_name.setdefault(name, obj)

        h5.visititems(visit)

    def get(self, ctx: _Ctx, layer: _Layer) -> list[tuple[str | None, Any]] | None:
        group = self.by_name.get(layer.name)
        if group is None:
            for container in ("layers", "_layer_checkpoint_dependencies"):
                for key in (layer.key, layer.name):
                    group = self.by_path.get(f"{container}/{key}/vars")
                    if group is not None:
                        break
                if group is not None:
                    break
        if group is None:
            return None
        keys = sorted((k for k in group if k.isdigit()), key=int)
        return [(None, group[k]) for k in keys]


class _LegacyWeights:
    """Weights of a legacy ``.h5``: ``model_weights/<layer>/<weight_name>``."""

    def __init__(self, group: h5py.Group) -> None:
        self.group, self.file = group, group.file

    def get(self, ctx: _Ctx, layer: _Layer) -> list[tuple[str | None, Any]] | None:
        if layer.name not in self.group:
            return None
        g = self.group[layer.name]
        if not isinstance(g, h5py.Group):
            raise ctx.err(layer, f"model_weights/{layer.name} is not an HDF5 group")
        names = _h5_attr_list(g, "weight_names")
        if names is None:  # no list: take every dataset under the group, matched by name
            found: list[tuple[str | None, Any]] = []
            g.visititems(lambda p, o: found.append((p, o)) if isinstance(o, h5py.Dataset) else None)
            return found
        out: list[tuple[str | None, Any]] = []
        for n in names:
            if n not in g or not isinstance(g[n], h5py.Dataset):
                raise ctx.err(layer, f"weight {n!r} is listed in weight_names but missing")
            out.append((n, g[n]))
        return out


def _json(path: str, what: str, text: Any) -> Any:
    """``text`` parsed as JSON; anything else (also JSON nested too deeply) is an error."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError) as e:
        msg = "nested too deeply" if isinstance(e, RecursionError) else one_line(e)
        raise KerasImportError(f"{path}: {what} is not valid JSON: {msg}") from None


_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, zlib.error)
_MEMBER_LIMITS = {"config.json": _MAX_CONFIG_BYTES, _WEIGHTS_MEMBER: _MAX_WEIGHT_BYTES}


def _open_keras_zip(path: str) -> tuple[Any, bytes]:
    """The config (parsed JSON) and the weights file (bytes) of a ``.keras`` archive."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise KerasImportError(f"{path}: not a valid .keras file (not a zip archive)") from None
    with zf:
        names = set(zf.namelist())
        data = {}
        for member, limit in _MEMBER_LIMITS.items():
            if member not in names:
                raise KerasImportError(
                    f"{path}: .keras archive has no {member!r} (members: {sorted(names)[:20]})"
                )
            size = zf.getinfo(member).file_size
            if size > limit:
                raise KerasImportError(
                    f"{path}: .keras member {member!r} unpacks to {size} bytes, more than the "
                    f"{limit} this importer reads"
                )
            try:
                data[member] = zf.read(member)
            except _ZIP_ERRORS as e:  # CRC, truncation, encryption, unknown compression
                raise KerasImportError(
                    f"{path}: corrupted .keras archive, cannot read {member!r}: {one_line(e)}"
                ) from None
    return _json(path, "config.json", data["config.json"]), data[_WEIGHTS_MEMBER]


def _legacy_config(path: str, h5: h5py.File) -> Any:
    try:
        raw = h5.attrs.get("model_config")
        weights_only = raw is None and "layer_names" in h5.attrs
    except (OSError, RuntimeError, LookupError, TypeError, ValueError) as e:  # damaged header
        raise KerasImportError(
            f"{path}: cannot read the 'model_config' attribute: {type(e).__name__}: {one_line(e)}"
        ) from None
    if raw is None:
        hint = " (a weights-only file?)" if weights_only else ""
        raise KerasImportError(f"{path}: HDF5 file has no 'model_config' attribute{hint}")
    return _json(path, "'model_config'", _decode(raw))


# --------------------------------------------------------------------------------------
# The model config: a chain of layers
# --------------------------------------------------------------------------------------

_MODEL_CLASSES = {"Sequential", "Functional", "Model"}


def _inbound_names(obj: Any) -> Iterator[str]:
    """Layer names a Functional node refers to, in Keras 2 or Keras 3 form."""
    if isinstance(obj, dict):
        history = obj.get("keras_history")
        if isinstance(history, list) and history and isinstance(history[0], str):
            yield history[0]
            return
        for v in obj.values():
            yield from _inbound_names(v)
    elif isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            yield obj[0]
            return
        for v in obj:
            yield from _inbound_names(v)


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` if ``obj`` is a JSON object holding it, else None."""
    return obj.get(key) if isinstance(obj, dict) else None


def _layer_name(entry: dict) -> str:
    return str(entry.get("name") or _get(entry.get("config"), "name"))


def _chain(path: str, model_config: Any) -> tuple[list[dict], Any]:
    """The model's layers in order of computation, and its input shape (with batch) if known."""
    cls = _get(model_config, "class_name")
    if cls is None:
        raise KerasImportError(f"{path}: model config has no 'class_name'")
    if not isinstance(cls, str) or cls not in _MODEL_CLASSES:
        raise KerasImportError(
            f"{path}: model class {cls!r} is not supported (Sequential or Functional only)"
        )
    cfg = model_config.get("config")
    layers = cfg if isinstance(cfg, list) and cls == "Sequential" else _get(cfg, "layers")
    if not isinstance(layers, list) or not all(isinstance(e, dict) for e in layers):
        raise KerasImportError(f"{path}: model config has no list of layers")
    shape = _get(cfg, "build_input_shape")
    if shape is None:
        shape = _get(model_config.get("build_config"), "input_shape")
    if cls == "Sequential":
        return layers, shape

    by_name = {_layer_name(e): e for e in layers}
    inbound: dict[str, list[str]] = {}
    for e in layers:
        name = _layer_name(e)
        nodes = e.get("inbound_nodes") or []
        if not isinstance(nodes, list):
            raise KerasImportError(f"{path}: layer {name!r} has malformed 'inbound_nodes'")
        if len(nodes) > 1:
            raise KerasImportError(
                f"{path}: layer {name!r} is called {len(nodes)} times; only simple chains "
                "of layers are supported"
            )
        inbound[name] = list(dict.fromkeys(_inbound_names(nodes)))
        if len(inbound[name]) > 1:
            raise KerasImportError(
                f"{path}: layer {name!r} ({e.get('class_name')}) has {len(inbound[name])} "
                f"inputs {inbound[name]}; only simple chains of layers are supported"
            )
    outputs = list(dict.fromkeys(_inbound_names(cfg.get("output_layers", []))))
    inputs = list(dict.fromkeys(_inbound_names(cfg.get("input_layers", []))))
    if len(outputs) != 1 or len(inputs) > 1:
        raise KerasImportError(
            f"{path}: model has inputs {inputs} and outputs {outputs}; only models with one "
            "input and one output are supported"
        )
    order, cur, seen = [], outputs[0], set()
    while True:
        if cur not in by_name or cur in seen:
            raise KerasImportError(f"{path}: broken layer graph at {cur!r}")
        seen.add(cur)
        order.append(by_name[cur])
        if not inbound[cur]:
            break
        cur = inbound[cur][0]
    if len(order) != len(layers):
        extra = sorted(set(by_name) - seen)
        raise KerasImportError(
            f"{path}: layers {extra} are not on the path from input to output; only simple "
            "chains of layers are supported"
        )
    return order[::-1], shape


def _layers(path: str, entries: list[dict]) -> list[_Layer]:
    counters: dict[str, int] = {}
    out = []
    for e in entries:
        cls = e.get("class_name")
        cfg = e.get("config")
        if not isinstance(cls, str) or not isinstance(cfg, dict):
            raise KerasImportError(f"{path}: malformed layer entry {str(e)[:200]}")
        snake = _to_snake_case(cls)
        if snake in counters:
            counters[snake] += 1
            key = f"{snake}_{counters[snake]}"
        else:
            counters[snake] = 0
            key = snake
        build_shape = _get(e.get("build_config"), "input_shape")
        out.append(_Layer(cls, _layer_name(e), cfg, key, build_shape))
    return out


def _input_shape(path: str, layers: list[_Layer], model_shape) -> tuple | None:
    """Per-sample input shape (without the batch axis), or None when nothing says."""
    candidates = []
    if layers:
        first = layers[0]
        c = first.config
        candidates += [c.get("batch_shape"), c.get("batch_input_shape")]
        if isinstance(c.get("input_shape"), list) and first.class_name == "InputLayer":
            candidates.append([None, *c["input_shape"]])
        candidates.append(first.build_input_shape)
    candidates.append(model_shape)
    for s in candidates:
        if isinstance(s, list | tuple) and len(s) >= 1:
            if not all(v is None or _is_int(v) and v >= 1 for v in s[1:]):
                raise KerasImportError(
                    f"{path}: input shape {str(s)[:200]} is not a list of positive ints"
                )
            return tuple(s[1:])
    return None


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------


Shape = tuple[int | None, ...]


def _fmt_shape(shape: Shape) -> str:
    """``(3, ?, 2)``: a shape with ``?`` where the config does not say."""
    dims = ["?" if v is None else str(v) for v in shape]
    return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"


def _check_dataset(ctx: _Ctx, layer: _Layer, source, name: str, ds: Any, shape: Shape) -> None:
    """Refuse a weight before reading its data: not a dataset of this file, another shape than
    the layer's config gives, not numeric, fewer bytes stored than an uncompressed dataset
    declares (or none at all), or more declared than ``_MAX_WEIGHT_BYTES``."""
    if not isinstance(ds, h5py.Dataset):
        raise ctx.err(layer, f"weight {name!r} is not an HDF5 dataset")
    declared = ds.shape
    if (
        declared is None
        or len(declared) != len(shape)
        or any(want is not None and want != got for want, got in zip(shape, declared, strict=True))
    ):
        raise ctx.err(layer, f"{name} has shape {declared}, expected {_fmt_shape(shape)}")
    if ds.dtype.kind not in "fiu":
        raise ctx.err(layer, f"weight {name!r} has non-numeric dtype {ds.dtype}")
    plist = ds.id.get_create_plist()
    external = plist.get_layout() == h5py.h5d.VIRTUAL or plist.get_external_count() > 0
    if external or ds.file != source.file:
        raise ctx.err(layer, f"weight {name!r} is stored outside the file (a link to another)")
    nbytes, stored = math.prod(declared) * ds.dtype.itemsize, ds.id.get_storage_size()
    compressed = plist.get_nfilters() > 0  # else the data takes at least what it declares
    if nbytes and (stored == 0 or not compressed and stored < nbytes):
        raise ctx.err(
            layer,
            f"weight {name!r} declares {declared} {ds.dtype} ({nbytes} bytes) but the file "
            f"stores {stored} bytes of it (truncated or forged)",
        )
    if nbytes > _MAX_WEIGHT_BYTES:
        raise ctx.err(
            layer,
            f"weight {name!r} declares {nbytes} bytes, more than the {_MAX_WEIGHT_BYTES} "
            "this importer reads",
        )


def _weights(ctx: _Ctx, layer: _Layer, source, expected: dict[str, Shape]) -> dict[str, np.ndarray]:
    """Read a layer's weights, matched to ``expected`` (name -> shape from the config, None
    where it does not say) by name or else by order; each is checked before it is read."""
    try:
        return _read_weights(ctx, layer, source, expected)
    except KerasImportError:
        raise
    except (OSError, LookupError, RuntimeError, TypeError, ValueError) as e:  # h5py, damaged file
        raise ctx.err(
            layer, f"cannot read its weights (damaged file?): {type(e).__name__}: {one_line(e)}"
        ) from None


def _read_weights(ctx: _Ctx, layer: _Layer, source, expected: dict[str, Shape]) -> dict:
    found = source.get(ctx, layer)
    if found is None:
        raise ctx.err(layer, "no weights for this layer in the file")
    wanted = set(expected)
    short = [None if n is None else n.rsplit("/", 1)[-1].split(":", 1)[0] for n, _ in found]
    if len(found) != len(expected):
        raise ctx.err(
            layer,
            f"expected {len(expected)} weights ({', '.join(expected)}), found {len(found)}"
            + (f" ({', '.join(str(s) for s in short[:10])})" if any(short) else ""),
        )
    if all(s is not None for s in short) and set(short) == wanted:
        pairs = [(s, ds) for s, (_, ds) in zip(short, found, strict=True)]
    else:
        pairs = [(e, ds) for e, (_, ds) in zip(expected, found, strict=True)]
    for name, ds in pairs:  # every weight is checked before any data is read
        _check_dataset(ctx, layer, source, name, ds, expected[name])
    out = {}
    for name, ds in pairs:
        try:
            arr = np.asarray(ds[()])
        except (OSError, ValueError, TypeError, RuntimeError) as e:
            raise ctx.err(layer, f"cannot read weight {name!r}: {one_line(e)}") from None
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused below
            arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ctx.err(layer, f"weight {name!r} has {bad} NaN/inf value(s)")
        out[name] = arr
    return out


def _check_shape(ctx: _Ctx, layer: _Layer, name: str, arr: np.ndarray, shape: tuple) -> None:
    if tuple(arr.shape) != tuple(shape):
        raise ctx.err(layer, f"{name} has shape {tuple(arr.shape)}, expected {tuple(shape)}")


def _tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


# --------------------------------------------------------------------------------------
# Layer translation. Shapes are per sample, Keras order (H, W, C), None where unknown.
# --------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any, integer: bool) -> bool:
    """An int, or (``integer=False``) a finite float or an int a float can hold."""
    if _is_int(value):
        return integer or abs(value) <= sys.float_info.max
    return not integer and isinstance(value, float) and math.isfinite(value)


def _num(
    ctx: _Ctx,
    layer: _Layer,
    key: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    integer: bool = True,
    n: int | None = None,
) -> Any:
    """A numeric config field checked: an int (``integer=False``: a finite number) in
    ``[low, high]``; with ``n``, an int or a list of ``n`` of them, returned as a tuple."""
    items = value if n is not None and isinstance(value, list | tuple) else [value] * (n or 1)
    ok = len(items) == (n or 1) and all(
        _is_number(v, integer) and (low is None or v >= low) and (high is None or v <= high)
        for v in items
    )
    if not ok:
        want = "an int" if integer else "a finite number"
        bounds = [f">= {low}" if low is not None else "", f"<= {high}" if high is not None else ""]
        want += "".join(f" {b}" for b in bounds if b)
        if n is not None:
            want += f", or a list of {n} of them"
        raise ctx.err(layer, f"{key}={value!r} is not valid: expected {want}")
    items = [v if integer else float(v) for v in items]
    return tuple(items) if n is not None else items[0]


def _opt(ctx: _Ctx, layer: _Layer, key: str, value: Any, allowed: tuple) -> Any:
    """A config field that must be one of ``allowed`` (strings compared in lower case)."""
    if isinstance(value, str):
        value = value.lower()
    if not any(type(value) is type(a) and value == a for a in allowed):
        choices = " or ".join(repr(a) for a in allowed)
        raise ctx.err(layer, f"{key}={value!r} is not supported ({choices})")
    return value


_PADDINGS = ("valid", "same")
_BOOLS = (True, False)


def _window(ctx: _Ctx, layer: _Layer, key: str, default: Any) -> tuple[int, int]:
    """A kernel size, pool size, stride or dilation: a positive int or a pair of them."""
    value = layer.config.get(key, default)
    return _num(ctx, layer, key, value, low=1, high=_MAX_WINDOW, n=2)


def _check_channels_last(ctx: _Ctx, layer: _Layer) -> None:
    fmt = layer.config.get("data_format")
    if fmt not in (None, "channels_last"):
        raise ctx.err(layer, f"data_format={fmt!r} is not supported (channels_last only)")


def _softmax_dim(rank: int | None) -> int:
    return 1 if rank in (None, 1, 3) else -1


def _activation(ctx: _Ctx, layer: _Layer, act, rank: int | None) -> nn.Module | None:
    if isinstance(act, dict):  # a serialised function object
        inner = act.get("config")
        act = inner if isinstance(inner, str) else act.get("class_name")
    if act is None or act == "linear":
        return None
    if act == "softmax":
        return nn.Softmax(dim=_softmax_dim(rank))
    factories: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "elu": nn.ELU,
        "selu": nn.SELU,
        "softplus": nn.Softplus,
        "softsign": nn.Softsign,
        "swish": nn.SiLU,
        "silu": nn.SiLU,
        "gelu": nn.GELU,
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
    }
    if not isinstance(act, str) or act not in factories:
        raise ctx.err(
            layer,
            f"activation {act!r} is not supported (supported: linear, softmax, "
            f"{', '.join(factories)})",
        )
    return factories[act]()


def _conv_out(
    ctx: _Ctx, layer: _Layer, n: int | None, k: int, s: int, d: int, padding: str
) -> int | None:
    """Output size along one axis; an error when a "valid" window does not fit the input."""
    if n is None:
        return None
    if padding == "same":
        return -(-n // s)
    if d * (k - 1) + 1 > n:
        raise ctx.err(layer, f"the window {d * (k - 1) + 1} is larger than the input {n}")
    return (n - d * (k - 1) - 1) // s + 1


def _spatial(ctx: _Ctx, layer: _Layer, shape: tuple | None) -> tuple:
    if shape is None:
        return (None, None, None)
    if len(shape) != 3:
        raise ctx.err(layer, f"expects an image input (H, W, C), got shape {shape}")
    return shape


def _build_dense(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    cfg = layer.config
    units = _num(ctx, layer, "units", cfg.get("units"), low=1)
    use_bias = _opt(ctx, layer, "use_bias", cfg.get("use_bias", True), _BOOLS)
    n_in = None if shape is None else shape[-1]
    expected = {"kernel": (n_in, units), "bias": (units,)}
    w = _weights(ctx, layer, src, expected if use_bias else {"kernel": expected["kernel"]})
    kernel = w["kernel"]
    n_in = kernel.shape[0]
    if shape is None:
        shape = (n_in,)
    if ctx.flatten_channels is not None:  # undo Keras's HWC flatten order: rows (hw, c) -> (c, hw)
        c = ctx.flatten_channels
        kernel = kernel.reshape(n_in // c, c, units).transpose(1, 0, 2).reshape(n_in, units)
        ctx.flatten_channels = None
    if len(shape) == 3:  # Dense on an image acts on channels: a 1x1 convolution in NCHW
        mod: nn.Module = nn.Conv2d(n_in, units, 1, bias=use_bias)
        weight = kernel.T[:, :, None, None]
    else:
        mod = nn.Linear(n_in, units, bias=use_bias)
        weight = kernel.T
    with torch.no_grad():
        mod.weight.copy_(_tensor(weight))
        if use_bias:
            mod.bias.copy_(_tensor(w["bias"]))
    out_shape = (*shape[:-1], units)
    mods = [(layer.name, mod)]
    act = _activation(ctx, layer, cfg.get("activation"), len(out_shape))
    if act is not None:
        mods.append((f"{layer.name}_{type(act).__name__.lower()}", act))
    return mods, out_shape


def _build_conv2d(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    cfg = layer.config
    _check_channels_last(ctx, layer)
    kh, kw = _window(ctx, layer, "kernel_size", None)
    sh, sw = _window(ctx, layer, "strides", 1)
    dh, dw = _window(ctx, layer, "dilation_rate", 1)
    groups = _num(ctx, layer, "groups", cfg.get("groups", 1), low=1)
    filters = _num(ctx, layer, "filters", cfg.get("filters"), low=1)
    padding = _opt(ctx, layer, "padding", cfg.get("padding", "valid"), _PADDINGS)
    use_bias = _opt(ctx, layer, "use_bias", cfg.get("use_bias", True), _BOOLS)
    h, wd, c = _spatial(ctx, layer, shape)
    for what, count in (("filters", filters), ("input channels", c)):
        if count is not None and count % groups:
            raise ctx.err(layer, f"{what} {count} are not a multiple of groups={groups}")
    out_shape = (
        _conv_out(ctx, layer, h, kh, sh, dh, padding),
        _conv_out(ctx, layer, wd, kw, sw, dw, padding),
        filters,
    )
    kernel_shape = (kh, kw, None if c is None else c // groups, filters)
    expected = {"kernel": kernel_shape, "bias": (filters,)}
    w = _weights(ctx, layer, src, expected if use_bias else {"kernel": kernel_shape})
    kernel = w["kernel"]
    cin = kernel.shape[2] * groups
    mods: list[tuple[str, nn.Module]] = []
    pad: tuple[int, int] | str = (0, 0)
    if padding == "same":
        if sh == sw == 1 and (dh * (kh - 1)) % 2 == 0 and (dw * (kw - 1)) % 2 == 0:
            pad = (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
        elif h is not None and wd is not None:
            t, b = _same_pads(h, kh, sh, dh)
            l, r = _same_pads(wd, kw, sw, dw)
            if t == b and l == r:
                pad = (t, l)
            else:
                mods.append((f"{layer.name}_pad", nn.ZeroPad2d((l, r, t, b))))
        else:
            mods.append((f"{layer.name}_pad", SamePad2d((kh, kw), (sh, sw), (dh, dw))))
    conv = nn.Conv2d(cin, filters, (kh, kw), (sh, sw), pad, (dh, dw), groups, bias=use_bias)
    with torch.no_grad():
        conv.weight.copy_(_tensor(kernel.transpose(3, 2, 0, 1)))
        if use_bias:
            conv.bias.copy_(_tensor(w["bias"]))
    mods.append((layer.name, conv))
    act = _activation(ctx, layer, cfg.get("activation"), 3)
    if act is not None:
        mods.append((f"{layer.name}_{type(act).__name__.lower()}", act))
    return mods, out_shape


def _build_pool(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    cfg = layer.config
    _check_channels_last(ctx, layer)
    k = _window(ctx, layer, "pool_size", 2)
    s = k if cfg.get("strides") is None else _window(ctx, layer, "strides", None)
    padding = _opt(ctx, layer, "padding", cfg.get("padding", "valid"), _PADDINGS)
    is_max = layer.class_name.startswith("Max")
    h, wd, c = _spatial(ctx, layer, shape)
    out_shape = (
        _conv_out(ctx, layer, h, k[0], s[0], 1, padding),
        _conv_out(ctx, layer, wd, k[1], s[1], 1, padding),
        c,
    )
    if padding == "valid":
        pool = nn.MaxPool2d(k, s) if is_max else nn.AvgPool2d(k, s)
        return [(layer.name, pool)], out_shape
    if h is not None and wd is not None:
        t, b = _same_pads(h, k[0], s[0], 1)
        l, r = _same_pads(wd, k[1], s[1], 1)
        if t == b and l == r and 2 * t <= k[0] and 2 * l <= k[1]:
            if is_max:
                return [(layer.name, nn.MaxPool2d(k, s, (t, l)))], out_shape
            pool = nn.AvgPool2d(k, s, (t, l), count_include_pad=False)
            return [(layer.name, pool)], out_shape
    if is_max:
        pad = SamePad2d(k, s, value=-math.inf)
        return [(f"{layer.name}_pad", pad), (layer.name, nn.MaxPool2d(k, s))], out_shape
    return [(layer.name, AvgPool2dSame(k, s))], out_shape


def _build_global_pool(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    _check_channels_last(ctx, layer)
    h, wd, c = _spatial(ctx, layer, shape)
    is_max = layer.class_name.startswith("GlobalMax")
    pool = nn.AdaptiveMaxPool2d(1) if is_max else nn.AdaptiveAvgPool2d(1)
    if _opt(ctx, layer, "keepdims", layer.config.get("keepdims", False), _BOOLS):
        return [(layer.name, pool)], (1, 1, c)
    return [(layer.name, pool), (f"{layer.name}_flatten", nn.Flatten())], (c,)


def _build_zero_padding(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    _check_channels_last(ctx, layer)
    p = layer.config.get("padding", 1)
    # an int, (rows, cols) on both sides, or ((top, bottom), (left, right))
    rows, cols = p if isinstance(p, list | tuple) and len(p) == 2 else (p, p)
    t, b = _num(ctx, layer, "padding", rows, low=0, high=_MAX_WINDOW, n=2)
    l, r = _num(ctx, layer, "padding", cols, low=0, high=_MAX_WINDOW, n=2)
    h, wd, c = _spatial(ctx, layer, shape)
    out = (None if h is None else h + t + b, None if wd is None else wd + l + r, c)
    return [(layer.name, nn.ZeroPad2d((l, r, t, b)))], out


_ELEMENTWISE = {
    "Dropout",
    "AlphaDropout",
    "GaussianNoise",
    "GaussianDropout",
    "ActivityRegularization",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
}


def _build_flatten(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    _check_channels_last(ctx, layer)
    if shape is None:
        raise ctx.err(layer, "the input shape is unknown, so the flatten order cannot be set")
    n = None if any(v is None for v in shape) else math.prod(shape)
    if len(shape) != 3 or shape[2] == 1 or (shape[0], shape[1]) == (1, 1):
        return [(layer.name, nn.Flatten())], (n,)
    if None in shape:
        raise ctx.err(layer, f"cannot flatten an image of unknown size {shape}")
    # Keras flattens (H, W, C); a torch NCHW flatten gives (C, H, W). If a Dense follows
    # (through element-wise layers only), permute its weights instead of the data.
    for nxt in ctx.layers[ctx.index + 1 :]:
        if nxt.class_name == "Dense":
            ctx.flatten_channels = shape[2]
            return [(layer.name, nn.Flatten())], (n,)
        if nxt.class_name not in _ELEMENTWISE:
            break
    return [(layer.name, ChannelsLastFlatten())], (n,)


def _build_batchnorm(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    cfg = layer.config
    rank = None if shape is None else len(shape)
    (axis,) = _num(ctx, layer, "axis", cfg.get("axis", -1), n=1)
    if rank is None or axis not in (-1, rank) or rank not in (1, 3):
        raise ctx.err(
            layer,
            f"axis={cfg.get('axis')!r} on input shape {shape} is not supported "
            "(the last axis of a vector or an image)",
        )
    center = _opt(ctx, layer, "center", cfg.get("center", True), _BOOLS)
    scale = _opt(ctx, layer, "scale", cfg.get("scale", True), _BOOLS)
    eps = _num(ctx, layer, "epsilon", cfg.get("epsilon", 1e-3), low=0, integer=False)
    names = (["gamma"] if scale else []) + (["beta"] if center else [])
    names += ["moving_mean", "moving_variance"]
    w = _weights(ctx, layer, src, dict.fromkeys(names, (shape[-1],)))
    c = w["moving_mean"].shape[0]
    for name, arr in w.items():  # the same length where the input shape did not say
        _check_shape(ctx, layer, name, arr, (c,))
    if not (w["moving_variance"].astype(np.float64) + eps > 0).all():
        raise ctx.err(layer, f"moving_variance + epsilon must be > 0 (epsilon={eps})")
    bn = (nn.BatchNorm2d if rank == 3 else nn.BatchNorm1d)(c, eps=eps)
    with torch.no_grad():
        bn.weight.copy_(_tensor(w["gamma"]) if scale else torch.ones(c))
        bn.bias.copy_(_tensor(w["beta"]) if center else torch.zeros(c))
        bn.running_mean.copy_(_tensor(w["moving_mean"]))
        bn.running_var.copy_(_tensor(w["moving_variance"]))
    return [(layer.name, bn)], shape


def _build_activation_layer(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    cfg = layer.config
    rank = None if shape is None else len(shape)
    cls = layer.class_name
    if cls == "Activation":
        act = _activation(ctx, layer, cfg.get("activation"), rank)
        return ([] if act is None else [(layer.name, act)]), shape
    if cls == "Softmax":
        (axis,) = _num(ctx, layer, "axis", cfg.get("axis", -1), n=1)
        if axis != -1 and not (rank is not None and axis == rank):
            raise ctx.err(layer, f"axis={axis!r} is not supported (last axis only)")
        return [(layer.name, nn.Softmax(dim=_softmax_dim(rank)))], shape
    if cls == "ELU":
        alpha = _num(ctx, layer, "alpha", cfg.get("alpha", 1.0), integer=False)
        return [(layer.name, nn.ELU(alpha))], shape
    if cls == "LeakyReLU":
        key = "negative_slope" if "negative_slope" in cfg else "alpha"
        slope = _num(ctx, layer, key, cfg.get(key, 0.3), integer=False)
        return [(layer.name, nn.LeakyReLU(slope))], shape
    # ReLU(max_value, negative_slope, threshold)
    max_value = cfg.get("max_value")
    if max_value is not None:
        max_value = _num(ctx, layer, "max_value", max_value, low=0, integer=False)
    slope = _num(ctx, layer, "negative_slope", cfg.get("negative_slope", 0.0), integer=False)
    threshold = _num(ctx, layer, "threshold", cfg.get("threshold", 0.0), integer=False)
    if threshold != 0.0 or (slope != 0.0 and max_value is not None):
        raise ctx.err(
            layer,
            f"threshold={threshold}, negative_slope={slope}, max_value={max_value} is "
            "not supported",
        )
    if slope != 0.0:
        mod: nn.Module = nn.LeakyReLU(slope)
    elif max_value is None:
        mod = nn.ReLU()
    elif max_value == 6.0:
        mod = nn.ReLU6()
    else:
        mod = BoundedReLU(max_value)
    return [(layer.name, mod)], shape


def _build_dropout(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    if layer.class_name in ("Dropout", "SpatialDropout2D"):
        rate = _num(ctx, layer, "rate", layer.config.get("rate", 0.0), low=0, high=1, integer=False)
        drop = nn.Dropout if layer.class_name == "Dropout" else nn.Dropout2d
        return [(layer.name, drop(rate))], shape
    return [(layer.name, nn.Identity())], shape  # noise/regularisers: identity at inference


_BUILDERS: dict[str, Callable] = {
    "Dense": _build_dense,
    "Conv2D": _build_conv2d,
    "Convolution2D": _build_conv2d,
    "MaxPooling2D": _build_pool,
    "MaxPool2D": _build_pool,
    "AveragePooling2D": _build_pool,
    "AvgPool2D": _build_pool,
    "GlobalAveragePooling2D": _build_global_pool,
    "GlobalAvgPool2D": _build_global_pool,
    "GlobalMaxPooling2D": _build_global_pool,
    "GlobalMaxPool2D": _build_global_pool,
    "ZeroPadding2D": _build_zero_padding,
    "Flatten": _build_flatten,
    "BatchNormalization": _build_batchnorm,
    "Activation": _build_activation_layer,
    "ReLU": _build_activation_layer,
    "LeakyReLU": _build_activation_layer,
    "ELU": _build_activation_layer,
    "Softmax": _build_activation_layer,
    "Dropout": _build_dropout,
    "SpatialDropout2D": _build_dropout,
    "AlphaDropout": _build_dropout,
    "GaussianNoise": _build_dropout,
    "GaussianDropout": _build_dropout,
    "ActivityRegularization": _build_dropout,
}


def _translate(path: str, model_config: Any, source, drop_softmax: bool) -> nn.Sequential:
    entries, model_shape = _chain(path, model_config)
    layers = _layers(path, entries)
    shape = _input_shape(path, layers, model_shape)
    ctx = _Ctx(path, layers)
    for ctx.index, layer in enumerate(layers):
        if layer.class_name == "InputLayer":
            continue
        if layer.class_name in _MODEL_CLASSES:
            raise ctx.err(layer, "nested models are not supported; save a flat model")
        builder = _BUILDERS.get(layer.class_name)
        if builder is None:
            raise ctx.err(
                layer,
                f"layer type {layer.class_name!r} is not supported (supported: "
                f"InputLayer, {', '.join(sorted(_BUILDERS))})",
            )
        try:
            mods, shape = builder(ctx, layer, source, shape)
        except KerasImportError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
            raise ctx.err(
                layer, f"malformed layer config: {type(e).__name__}: {one_line(e)}"
            ) from None
        ctx.modules.extend(mods)
    if drop_softmax and ctx.modules and isinstance(ctx.modules[-1][1], nn.Softmax):
        ctx.modules.pop()
    model = nn.Sequential()
    for name, mod in ctx.modules:
        base = re.sub(r"\W", "_", name) or "layer"
        unique, i = base, 1
        while unique in model._modules or hasattr(model, unique):  # "forward", "training"...
            unique, i = f"{base}_{i}", i + 1
        model.add_module(unique, mod)
    return model.eval()


def load_keras(path: str | os.PathLike, drop_softmax: bool = False) -> nn.Sequential:
    """Read a Keras ``.keras`` or legacy ``.h5`` model into an ``nn.Sequential`` (eval mode).

    Image models take NCHW input (the transpose of Keras's NHWC) and compute what Keras
    computes. With ``drop_softmax=True`` a final softmax is left out, so the model returns
    logits. Raises :class:`KerasImportError` (a ``ValueError``) naming the file and the layer
    for unreadable files, unsupported layers, missing weights, wrong shapes or NaN/inf
    weights, invalid layer configs, or weights that declare more than the file stores;
    ``FileNotFoundError`` when there is no file. Every weight's declared shape is checked
    against the layer's config before it is read.
    """
    p = str(Path(path))
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{p}: no such Keras model file")
    with errors_as(KerasImportError, p):
        return _load(p, drop_softmax)


def _load(p: str, drop_softmax: bool) -> nn.Sequential:
    if zipfile.is_zipfile(p):
        config, weights_bytes = _open_keras_zip(p)
        try:
            h5 = h5py.File(io.BytesIO(weights_bytes), "r")
        except OSError:
            raise KerasImportError(f"{p}: {_WEIGHTS_MEMBER} is not a readable HDF5 file") from None
        with h5:
            return _translate(p, config, _Keras3Weights(h5), drop_softmax)
    if p.lower().endswith(".keras"):
        raise KerasImportError(f"{p}: not a valid .keras file (not a zip archive)")
    if not h5py.is_hdf5(p):
        raise KerasImportError(f"{p}: neither a .keras zip archive nor a legacy HDF5 (.h5) file")
    try:
        h5 = h5py.File(p, "r")
    except OSError as e:
        raise KerasImportError(f"{p}: cannot open HDF5 file: {one_line(e)}") from None
    with h5:
        config = _legacy_config(p, h5)
        group = h5.get("model_weights", h5)
        if not isinstance(group, h5py.Group):
            raise KerasImportError(f"{p}: 'model_weights' is not an HDF5 group")
        return _translate(p, config, _LegacyWeights(group), drop_softmax)
