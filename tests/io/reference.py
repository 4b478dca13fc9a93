"""Keras layer semantics in plain numpy, NHWC, written from Keras's documentation.

Independent of ``nvmsim.io.keras``: loops over output positions, TensorFlow's "same"
padding (``out = ceil(n / s)``, odd padding at the end), padded cells ignored by pooling.
"""

from __future__ import annotations

import numpy as np


def _pads(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """(pad_before, pad_after, out) for one spatial axis."""
    if padding == "valid":
        return 0, 0, (n - k) // s + 1
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2, out


def dense(x, kernel, bias=None):
    y = x @ kernel
    return y if bias is None else y + bias


def conv2d(x, kernel, bias=None, strides=1, padding="valid"):
    n, h, w, _ = x.shape
    kh, kw, _, f = kernel.shape
    t, b, oh = _pads(h, kh, strides, padding)
    l, r, ow = _pads(w, kw, strides, padding)
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    y = np.zeros((n, oh, ow, f), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * strides : i * strides + kh, j * strides : j * strides + kw, :]
            y[:, i, j, :] = np.einsum("nabc,abcf->nf", patch, kernel)
    return y if bias is None else y + bias


def pool2d(x, size=2, strides=None, padding="valid", kind="max"):
    strides = size if strides is None else strides
    n, h, w, c = x.shape
    t, _, oh = _pads(h, size, strides, padding)
    l, _, ow = _pads(w, size, strides, padding)
    y = np.zeros((n, oh, ow, c), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * strides - t, j * strides - l
            rows = slice(max(r0, 0), min(r0 + size, h))
            cols = slice(max(c0, 0), min(c0 + size, w))
            window = x[:, rows, cols, :]  # only real cells: padding never counts
            y[:, i, j, :] = window.max(axis=(1, 2)) if kind == "max" else window.mean(axis=(1, 2))
    return y


def flatten(x):
    return x.reshape(x.shape[0], -1)  # row-major NHWC: Keras's order


def relu(x):
    return np.maximum(x, 0.0)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
