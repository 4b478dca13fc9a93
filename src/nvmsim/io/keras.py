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
same, strides, dilation, groups), ``DepthwiseConv2D`` (``depth_multiplier``),
``SeparableConv2D`` (a depthwise then a 1x1 convolution), ``MaxPooling2D``,
``AveragePooling2D`` (valid / same), ``GlobalAveragePooling2D``, ``GlobalMaxPooling2D``,
``ZeroPadding2D``, ``Flatten``, ``Reshape``, ``BatchNormalization``, ``LayerNormalization``
(last axis), ``Dropout``-like layers (identity at inference), ``Activation``, ``ReLU``
(``max_value=1`` gives nvmsim's ``BoundedReLU``), ``LeakyReLU``, ``ELU``, ``Softmax``; on
sequences ``SimpleRNN`` (tanh / relu), ``LSTM``, ``GRU`` (``reset_after`` True: torch's
``nn.GRU``; False: :class:`~nvmsim.nn.reset_gru.ResetBeforeGRU`), each with
``return_sequences`` and ``go_backwards``, ``Bidirectional`` (merge concat / sum / mul / ave),
``Conv1D`` (valid / same / causal), ``DepthwiseConv1D``, ``SeparableConv1D``,
``MaxPooling1D``, ``AveragePooling1D``,
``GlobalAveragePooling1D``, ``GlobalMaxPooling1D``, ``ZeroPadding1D``, ``SpatialDropout1D``,
``BatchNormalization`` over the channels, and ``Embedding``. Anything else raises
:class:`KerasImportError` naming the layer and its type. Recurrent layers become torch's own
(batch first), so :func:`nvmsim.convert` puts them on crossbars; paper 000's RNN --
``SimpleRNN(D, activation="relu")`` over ``(t, M/t)`` inputs, then a ``Dense`` -- is read as a
:class:`~nvmsim.nn.mosaics.MosaicsRNN` (one core array of ``[kernel; recurrent_kernel]``).

Files are not trusted: a malformed or hostile file (truncated, of wrong JSON types, with
invalid layer fields, NaN/inf weights, or weights that declare more than the file stores) is
a one-line :class:`KerasImportError`. Each weight's declared shape is compared with the one
its layer's config gives, and its declared size with what the file stores, before any data
is read (at most ``_MAX_WEIGHT_BYTES`` per weight).

Conventions of the returned torch model:

* Image tensors are channels-first: where Keras takes NHWC input, the torch model takes the
  NCHW transpose and computes the same function (outputs of image shape are NCHW too).
  Sequences keep Keras's ``(N, T, C)`` layout (what torch's batch-first RNNs take); token ids
  for an ``Embedding`` may be of any integer or float dtype.
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

import math
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from nvmsim.io.checkpoint import errors_as, one_line
from nvmsim.io.keras_format import (
    _BOOLS,
    _MAX_WINDOW,
    _MODEL_CLASSES,
    _PADDINGS,
    _WEIGHTS_MEMBER,
    KerasImportError,
    _activation,
    _chain,
    _check_channels_last,
    _check_shape,
    _conv_out,
    _conv_weights,
    _Ctx,
    _depthwise_weights,
    _input_shape,
    _is_int,
    _Keras3Weights,
    _Layer,
    _layers,
    _legacy_config,
    _LegacyWeights,
    _num,
    _open_keras_zip,
    _opt,
    _softmax_dim,
    _spatial,
    _tensor,
    _weights,
    _window,
    _with_activation,
)
from nvmsim.io.keras_modules import (
    AvgPool2dSame,
    ChannelsLast,
    ChannelsLastFlatten,
    KerasRecurrent,
    KerasReshape,
    SamePad2d,
    _same_pads,
)
from nvmsim.io.keras_sequence import SEQUENCE_BUILDERS
from nvmsim.nn.activations import BoundedReLU
from nvmsim.nn.mosaics import MosaicsRNN

__all__ = ["ChannelsLastFlatten", "KerasImportError", "KerasModel", "load_keras"]


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
    return _with_activation(ctx, layer, [(layer.name, mod)], len(out_shape)), out_shape


def _conv2d_modules(
    name: str, cin: int, cout: int, k, s, d, groups: int, padding: str, h, wd, bias: bool
) -> list[tuple[str, nn.Module]]:
    """A torch ``Conv2d`` with Keras's padding: symmetric where it can be, else an explicit
    zero pad (TensorFlow's "same": any odd padding at the bottom/right)."""
    (kh, kw), (sh, sw), (dh, dw) = k, s, d
    mods: list[tuple[str, nn.Module]] = []
    pad: tuple[int, int] = (0, 0)
    if padding == "same":
        if sh == sw == 1 and (dh * (kh - 1)) % 2 == 0 and (dw * (kw - 1)) % 2 == 0:
            pad = (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
        elif h is not None and wd is not None:
            t, b = _same_pads(h, kh, sh, dh)
            l, r = _same_pads(wd, kw, sw, dw)
            if t == b and l == r:
                pad = (t, l)
            else:
                mods.append((f"{name}_pad", nn.ZeroPad2d((l, r, t, b))))
        else:
            mods.append((f"{name}_pad", SamePad2d(k, s, d)))
    mods.append((name, nn.Conv2d(cin, cout, k, s, pad, d, groups, bias=bias)))
    return mods


def _conv_geometry(ctx: _Ctx, layer: _Layer, shape: tuple | None):
    """Kernel, strides, dilation, padding and the output's (H, W) of a 2-D convolution."""
    _check_channels_last(ctx, layer)
    k = _window(ctx, layer, "kernel_size", None)
    s = _window(ctx, layer, "strides", 1)
    d = _window(ctx, layer, "dilation_rate", 1)
    padding = _opt(ctx, layer, "padding", layer.config.get("padding", "valid"), _PADDINGS)
    h, wd, c = _spatial(ctx, layer, shape)
    out_hw = (
        _conv_out(ctx, layer, h, k[0], s[0], d[0], padding),
        _conv_out(ctx, layer, wd, k[1], s[1], d[1], padding),
    )
    return k, s, d, padding, (h, wd, c), out_hw


def _build_conv2d(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    k, s, d, padding, (h, wd, c), out_hw = _conv_geometry(ctx, layer, shape)
    groups, filters, kernel, bias = _conv_weights(ctx, layer, src, k, c)
    cin = kernel.shape[2] * groups
    mods = _conv2d_modules(
        layer.name, cin, filters, k, s, d, groups, padding, h, wd, bias is not None
    )
    conv = mods[-1][1]
    with torch.no_grad():
        conv.weight.copy_(_tensor(kernel.transpose(3, 2, 0, 1)))
        if bias is not None:
            conv.bias.copy_(_tensor(bias))
    return _with_activation(ctx, layer, mods, 3), (*out_hw, filters)


def _build_depthwise(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    """``DepthwiseConv2D`` and ``SeparableConv2D`` (a depthwise then a 1x1 convolution)."""
    k, s, d, padding, (h, wd, c), out_hw = _conv_geometry(ctx, layer, shape)
    c, depth, point, bias = _depthwise_weights(ctx, layer, src, k, c)
    cm, has_bias = depth.shape[0], bias is not None
    name = layer.name if point is None else f"{layer.name}_depthwise"
    mods = _conv2d_modules(name, c, cm, k, s, d, c, padding, h, wd, has_bias and point is None)
    last = mods[-1][1]
    with torch.no_grad():
        last.weight.copy_(depth)
        if point is not None:
            last = nn.Conv2d(cm, point.shape[0], 1, bias=has_bias)
            last.weight.copy_(point)
            mods.append((layer.name, last))
        if has_bias:
            last.bias.copy_(bias)
    return _with_activation(ctx, layer, mods, 3), (*out_hw, last.out_channels)


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
    if rank is None or axis not in (-1, rank) or rank not in (1, 2, 3):
        raise ctx.err(
            layer,
            f"axis={cfg.get('axis')!r} on input shape {shape} is not supported "
            "(the last axis of a vector, a sequence or an image)",
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
    return [(layer.name, ChannelsLast(bn) if rank == 2 else bn)], shape


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
    if layer.class_name in ("Dropout", "SpatialDropout1D", "SpatialDropout2D"):
        rate = _num(ctx, layer, "rate", layer.config.get("rate", 0.0), low=0, high=1, integer=False)
        drop = nn.Dropout2d if layer.class_name == "SpatialDropout2D" else nn.Dropout
        return [(layer.name, drop(rate))], shape
    return [(layer.name, nn.Identity())], shape  # noise/regularisers: identity at inference


_BUILDERS: dict[str, Callable] = {
    "Dense": _build_dense,
    "Conv2D": _build_conv2d,
    "Convolution2D": _build_conv2d,
    "DepthwiseConv2D": _build_depthwise,
    "SeparableConv2D": _build_depthwise,
    "SeparableConvolution2D": _build_depthwise,
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
    "SpatialDropout1D": _build_dropout,
    "SpatialDropout2D": _build_dropout,
    "AlphaDropout": _build_dropout,
    "GaussianNoise": _build_dropout,
    "GaussianDropout": _build_dropout,
    "ActivityRegularization": _build_dropout,
    **SEQUENCE_BUILDERS,
}


class KerasModel(nn.Sequential):
    """The translated layers; ``input_shape`` is the per-sample input Keras declares (its
    order: (T, C) for sequences, (H, W, C) for images; None where unknown)."""

    input_shape: tuple | None = None

    def reshaped_input(self) -> nn.Sequential:
        """This model behind a reshape of each sample to its declared vector or sequence
        shape, so that it reads images of the same size (a study's ``(N, 1, 28, 28)`` MNIST
        for an LSTM over ``(28, 28)`` or an MLP over ``(784,)``). Image models are returned
        as they are (NCHW input already)."""
        s = self.input_shape
        if s is None or len(s) not in (1, 2) or any(v is None for v in s):
            return self
        return nn.Sequential(KerasReshape(tuple(s)), self)


def _as_mosaics(mods: list[tuple[str, nn.Module]], shape: tuple | None) -> list:
    """Paper 000's RNN in Keras form -- ``SimpleRNN(D, relu)`` over ``(t, M/t)`` (optionally
    after a ``Reshape``), then ``Dense`` -- as :class:`MosaicsRNN`: one core array of
    ``[kernel; recurrent_kernel]`` rows read at every step. Anything else is returned as is."""
    body = [m for _, m in mods]
    reshape = body[0] if body and isinstance(body[0], KerasReshape) else None
    if reshape is not None:
        shape, body = reshape.shape, body[1:]
    tail = body[2:]
    if not (
        len(body) >= 2
        and isinstance(body[0], KerasRecurrent)
        and type(body[0].rnn) is nn.RNN
        and body[0].rnn.nonlinearity == "relu"
        and body[0].rnn.bias
        and not (body[0].return_sequences or body[0].go_backwards)
        and type(body[1]) is nn.Linear
        and body[1].bias is not None
        and all(isinstance(m, nn.Softmax) for m in tail)
        and len(tail) <= 1
        and shape is not None
        and len(shape) == 2
        and _is_int(shape[0])
    ):
        return mods
    rnn, readout = body[0].rnn, body[1]
    t, chunk = shape[0], rnn.input_size
    net = MosaicsRNN(t, t * chunk, chunk + rnn.hidden_size, classes=readout.out_features)
    with torch.no_grad():
        net.core.weight.copy_(torch.cat([rnn.weight_ih_l0, rnn.weight_hh_l0], dim=1))
        net.core.bias.copy_(rnn.bias_ih_l0 + rnn.bias_hh_l0)
        net.readout.load_state_dict(readout.state_dict())
    return [("mosaics_rnn", net), *mods[len(mods) - len(tail) :]]


def _translate(path: str, model_config: Any, source, drop_softmax: bool) -> KerasModel:
    entries, model_shape = _chain(path, model_config)
    layers = _layers(path, entries)
    shape = _input_shape(path, layers, model_shape)
    ctx = _Ctx(path, layers)
    model_input = shape
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
    ctx.modules = _as_mosaics(ctx.modules, model_input)
    if drop_softmax and ctx.modules and isinstance(ctx.modules[-1][1], nn.Softmax):
        ctx.modules.pop()
    model = KerasModel()
    model.input_shape = model_input
    for name, mod in ctx.modules:
        base = re.sub(r"\W", "_", name) or "layer"
        unique, i = base, 1
        while unique in model._modules or hasattr(model, unique):  # "forward", "training"...
            unique, i = f"{base}_{i}", i + 1
        model.add_module(unique, mod)
    return model.eval()


def load_keras(path: str | os.PathLike, drop_softmax: bool = False) -> KerasModel:
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


def _load(p: str, drop_softmax: bool) -> KerasModel:
    if zipfile.is_zipfile(p):
        config, weights = _open_keras_zip(p)
        try:
            h5 = h5py.File(weights, "r")
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
