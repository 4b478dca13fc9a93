"""Keras layers on sequences, translated to torch: ``SimpleRNN``, ``LSTM``, ``GRU`` (both
``reset_after`` settings), ``Bidirectional``, ``Conv1D``, 1-D pools, ``Embedding``,
``LayerNormalization`` and ``Reshape``.

Sequences keep Keras's ``(N, T, C)`` layout. Keras's gate order is LSTM (i, f, c, o) --
torch's (i, f, g, o) -- and GRU (z, r, h), reordered to torch's (r, z, n); a Keras bias goes
to torch's input bias (``b_hh`` = 0), except a ``reset_after`` GRU's, whose second row is the
recurrent bias, which is where torch's ``b_hn`` sits too.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from nvmsim.io.keras_format import (
    _BOOLS,
    _MAX_WINDOW,
    _PADDINGS,
    _check_channels_last,
    _check_shape,
    _conv_out,
    _conv_weights,
    _Ctx,
    _depthwise_weights,
    _is_int,
    _Layer,
    _num,
    _opt,
    _tensor,
    _weights,
    _with_activation,
)
from nvmsim.io.keras_modules import (
    ChannelLayerNorm,
    KerasBidirectional,
    KerasRecurrent,
    KerasReshape,
    SequenceConv,
    SequenceGlobalPool,
    SequencePad,
    SequencePool,
    TokenEmbedding,
)
from nvmsim.nn.reset_gru import ResetBeforeGRU

_GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
_GRU_ORDER = (1, 0, 2)  # Keras (z, r, h) -> torch (r, z, n)


def _sequence(ctx: _Ctx, layer: _Layer, shape: tuple | None) -> tuple:
    if shape is None:
        return (None, None)
    if len(shape) != 2:
        raise ctx.err(layer, f"expects a sequence input (T, C), got shape {shape}")
    return shape


def _gates(arr: np.ndarray, units: int, order: tuple[int, ...]) -> np.ndarray:
    """The gate blocks of the last axis of ``arr`` reordered."""
    blocks = np.split(arr, len(order), axis=-1)
    return np.concatenate([blocks[i] for i in order], axis=-1)


def _recurrent(
    ctx: _Ctx, layer: _Layer, cls: str, cfg: dict, src, n_in, part: str | None = None
) -> tuple[KerasRecurrent, int]:
    """A torch module for one Keras recurrent layer (``cfg`` its config; ``part`` names the
    half of a ``Bidirectional``) and its number of units."""
    units = _num(ctx, layer, "units", cfg.get("units"), low=1)
    use_bias = _opt(ctx, layer, "use_bias", cfg.get("use_bias", True), _BOOLS)
    seqs = _opt(ctx, layer, "return_sequences", cfg.get("return_sequences", False), _BOOLS)
    back = _opt(ctx, layer, "go_backwards", cfg.get("go_backwards", False), _BOOLS)
    for key in ("return_state", "stateful", "time_major"):
        if _opt(ctx, layer, key, cfg.get(key, False), _BOOLS):
            raise ctx.err(layer, f"{key}=True is not supported")
    act = cfg.get("activation", "tanh")
    act = act.get("config", act) if isinstance(act, dict) else act
    if cls == "SimpleRNN":
        if act not in ("tanh", "relu"):
            raise ctx.err(layer, f"activation {act!r} is not supported (tanh or relu)")
    else:
        rec = cfg.get("recurrent_activation", "sigmoid")
        rec = rec.get("config", rec) if isinstance(rec, dict) else rec
        if act != "tanh" or rec != "sigmoid":
            raise ctx.err(
                layer,
                f"activation={act!r}, recurrent_activation={rec!r} is not supported "
                "(tanh and sigmoid, the defaults)",
            )
    reset_after = cls == "GRU" and _opt(
        ctx, layer, "reset_after", cfg.get("reset_after", True), _BOOLS
    )
    g = _GATES[cls] * units
    expected = {"kernel": (n_in, g), "recurrent_kernel": (units, g)}
    if use_bias:
        expected["bias"] = (2, g) if reset_after else (g,)
    w = _weights(ctx, layer, src, expected, part)
    kernel, rk = w["kernel"], w["recurrent_kernel"]
    n_in = kernel.shape[0]
    bias = w.get("bias")
    if cls == "GRU":
        kernel, rk = _gates(kernel, units, _GRU_ORDER), _gates(rk, units, _GRU_ORDER)
        bias = None if bias is None else _gates(bias, units, _GRU_ORDER)
    if cls == "GRU" and not reset_after:
        rnn: nn.Module = ResetBeforeGRU(n_in, units, bias=use_bias)
        params = {"weight_ih": kernel.T, "weight_hh": rk.T, "bias": bias}
    else:
        kw = {"bias": use_bias, "batch_first": True}
        if cls == "SimpleRNN":
            rnn = nn.RNN(n_in, units, nonlinearity=act, **kw)
        else:
            rnn = (nn.LSTM if cls == "LSTM" else nn.GRU)(n_in, units, **kw)
        params = {"weight_ih_l0": kernel.T, "weight_hh_l0": rk.T}
        if use_bias:
            b_ih, b_hh = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
            params |= {"bias_ih_l0": b_ih, "bias_hh_l0": b_hh}
    with torch.no_grad():
        for name, value in params.items():
            if value is not None:
                rnn.get_parameter(name).copy_(_tensor(value))
    return KerasRecurrent(rnn, seqs, back), units


def _build_recurrent(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    t, c = _sequence(ctx, layer, shape)
    mod, units = _recurrent(ctx, layer, layer.class_name, layer.config, src, c)
    return [(layer.name, mod)], ((t, units) if mod.return_sequences else (units,))


def _inner(ctx: _Ctx, layer: _Layer, entry) -> tuple[str, dict]:
    cls, cfg = (entry.get("class_name"), entry.get("config")) if isinstance(entry, dict) else (
        None, None)  # fmt: skip
    if cls not in _GATES or not isinstance(cfg, dict):
        raise ctx.err(layer, f"wraps {cls!r}; only SimpleRNN, LSTM and GRU layers are supported")
    return cls, cfg


def _build_bidirectional(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    t, c = _sequence(ctx, layer, shape)
    cfg = layer.config
    merge = cfg.get("merge_mode", "concat")
    if merge not in KerasBidirectional.MERGES:
        raise ctx.err(
            layer, f"merge_mode={merge!r} is not supported ({', '.join(KerasBidirectional.MERGES)})"
        )
    cls, fwd_cfg = _inner(ctx, layer, cfg.get("layer"))
    if cfg.get("backward_layer") is not None:
        b_cls, bwd_cfg = _inner(ctx, layer, cfg["backward_layer"])
        if b_cls != cls:
            raise ctx.err(layer, f"forward {cls} and backward {b_cls} layers differ")
    else:  # Keras's own copy: the same layer reading the other way
        bwd_cfg = fwd_cfg | {"go_backwards": not fwd_cfg.get("go_backwards", False)}
    fwd, units = _recurrent(ctx, layer, cls, fwd_cfg, src, c, "forward")
    bwd, b_units = _recurrent(ctx, layer, cls, bwd_cfg, src, c, "backward")
    if b_units != units or bwd.return_sequences != fwd.return_sequences:
        raise ctx.err(layer, "forward and backward layers differ in units or return_sequences")
    width = 2 * units if merge == "concat" else units
    out = (t, width) if fwd.return_sequences else (width,)
    return [(layer.name, KerasBidirectional(fwd, bwd, merge))], out


def _window1(ctx: _Ctx, layer: _Layer, key: str, default) -> int:
    (v,) = _num(ctx, layer, key, layer.config.get(key, default), low=1, high=_MAX_WINDOW, n=1)
    return v


def _seq_out(ctx: _Ctx, layer: _Layer, t, k: int, s: int, d: int, padding: str):
    return -(-t // s) if padding == "causal" and t is not None else (
        _conv_out(ctx, layer, t, k, s, d, "same" if padding == "causal" else padding))  # fmt: skip


def _geometry1d(ctx: _Ctx, layer: _Layer, shape: tuple | None, paddings: tuple):
    """A 1-D convolution's input (T, C), kernel size, stride, dilation and padding, checked."""
    _check_channels_last(ctx, layer)
    t, c = _sequence(ctx, layer, shape)
    k = _window1(ctx, layer, "kernel_size", None)
    s = _window1(ctx, layer, "strides", 1)
    d = _window1(ctx, layer, "dilation_rate", 1)
    padding = _opt(ctx, layer, "padding", layer.config.get("padding", "valid"), paddings)
    return t, c, k, s, d, padding


def _build_conv1d(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    t, c, k, s, d, padding = _geometry1d(ctx, layer, shape, (*_PADDINGS, "causal"))
    groups, filters, kernel, bias = _conv_weights(ctx, layer, src, (k,), c)
    use_bias = bias is not None
    conv = nn.Conv1d(kernel.shape[1] * groups, filters, k, s, 0, d, groups, bias=use_bias)
    with torch.no_grad():
        conv.weight.copy_(_tensor(kernel.transpose(2, 1, 0)))
        if use_bias:
            conv.bias.copy_(_tensor(bias))
    mods = _with_activation(ctx, layer, [(layer.name, SequenceConv(conv, padding))], 2)
    return mods, (_seq_out(ctx, layer, t, k, s, d, padding), filters)


def _build_depthwise1d(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    """``DepthwiseConv1D`` and ``SeparableConv1D`` (a depthwise then a pointwise convolution)."""
    t, c, k, s, d, padding = _geometry1d(ctx, layer, shape, _PADDINGS)
    c, depth, point, bias = _depthwise_weights(ctx, layer, src, (k,), c)
    cm, has_bias = depth.shape[0], bias is not None
    last = nn.Conv1d(c, cm, k, s, 0, d, groups=c, bias=has_bias and point is None)
    name = layer.name if point is None else f"{layer.name}_depthwise"
    mods: list[tuple[str, nn.Module]] = [(name, SequenceConv(last, padding))]
    with torch.no_grad():
        last.weight.copy_(depth)
        if point is not None:
            last = nn.Conv1d(cm, point.shape[0], 1, bias=has_bias)
            last.weight.copy_(point)
            mods.append((layer.name, SequenceConv(last, "valid")))
        if has_bias:
            last.bias.copy_(bias)
    out = (_seq_out(ctx, layer, t, k, s, d, padding), last.out_channels)
    return _with_activation(ctx, layer, mods, 2), out


def _build_pool1d(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    _check_channels_last(ctx, layer)
    t, c = _sequence(ctx, layer, shape)
    k = _window1(ctx, layer, "pool_size", 2)
    s = k if layer.config.get("strides") is None else _window1(ctx, layer, "strides", None)
    padding = _opt(ctx, layer, "padding", layer.config.get("padding", "valid"), _PADDINGS)
    kind = "max" if layer.class_name.startswith("Max") else "avg"
    return [(layer.name, SequencePool(kind, k, s, padding))], (
        _conv_out(ctx, layer, t, k, s, 1, padding), c)  # fmt: skip


def _build_global_pool1d(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    _check_channels_last(ctx, layer)
    _, c = _sequence(ctx, layer, shape)
    keep = _opt(ctx, layer, "keepdims", layer.config.get("keepdims", False), _BOOLS)
    kind = "max" if layer.class_name.startswith("GlobalMax") else "avg"
    return [(layer.name, SequenceGlobalPool(kind, keep))], ((1, c) if keep else (c,))


def _build_zero_padding1d(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    t, c = _sequence(ctx, layer, shape)
    left, right = _num(ctx, layer, "padding", layer.config.get("padding", 1), low=0,
                       high=_MAX_WINDOW, n=2)  # fmt: skip
    return [(layer.name, SequencePad(left, right))], (None if t is None else t + left + right, c)


def _build_embedding(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    cfg = layer.config
    n = _num(ctx, layer, "input_dim", cfg.get("input_dim"), low=1, high=1 << 31)
    dim = _num(ctx, layer, "output_dim", cfg.get("output_dim"), low=1, high=1 << 20)
    if _opt(ctx, layer, "mask_zero", cfg.get("mask_zero", False), _BOOLS):
        raise ctx.err(layer, "mask_zero=True is not supported (masked sequences)")
    if shape is not None and len(shape) != 1:
        raise ctx.err(layer, f"expects token ids of shape (T,), got shape {shape}")
    w = _weights(ctx, layer, src, {"embeddings": (n, dim)})
    emb = TokenEmbedding(n, dim)
    with torch.no_grad():
        emb.weight.copy_(_tensor(w["embeddings"]))
    return [(layer.name, emb)], ((None if shape is None else shape[0]), dim)


def _build_layernorm(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    cfg = layer.config
    if shape is None:
        raise ctx.err(layer, "the input shape is unknown, so the normalised axis cannot be set")
    rank = len(shape)
    (axis,) = _num(ctx, layer, "axis", cfg.get("axis", -1), n=1)
    if axis not in (-1, rank) or rank not in (1, 2, 3):
        raise ctx.err(layer, f"axis={cfg.get('axis')!r} is not supported (the last axis only)")
    if _opt(ctx, layer, "rms_scaling", cfg.get("rms_scaling", False), _BOOLS):
        raise ctx.err(layer, "rms_scaling=True is not supported")
    eps = _num(ctx, layer, "epsilon", cfg.get("epsilon", 1e-3), low=0, integer=False)
    center = _opt(ctx, layer, "center", cfg.get("center", True), _BOOLS)
    scale = _opt(ctx, layer, "scale", cfg.get("scale", True), _BOOLS)
    names = (["gamma"] if scale else []) + (["beta"] if center else [])
    w = _weights(ctx, layer, src, dict.fromkeys(names, (shape[-1],)))
    c = shape[-1]
    if c is None:
        c = next(iter(w.values())).shape[0] if w else None
    if c is None:
        raise ctx.err(layer, "the number of channels is unknown")
    for name, arr in w.items():
        _check_shape(ctx, layer, name, arr, (c,))
    norm = nn.LayerNorm(c, eps=eps, elementwise_affine=scale or center, bias=center)
    with torch.no_grad():
        if scale:
            norm.weight.copy_(_tensor(w["gamma"]))
        if center:
            norm.bias.copy_(_tensor(w["beta"]))
    mod: nn.Module = ChannelLayerNorm(norm) if rank == 3 else norm
    return [(layer.name, mod)], shape


def _build_reshape(ctx: _Ctx, layer: _Layer, src, shape: tuple | None):
    target = layer.config.get("target_shape")
    if (
        not isinstance(target, list | tuple)
        or not target
        or not all(_is_int(v) and (v >= 1 or v == -1) for v in target)
    ):
        raise ctx.err(layer, f"target_shape={target!r} is not a list of positive ints")
    target = tuple(target)
    images = [s for s in (shape, target) if s is not None and len(s) == 3 and s[2] != 1]
    if images:  # NCHW and Keras's HWC orders differ only with more than one channel
        raise ctx.err(
            layer, f"reshaping images of more than one channel {images[0]} is not supported"
        )
    if shape is not None and None not in shape and -1 not in target:
        if math.prod(shape) != math.prod(target):
            raise ctx.err(layer, f"cannot reshape {shape} into {target}")
    torch_shape = (target[2], target[0], target[1]) if len(target) == 3 else target
    return [(layer.name, KerasReshape(torch_shape))], target


SEQUENCE_BUILDERS = {
    "SimpleRNN": _build_recurrent,
    "LSTM": _build_recurrent,
    "GRU": _build_recurrent,
    "Bidirectional": _build_bidirectional,
    "Conv1D": _build_conv1d,
    "Convolution1D": _build_conv1d,
    "DepthwiseConv1D": _build_depthwise1d,
    "SeparableConv1D": _build_depthwise1d,
    "SeparableConvolution1D": _build_depthwise1d,
    "MaxPooling1D": _build_pool1d,
    "MaxPool1D": _build_pool1d,
    "AveragePooling1D": _build_pool1d,
    "AvgPool1D": _build_pool1d,
    "GlobalAveragePooling1D": _build_global_pool1d,
    "GlobalAvgPool1D": _build_global_pool1d,
    "GlobalMaxPooling1D": _build_global_pool1d,
    "GlobalMaxPool1D": _build_global_pool1d,
    "ZeroPadding1D": _build_zero_padding1d,
    "Embedding": _build_embedding,
    "LayerNormalization": _build_layernorm,
    "Reshape": _build_reshape,
}
