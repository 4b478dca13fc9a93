"""Write Keras model files with h5py + json, in the layouts Keras itself writes (no TensorFlow).

Layouts (checked against files written by Keras 3.15 and against tf.keras 2.x's saving code):

* Keras 3 ``.keras``: an uncompressed zip of ``metadata.json``, ``config.json`` and
  ``model.weights.h5``; in the latter, layer variables are ``layers/<key>/vars/0``, ``1``...
  where ``<key>`` is the snake-case class name plus a per-class counter (``dense``,
  ``dense_1``), and ``vars`` carries the layer's name as attribute ``name``.
* legacy ``.h5``: root attributes ``model_config`` (JSON), ``keras_version``, ``backend``;
  ``model_weights`` with attribute ``layer_names``; ``model_weights/<layer>`` with attribute
  ``weight_names`` and one dataset per weight name, at that (nested) path. Keras 2 writes
  bytes attributes and names like ``dense/kernel:0``; Keras 3 writes str attributes and
  names like ``sequential/dense/kernel``. Keras splits attributes over 64 kB into
  ``weight_names0``, ``weight_names1``...; ``chunk_attrs=True`` imitates that.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np


@dataclass
class Declared:
    """A weight that declares ``shape`` but stores one chunk of it: chunked storage lets a
    kilobyte file claim a tensor of any size (``compression`` sets a filter on it)."""

    shape: tuple[int, ...]
    compression: str | None = None


def _dataset(group, name: str, value) -> None:
    if not isinstance(value, Declared):
        group.create_dataset(name, data=value)
        return
    chunks = tuple(min(64, n) for n in value.shape)
    ds = group.create_dataset(
        name, shape=value.shape, dtype="f4", chunks=chunks, compression=value.compression
    )
    ds[tuple(slice(0, c) for c in chunks)] = 1.0


@dataclass
class Layer:
    class_name: str
    config: dict
    weights: list[tuple[str, np.ndarray]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.config["name"]


def dense(name, kernel, bias=None, activation="linear") -> Layer:
    cfg = {
        "name": name,
        "trainable": True,
        "units": int(kernel.shape[1]),
        "activation": activation,
        "use_bias": bias is not None,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
    }
    w = [("kernel", kernel)] + ([("bias", bias)] if bias is not None else [])
    return Layer("Dense", cfg, w)


def conv2d(name, kernel, bias=None, padding="valid", strides=1, activation="linear") -> Layer:
    cfg = {
        "name": name,
        "trainable": True,
        "filters": int(kernel.shape[3]),
        "kernel_size": list(kernel.shape[:2]),
        "strides": [strides, strides],
        "padding": padding,
        "data_format": "channels_last",
        "dilation_rate": [1, 1],
        "groups": 1,
        "activation": activation,
        "use_bias": bias is not None,
    }
    w = [("kernel", kernel)] + ([("bias", bias)] if bias is not None else [])
    return Layer("Conv2D", cfg, w)


def pool(name, kind="Max", size=2, strides=None, padding="valid") -> Layer:
    strides = size if strides is None else strides
    cfg = {
        "name": name,
        "pool_size": [size, size],
        "strides": [strides, strides],
        "padding": padding,
        "data_format": "channels_last",
    }
    return Layer(f"{kind}Pooling2D", cfg)


def layer(class_name, name, weights=(), **config) -> Layer:
    return Layer(class_name, {"name": name, "trainable": True, **config}, list(weights))


def _snake(name: str) -> str:
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def model_config(
    layers: list[Layer],
    input_shape: tuple,
    *,
    functional: bool = False,
    keras2: bool = False,
    input_name: str = "input_layer",
) -> dict:
    """The model's config as Keras 3 (or, with ``keras2``, tf.keras 2) serialises it."""
    batch_shape = [None, *input_shape]
    input_cfg = {"dtype": "float32", "sparse": False, "ragged": False, "name": input_name}
    input_cfg["batch_input_shape" if keras2 else "batch_shape"] = batch_shape
    entries = [{"class_name": "InputLayer", "config": input_cfg}]
    entries += [{"class_name": lay.class_name, "config": dict(lay.config)} for lay in layers]
    if not keras2:
        for e in entries:
            e.update(module="keras.layers", registered_name=None)
    if not functional:
        config = {"name": "sequential", "trainable": True, "layers": entries}
        if not keras2:
            config["build_input_shape"] = batch_shape
        out = {"class_name": "Sequential", "config": config}
    else:
        prev = None
        for e in entries:
            e["name"] = e["config"]["name"]
            if prev is None:
                e["inbound_nodes"] = []
            elif keras2:
                e["inbound_nodes"] = [[[prev, 0, 0, {}]]]
            else:
                tensor = {"shape": None, "dtype": "float32", "keras_history": [prev, 0, 0]}
                arg = {"class_name": "__keras_tensor__", "config": tensor}
                e["inbound_nodes"] = [{"args": [arg], "kwargs": {}}]
            prev = e["name"]
        config = {"name": "functional", "trainable": True, "layers": entries}
        if keras2:
            config.update(input_layers=[[input_name, 0, 0]], output_layers=[[prev, 0, 0]])
        else:
            config.update(input_layers=[input_name, 0, 0], output_layers=[prev, 0, 0])
        out = {"class_name": "Functional", "config": config}
    if not keras2:
        out.update(module="keras", registered_name=None, build_config={"input_shape": None})
    return out


def keras3_weights_h5(
    layers: list[Layer], *, name_attr: bool = True, container: str = "layers"
) -> bytes:
    """``model.weights.h5`` as Keras 3 writes it (``tf.keras``: another container name)."""
    buf = io.BytesIO()
    counters: dict[str, int] = {}
    with h5py.File(buf, "w") as f:
        for lay in layers:
            snake = _snake(lay.class_name)
            counters[snake] = counters.get(snake, -1) + 1
            key = snake if counters[snake] == 0 else f"{snake}_{counters[snake]}"
            vars_ = f.create_group(f"{container}/{key}/vars")
            if name_attr:
                vars_.attrs["name"] = lay.name
            for i, (_, value) in enumerate(lay.weights):
                _dataset(vars_, str(i), value)
        f.create_group("vars").attrs["name"] = "sequential"
    return buf.getvalue()


def write_keras3(path: Path, layers: list[Layer], input_shape: tuple, **kw) -> Path:
    functional = kw.pop("functional", False)
    config = model_config(layers, input_shape, functional=functional)
    meta = {"keras_version": "3.15.1", "date_saved": "2025-01-01@00:00:00"}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", keras3_weights_h5(layers, **kw))
    return path


def _set_list_attr(group, name: str, values: list, chunk: bool) -> None:
    if not values:
        arr = np.asarray([], dtype=np.float64)  # what Keras writes for "no weights"
    elif isinstance(values[0], str):
        arr = np.asarray(values, dtype=h5py.string_dtype())  # Keras 3: variable-length str
    else:
        arr = np.asarray(values)  # Keras 2: fixed-length bytes
    if chunk and len(values) > 1:  # Keras's form for attributes too big for one HDF5 attr
        for i, part in enumerate(np.array_split(arr, len(values))):
            group.attrs[f"{name}{i}"] = part
    else:
        group.attrs[name] = arr


def write_legacy_h5(
    path: Path,
    layers: list[Layer],
    input_shape: tuple,
    *,
    functional: bool = False,
    keras2: bool = True,
    chunk_attrs: bool = False,
) -> Path:
    """A full-model ``.h5`` as tf.keras 2 (``keras2``) or Keras 3's legacy saver writes it."""
    config = model_config(layers, input_shape, functional=functional, keras2=keras2)

    def s(text: str):
        return text.encode("utf8") if keras2 else text

    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = s("2.15.0" if keras2 else "3.15.1")
        f.attrs["backend"] = s("tensorflow" if keras2 else "torch")
        f.attrs["model_config"] = s(json.dumps(config))
        mw = f.create_group("model_weights")
        mw.attrs["backend"] = s("tensorflow" if keras2 else "torch")
        saved = layers if not functional else [layer("InputLayer", "input_layer"), *layers]
        _set_list_attr(mw, "layer_names", [s(lay.name) for lay in saved], chunk_attrs)
        for lay in saved:
            g = mw.create_group(lay.name)
            if keras2:
                names = [f"{lay.name}/{w}:0" for w, _ in lay.weights]
            elif functional:
                names = [f"{lay.name}/{w}" for w, _ in lay.weights]
            else:
                names = [f"sequential/{lay.name}/{w}" for w, _ in lay.weights]
            _set_list_attr(g, "weight_names", [s(n) for n in names], chunk_attrs)
            for n, (_, value) in zip(names, lay.weights, strict=True):
                _dataset(g, n, value)
    return path
