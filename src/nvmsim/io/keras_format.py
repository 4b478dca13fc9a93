"""The Keras file formats read without trusting them: ``.keras`` archives, legacy HDF5,
the weight layouts of both, the model's chain of layers, and layer config fields checked one
by one. Every problem is a one-line :class:`KerasImportError` naming the file and the layer.
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from nvmsim.io.checkpoint import one_line


class KerasImportError(ValueError):
    """A Keras file that cannot be read or holds something nvmsim cannot translate."""


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
    """Weights of a Keras 3 ``model.weights.h5``: ``<container>/<key>/vars/<i>``; a
    recurrent layer's in ``<key>/cell/vars``, a ``Bidirectional``'s in
    ``<key>/forward_layer/cell/vars`` and ``<key>/backward_layer/cell/vars``."""

    def __init__(self, h5: h5py.File) -> None:
        self.file = h5
        self.by_name: dict[str, h5py.Group] = {}
        self.by_path: dict[str, h5py.Group] = {}

        def visit(path: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and path.rsplit("/", 1)[-1] == "vars":
                self.by_path[path] = obj
                name = _decode(obj.attrs.get("name"))
                # a layer's own vars only (<container>/<key>/vars): a recurrent cell's or a
                # Bidirectional half's name may equal another layer's
                if isinstance(name, str) and path.count("/") == 2:
                    self.by_name.setdefault(name, obj)

        h5.visititems(visit)

    def _layer_vars(self, layer: _Layer) -> h5py.Group | None:
        group = self.by_name.get(layer.name)
        if group is not None:
            return group
        for container in ("layers", "_layer_checkpoint_dependencies"):
            for key in (layer.key, layer.name):
                group = self.by_path.get(f"{container}/{key}/vars")
                if group is not None:
                    return group
        return None

    def get(
        self, ctx: _Ctx, layer: _Layer, part: str | None = None
    ) -> list[tuple[str | None, Any]] | None:
        group = self._layer_vars(layer)
        if group is None:
            return None
        parent = group.parent
        if part is not None:
            parent = parent.get(f"{part}_layer")
            if not isinstance(parent, h5py.Group):
                return None
            group = parent.get("vars")
        cell = parent.get("cell/vars")
        if isinstance(cell, h5py.Group) and (part is not None or not _numbered(group)):
            group = cell
        if not isinstance(group, h5py.Group):
            return None
        return [(None, group[k]) for k in _numbered(group)]


def _half(name: str, layer: str) -> str | None:
    """Which half of a ``Bidirectional`` a legacy weight path belongs to: the component right
    after the layer's own name (else the first) is ``forward_<inner>`` or ``backward_<inner>``
    (names elsewhere in the path may contain either word)."""
    parts = name.split("/")
    at = max((i for i, p in enumerate(parts) if p == layer), default=-1) + 1
    head = parts[at] if at < len(parts) else ""
    return next((h for h in ("forward", "backward") if head.startswith(f"{h}_")), None)


def _numbered(group: Any) -> list[str]:
    """The members ``0``, ``1``, ... of a ``vars`` group, in order."""
    if not isinstance(group, h5py.Group):
        return []
    return sorted((k for k in group if k.isdigit()), key=int)


class _LegacyWeights:
    """Weights of a legacy ``.h5``: ``model_weights/<layer>/<weight_name>``."""

    def __init__(self, group: h5py.Group) -> None:
        self.group, self.file = group, group.file

    def get(
        self, ctx: _Ctx, layer: _Layer, part: str | None = None
    ) -> list[tuple[str | None, Any]] | None:
        found = self._all(ctx, layer)
        if found is None or part is None:
            return found
        # a Bidirectional's weights: .../forward_lstm/lstm_cell/kernel, then the backward ones
        mine = [(n, d) for n, d in found if n is not None and _half(n, layer.name) == part]
        if mine:
            return mine
        half = len(found) // 2
        return found[:half] if part == "forward" else found[half:]

    def _all(self, ctx: _Ctx, layer: _Layer) -> list[tuple[str | None, Any]] | None:
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


def _open_keras_zip(path: str) -> tuple[Any, io.BytesIO]:
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
                data[member] = _read_member(zf, member)
            except _ZIP_ERRORS as e:  # CRC, truncation, encryption, unknown compression
                raise KerasImportError(
                    f"{path}: corrupted .keras archive, cannot read {member!r}: {one_line(e)}"
                ) from None
    return _json(path, "config.json", data["config.json"].getvalue()), data[_WEIGHTS_MEMBER]


def _read_member(zf: zipfile.ZipFile, member: str) -> io.BytesIO:
    """A member's bytes, inflated a MiB at a time into one buffer: memory stays at the
    member's size (``ZipFile.read`` holds about twice that at its peak)."""
    out = io.BytesIO()
    with zf.open(member) as fh:
        while chunk := fh.read(1 << 20):
            out.write(chunk)
    out.seek(0)
    return out


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


def _weights(
    ctx: _Ctx, layer: _Layer, source, expected: dict[str, Shape], part: str | None = None
) -> dict[str, np.ndarray]:
    """Read a layer's weights, matched to ``expected`` (name -> shape from the config, None
    where it does not say) by name or else by order; each is checked before it is read."""
    try:
        return _read_weights(ctx, layer, source, expected, part)
    except KerasImportError:
        raise
    except (OSError, LookupError, RuntimeError, TypeError, ValueError) as e:  # h5py, damaged file
        raise ctx.err(
            layer, f"cannot read its weights (damaged file?): {type(e).__name__}: {one_line(e)}"
        ) from None


def _read_weights(
    ctx: _Ctx, layer: _Layer, source, expected: dict[str, Shape], part: str | None
) -> dict:
    found = source.get(ctx, layer, part)
    if found is None:
        where = f" ({part} layer)" if part else ""
        raise ctx.err(layer, f"no weights for this layer{where} in the file")
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


def _conv_weights(ctx: _Ctx, layer: _Layer, src, window: tuple, c: int | None):
    """A convolution's ``groups``, ``filters``, ``use_bias`` and weights: the kernel of shape
    ``(*window, c / groups, filters)`` and the bias (None without one), checked."""
    cfg = layer.config
    groups = _num(ctx, layer, "groups", cfg.get("groups", 1), low=1)
    filters = _num(ctx, layer, "filters", cfg.get("filters"), low=1)
    use_bias = _opt(ctx, layer, "use_bias", cfg.get("use_bias", True), _BOOLS)
    for what, count in (("filters", filters), ("input channels", c)):
        if count is not None and count % groups:
            raise ctx.err(layer, f"{what} {count} are not a multiple of groups={groups}")
    kernel_shape = (*window, None if c is None else c // groups, filters)
    expected = {"kernel": kernel_shape, "bias": (filters,)}
    w = _weights(ctx, layer, src, expected if use_bias else {"kernel": kernel_shape})
    return groups, filters, w["kernel"], w.get("bias")


def _with_activation(ctx: _Ctx, layer: _Layer, mods: list, rank: int | None) -> list:
    """``mods`` followed by the layer's own activation, if it has one."""
    act = _activation(ctx, layer, layer.config.get("activation"), rank)
    if act is not None:
        mods.append((f"{layer.name}_{type(act).__name__.lower()}", act))
    return mods


def _depthwise_weights(ctx: _Ctx, layer: _Layer, src, window: tuple, c: int | None):
    """A ``DepthwiseConv1D/2D`` or ``SeparableConv1D/2D``'s weights, checked, as torch
    weights: ``(C, depthwise, pointwise, bias)``. The depthwise kernel ``(*window, C, M)``
    becomes the grouped weight ``(C*M, 1, *window)``: output channel ``c*M + m`` is input
    channel ``c`` through multiplier ``m``, as in Keras. The pointwise kernel (separable only,
    else None) becomes ``(filters, C*M, 1, ...)``; the bias is None without one."""
    cfg = layer.config
    separable = layer.class_name.startswith("Separable")
    mult = _num(ctx, layer, "depth_multiplier", cfg.get("depth_multiplier", 1), low=1)
    use_bias = _opt(ctx, layer, "use_bias", cfg.get("use_bias", True), _BOOLS)
    cm = None if c is None else c * mult
    ones = (1,) * len(window)
    if separable:
        filters = _num(ctx, layer, "filters", cfg.get("filters"), low=1)
        expected = {
            "depthwise_kernel": (*window, c, mult),
            "pointwise_kernel": (*ones, cm, filters),
            "bias": (filters,),
        }
    else:
        expected = {"kernel": (*window, c, mult), "bias": (cm,)}
    if not use_bias:
        del expected["bias"]
    w = _weights(ctx, layer, src, expected)
    kernel = w["depthwise_kernel" if separable else "kernel"]
    c, cm = kernel.shape[-2], kernel.shape[-2] * kernel.shape[-1]
    depth = np.moveaxis(kernel.reshape(*window, cm), -1, 0)[:, None]
    point = None
    if separable:
        p = w["pointwise_kernel"]
        point = _tensor(p.reshape(cm, p.shape[-1]).T.reshape(p.shape[-1], cm, *ones))
    bias = w.get("bias")
    return c, _tensor(depth), point, None if bias is None else _tensor(bias)
