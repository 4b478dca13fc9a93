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
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
        self.h5 = h5
        self.by_name: dict[str, h5py.Group] = {}
        self.by_path: dict[str, h5py.Group] = {}

        def visit(path: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and path.rsplit("/", 1)[-1] == "vars":
                self.by_path[path] = obj
                name = _decode(obj.attrs.get("name"))
                if isinstance(name, str):
                    self.by_name.setdefault(name, obj)

        h5.visititems(visit)

    def get(self, layer: _Layer) -> list[tuple[str | None, h5py.Dataset]] | None:
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
        self.group = group

    def get(self, layer: _Layer) -> list[tuple[str | None, h5py.Dataset]] | None:
        if layer.name not in self.group:
            return None
        g = self.group[layer.name]
        names = _h5_attr_list(g, "weight_names")
        if names is None:  # no list: take every dataset under the group, matched by name
            found: list[tuple[str | None, h5py.Dataset]] = []
            g.visititems(lambda p, o: found.append((p, o)) if isinstance(o, h5py.Dataset) else None)
            return found
        out: list[tuple[str | None, h5py.Dataset]] = []
        for n in names:
            if n not in g or not isinstance(g[n], h5py.Dataset):
                raise KerasImportError(
                    f"layer {layer.name!r} ({layer.class_name}): weight {n!r} is listed "
                    f"in weight_names but missing from the file"
                )
            out.append((n, g[n]))
        return out


def _open_keras_zip(path: str) -> tuple[dict, bytes]:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise KerasImportError(f"{path}: not a valid .keras file (not a zip archive)") from e
    with zf:
        names = set(zf.namelist())
        for member in ("config.json", _WEIGHTS_MEMBER):
            if member not in names:
                raise KerasImportError(
                    f"{path}: .keras archive has no {member!r} (members: {sorted(names)})"
                )
        try:
            config = json.loads(zf.read("config.json").decode("utf8"))
            weights = zf.read(_WEIGHTS_MEMBER)
        except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError) as e:
            raise KerasImportError(f"{path}: corrupted .keras archive: {e}") from e
    return config, weights


def _legacy_config(path: str, h5: h5py.File) -> dict:
    raw = h5.attrs.get("model_config")
    if raw is None:
        hint = " (a weights-only file?)" if "layer_names" in h5.attrs else ""
        raise KerasImportError(f"{path}: HDF5 file has no 'model_config' attribute{hint}")
    try:
        return json.loads(_decode(raw))
    except (TypeError, ValueError) as e:
        raise KerasImportError(f"{path}: 'model_config' is not valid JSON: {e}") from e


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


def _layer_name(entry: dict) -> str:
    return str(entry.get("name") or entry.get("config", {}).get("name"))


def _chain(path: str, model_config: dict) -> tuple[list[dict], list | None]:
    """The model's layers in order of computation, and its input shape (with batch) if known."""
    if not isinstance(model_config, dict) or "class_name" not in model_config:
        raise KerasImportError(f"{path}: model config has no 'class_name'")
    cls = model_config["class_name"]
    cfg = model_config.get("config")
    if cls not in _MODEL_CLASSES:
        raise KerasImportError(
            f"{path}: model class {cls!r} is not supported (Sequential or Functional only)"
        )
    layers = cfg if isinstance(cfg, list) else (cfg or {}).get("layers")
    if not isinstance(layers, list) or not all(isinstance(e, dict) for e in layers):
        raise KerasImportError(f"{path}: model config has no list of layers")
    shape = None
    if isinstance(cfg, dict):
        shape = cfg.get("build_input_shape")
    if shape is None:
        shape = (model_config.get("build_config") or {}).get("input_shape")
    if cls == "Sequential":
        return layers, shape

    by_name = {_layer_name(e): e for e in layers}
    inbound: dict[str, list[str]] = {}
    for e in layers:
        name = _layer_name(e)
        nodes = e.get("inbound_nodes") or []
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
        build_shape = (e.get("build_config") or {}).get("input_shape")
        out.append(_Layer(cls, _layer_name(e), cfg, key, build_shape))
    return out


def _input_shape(layers: list[_Layer], model_shape) -> tuple | None:
    """Per-sample input shape (without the batch axis), or None when nothing says."""
    candidates = []
    if layers:
        first = layers[0]
        c = first.config
        candidates += [c.get("batch_shape"), c.get("batch_input_shape")]
        if c.get("input_shape") is not None and first.class_name == "InputLayer":
            candidates.append([None, *c["input_shape"]])
        candidates.append(first.build_input_shape)
    candidates.append(model_shape)
    for s in candidates:
        if isinstance(s, list | tuple) and len(s) >= 1:
            return tuple(None if v is None else int(v) for v in s[1:])
    return None


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------


def _weights(ctx: _Ctx, layer: _Layer, source, expected: list[str]) -> dict[str, np.ndarray]:
    """Read a layer's weights, matched to ``expected`` names by name or else by order."""
    try:
        found = source.get(layer)
    except KerasImportError as e:
        raise KerasImportError(f"{ctx.path}: {e}") from None
    if found is None:
        raise ctx.err(layer, "no weights for this layer in the file")
    wanted = set(expected)
    short = [None if n is None else n.rsplit("/", 1)[-1].split(":", 1)[0] for n, _ in found]
    if len(found) != len(expected):
        raise ctx.err(
            layer,
            f"expected {len(expected)} weights ({', '.join(expected)}), found {len(found)}"
            + (f" ({', '.join(str(s) for s in short)})" if any(short) else ""),
        )
    if all(s is not None for s in short) and set(short) == wanted:
        pairs = [(s, ds) for s, (_, ds) in zip(short, found, strict=True)]
    else:
        pairs = [(e, ds) for e, (_, ds) in zip(expected, found, strict=True)]
    out = {}
    for name, ds in pairs:
        try:
            arr = np.asarray(ds[()])
        except (OSError, ValueError, TypeError) as e:
            raise ctx.err(layer, f"cannot read weight {name!r}: {e}") from e
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ctx.err(layer, f"weight {name!r} has non-numeric dtype {arr.dtype}")
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


def _pair(ctx: _Ctx, layer: _Layer, value, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise ctx.err(layer, f"{what} {value!r} is not an int or a pair")


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
    if act in (None, "linear"):
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
    if act not in factories:
        raise ctx.err(
            layer,
            f"activation {act!r} is not supported (supported: linear, softmax, "
            f"{', '.join(factories)})",
        )
    return factories[act]()


def _conv_out(n: int | None, k: int, s: int, d: int, padding: str) -> int | None:
    if n is None:
        return None
    if padding == "same":
        return -(-n // s)
    return (n - d * (k - 1) - 1) // s + 1


def _spatial(ctx: _Ctx, layer: _Layer, shape: tuple | None) -> tuple:
    if shape is None:
        return (None, None, None)
    if len(shape) != 3:
        raise ctx.err(layer, f"expects an image input (H, W, C), got shape {shape}")
    return shape


def _build_dense(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    cfg = layer.config
    use_bias = bool(cfg.get("use_bias", True))
    w = _weights(ctx, layer, src, ["kernel", "bias"] if use_bias else ["kernel"])
    kernel = w["kernel"]
    units = int(cfg["units"])
    if kernel.ndim != 2 or kernel.shape[1] != units:
        raise ctx.err(layer, f"kernel has shape {kernel.shape}, expected (inputs, {units})")
    n_in = kernel.shape[0]
    if shape is None:
        shape = (n_in,)
    if shape[-1] is not None and shape[-1] != n_in:
        raise ctx.err(layer, f"kernel has shape {kernel.shape}, expected ({shape[-1]}, {units})")
    if use_bias:
        _check_shape(ctx, layer, "bias", w["bias"], (units,))
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
    kh, kw = _pair(ctx, layer, cfg["kernel_size"], "kernel_size")
    sh, sw = _pair(ctx, layer, cfg.get("strides", 1), "strides")
    dh, dw = _pair(ctx, layer, cfg.get("dilation_rate", 1), "dilation_rate")
    groups = int(cfg.get("groups", 1) or 1)
    filters = int(cfg["filters"])
    padding = str(cfg.get("padding", "valid")).lower()
    if padding not in ("valid", "same"):
        raise ctx.err(layer, f"padding={padding!r} is not supported (valid or same)")
    use_bias = bool(cfg.get("use_bias", True))
    w = _weights(ctx, layer, src, ["kernel", "bias"] if use_bias else ["kernel"])
    kernel = w["kernel"]
    if kernel.ndim != 4 or kernel.shape[:2] != (kh, kw) or kernel.shape[3] != filters:
        raise ctx.err(
            layer, f"kernel has shape {kernel.shape}, expected ({kh}, {kw}, in, {filters})"
        )
    cin = kernel.shape[2] * groups
    h, wd, c = _spatial(ctx, layer, shape)
    if c is not None and c != cin:
        raise ctx.err(
            layer,
            f"kernel has shape {kernel.shape}, expected ({kh}, {kw}, {c // groups}, {filters})",
        )
    if use_bias:
        _check_shape(ctx, layer, "bias", w["bias"], (filters,))
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
    out_shape = (
        _conv_out(h, kh, sh, dh, padding),
        _conv_out(wd, kw, sw, dw, padding),
        filters,
    )
    act = _activation(ctx, layer, cfg.get("activation"), 3)
    if act is not None:
        mods.append((f"{layer.name}_{type(act).__name__.lower()}", act))
    return mods, out_shape


def _build_pool(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    cfg = layer.config
    _check_channels_last(ctx, layer)
    k = _pair(ctx, layer, cfg.get("pool_size", 2), "pool_size")
    strides = cfg.get("strides")
    s = k if strides is None else _pair(ctx, layer, strides, "strides")
    padding = str(cfg.get("padding", "valid")).lower()
    if padding not in ("valid", "same"):
        raise ctx.err(layer, f"padding={padding!r} is not supported (valid or same)")
    is_max = layer.class_name.startswith("Max")
    h, wd, c = _spatial(ctx, layer, shape)
    out_shape = (_conv_out(h, k[0], s[0], 1, padding), _conv_out(wd, k[1], s[1], 1, padding), c)
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
    if layer.config.get("keepdims", False):
        return [(layer.name, pool)], (1, 1, c)
    return [(layer.name, pool), (f"{layer.name}_flatten", nn.Flatten())], (c,)


def _build_zero_padding(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    _check_channels_last(ctx, layer)
    p = layer.config.get("padding", 1)
    if isinstance(p, int):
        (t, b), (l, r) = (p, p), (p, p)
    elif isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(v, int) for v in p):
        (t, b), (l, r) = (p[0], p[0]), (p[1], p[1])
    elif isinstance(p, list | tuple) and len(p) == 2:
        (t, b), (l, r) = _pair(ctx, layer, p[0], "padding"), _pair(ctx, layer, p[1], "padding")
    else:
        raise ctx.err(layer, f"padding {p!r} is not understood")
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
    axis = cfg.get("axis", -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if rank is None or axis not in (-1, rank) or rank not in (1, 3):
        raise ctx.err(
            layer,
            f"axis={cfg.get('axis')!r} on input shape {shape} is not supported "
            "(the last axis of a vector or an image)",
        )
    center, scale = bool(cfg.get("center", True)), bool(cfg.get("scale", True))
    expected = (["gamma"] if scale else []) + (["beta"] if center else [])
    w = _weights(ctx, layer, src, [*expected, "moving_mean", "moving_variance"])
    c = w["moving_mean"].shape[0] if w["moving_mean"].ndim == 1 else -1
    if shape[-1] is not None and c != shape[-1]:
        raise ctx.err(layer, f"moving_mean has shape {w['moving_mean'].shape}, expected "
                      f"({shape[-1]},)")  # fmt: skip
    for name, arr in w.items():
        _check_shape(ctx, layer, name, arr, (c,))
    bn = (nn.BatchNorm2d if rank == 3 else nn.BatchNorm1d)(c, eps=float(cfg.get("epsilon", 1e-3)))
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
        axis = cfg.get("axis", -1)
        if isinstance(axis, list) and len(axis) == 1:
            axis = axis[0]
        if axis != -1 and not (rank is not None and axis == rank):
            raise ctx.err(layer, f"axis={axis!r} is not supported (last axis only)")
        return [(layer.name, nn.Softmax(dim=_softmax_dim(rank)))], shape
    if cls == "ELU":
        return [(layer.name, nn.ELU(float(cfg.get("alpha", 1.0))))], shape
    if cls == "LeakyReLU":
        slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
        return [(layer.name, nn.LeakyReLU(float(slope)))], shape
    # ReLU(max_value, negative_slope, threshold)
    max_value = cfg.get("max_value")
    slope = float(cfg.get("negative_slope", 0.0) or 0.0)
    threshold = float(cfg.get("threshold", 0.0) or 0.0)
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
    elif float(max_value) == 6.0:
        mod = nn.ReLU6()
    else:
        mod = BoundedReLU(float(max_value))
    return [(layer.name, mod)], shape


def _build_dropout(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    if layer.class_name == "Dropout":
        return [(layer.name, nn.Dropout(float(layer.config.get("rate", 0.0))))], shape
    if layer.class_name == "SpatialDropout2D":
        return [(layer.name, nn.Dropout2d(float(layer.config.get("rate", 0.0))))], shape
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


def _translate(path: str, model_config: dict, source, drop_softmax: bool) -> nn.Sequential:
    entries, model_shape = _chain(path, model_config)
    layers = _layers(path, entries)
    shape = _input_shape(layers, model_shape)
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
        except (KeyError, TypeError, ValueError) as e:
            raise ctx.err(layer, f"malformed layer config: {e!r}") from e
        ctx.modules.extend(mods)
    if drop_softmax and ctx.modules and isinstance(ctx.modules[-1][1], nn.Softmax):
        ctx.modules.pop()
    model = nn.Sequential()
    for name, mod in ctx.modules:
        base = re.sub(r"\W", "_", name) or "layer"
        unique, i = base, 1
        while unique in model._modules:
            unique, i = f"{base}_{i}", i + 1
        model.add_module(unique, mod)
    return model.eval()


def load_keras(path: str | os.PathLike, drop_softmax: bool = False) -> nn.Sequential:
    """Read a Keras ``.keras`` or legacy ``.h5`` model into an ``nn.Sequential`` (eval mode).

    Image models take NCHW input (the transpose of Keras's NHWC) and compute what Keras
    computes. With ``drop_softmax=True`` a final softmax is left out, so the model returns
    logits. Raises :class:`KerasImportError` (a ``ValueError``) naming the file and the layer
    for unreadable files, unsupported layers, missing weights, wrong shapes or NaN/inf
    weights; ``FileNotFoundError`` when there is no file.
    """
    p = str(Path(path))
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{p}: no such Keras model file")
    if zipfile.is_zipfile(p):
        config, weights_bytes = _open_keras_zip(p)
        try:
            h5 = h5py.File(io.BytesIO(weights_bytes), "r")
        except OSError as e:
            raise KerasImportError(f"{p}: {_WEIGHTS_MEMBER} is not a readable HDF5 file") from e
        with h5:
            return _translate(p, config, _Keras3Weights(h5), drop_softmax)
    if p.lower().endswith(".keras"):
        raise KerasImportError(f"{p}: not a valid .keras file (not a zip archive)")
    if not h5py.is_hdf5(p):
        raise KerasImportError(f"{p}: neither a .keras zip archive nor a legacy HDF5 (.h5) file")
    try:
        h5 = h5py.File(p, "r")
    except OSError as e:
        raise KerasImportError(f"{p}: cannot open HDF5 file: {e}") from e
    with h5:
        config = _legacy_config(p, h5)
        group = h5.get("model_weights", h5)
        if not isinstance(group, h5py.Group):
            raise KerasImportError(f"{p}: 'model_weights' is not an HDF5 group")
        return _translate(p, config, _LegacyWeights(group), drop_softmax)
