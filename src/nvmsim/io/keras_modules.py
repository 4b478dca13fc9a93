"""Torch modules for the Keras semantics that have no standard torch module.

Image tensors are NCHW (the transpose of Keras's NHWC); sequence tensors keep Keras's
``(N, T, C)`` layout, which is also what torch's batch-first recurrent layers take.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AvgPool2dSame",
    "ChannelLayerNorm",
    "ChannelsLast",
    "ChannelsLastFlatten",
    "KerasBidirectional",
    "KerasRecurrent",
    "KerasReshape",
    "SamePad2d",
    "SequenceConv",
    "SequenceGlobalPool",
    "SequencePad",
    "SequencePool",
    "TokenEmbedding",
]


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


class KerasRecurrent(nn.Module):
    """A Keras recurrent layer on ``(N, T, C)``: a batch-first torch RNN, LSTM or GRU read
    backwards for ``go_backwards`` (outputs stay in reading order, as Keras returns them),
    returning every step's output (``return_sequences``) or the last."""

    def __init__(self, rnn: nn.Module, return_sequences: bool, go_backwards: bool) -> None:
        super().__init__()
        self.rnn = rnn
        self.return_sequences, self.go_backwards = return_sequences, go_backwards

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x.flip(1) if self.go_backwards else x)
        return y if self.return_sequences else y[:, -1]

    def extra_repr(self) -> str:
        return f"return_sequences={self.return_sequences}, go_backwards={self.go_backwards}"


class KerasBidirectional(nn.Module):
    """Keras ``Bidirectional``: a forward and a backward :class:`KerasRecurrent` whose
    outputs are merged (``concat``, ``sum``, ``mul``, ``ave``); with ``return_sequences`` the
    backward outputs are put back in time order first, as Keras does."""

    MERGES = ("concat", "sum", "mul", "ave")

    def __init__(self, forward: KerasRecurrent, backward: KerasRecurrent, merge: str) -> None:
        super().__init__()
        if merge not in self.MERGES:
            raise ValueError(f"merge_mode must be one of {self.MERGES}, got {merge!r}")
        self.forward_layer, self.backward_layer, self.merge = forward, backward, merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.forward_layer(x), self.backward_layer(x)
        if self.backward_layer.return_sequences:
            b = b.flip(1)
        if self.merge == "concat":
            return torch.cat([a, b], dim=-1)
        if self.merge == "sum":
            return a + b
        return a * b if self.merge == "mul" else (a + b) / 2

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}"


def _pads_1d(n: int, k: int, s: int, d: int, padding: str) -> tuple[int, int]:
    """(left, right) padding of one axis of length ``n``: "valid", TensorFlow's "same" or
    "causal" (everything on the left)."""
    if padding == "causal":
        return d * (k - 1), 0
    return _same_pads(n, k, s, d) if padding == "same" else (0, 0)


class SequenceConv(nn.Module):
    """Keras ``Conv1D`` on ``(N, T, C)``: a torch ``Conv1d`` between two transposes, with
    "valid", TensorFlow "same" (any odd padding on the right) or "causal" padding."""

    def __init__(self, conv: nn.Conv1d, padding: str) -> None:
        super().__init__()
        self.conv, self.padding = conv, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        x = x.transpose(1, 2)
        pad = _pads_1d(x.shape[-1], c.kernel_size[0], c.stride[0], c.dilation[0], self.padding)
        if pad != (0, 0):
            x = F.pad(x, pad)
        return c(x).transpose(1, 2)

    def extra_repr(self) -> str:
        return f"padding={self.padding!r}"


class SequencePool(nn.Module):
    """Keras ``MaxPooling1D`` / ``AveragePooling1D`` on ``(N, T, C)``; with "same" padding
    the padded cells are left out (of the max and of the mean), as TensorFlow does."""

    def __init__(self, kind: str, pool: int, stride: int, padding: str) -> None:
        super().__init__()
        self.kind, self.pool, self.stride, self.padding = kind, pool, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        pad = _pads_1d(x.shape[-1], self.pool, self.stride, 1, self.padding)
        if self.kind == "max":
            x = F.pad(x, pad, value=-math.inf) if pad != (0, 0) else x
            return F.max_pool1d(x, self.pool, self.stride).transpose(1, 2)
        y = F.avg_pool1d(F.pad(x, pad), self.pool, self.stride)
        if pad != (0, 0):
            ones = F.pad(torch.ones_like(x[:1, :1]), pad)
            y = y / F.avg_pool1d(ones, self.pool, self.stride)
        return y.transpose(1, 2)

    def extra_repr(self) -> str:
        return f"{self.kind}, pool={self.pool}, stride={self.stride}, padding={self.padding!r}"


class SequenceGlobalPool(nn.Module):
    """Keras ``GlobalAveragePooling1D`` / ``GlobalMaxPooling1D``: over the time axis."""

    def __init__(self, kind: str, keepdims: bool) -> None:
        super().__init__()
        self.kind, self.keepdims = kind, keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return x.amax(dim=1, keepdim=self.keepdims)
        return x.mean(dim=1, keepdim=self.keepdims)

    def extra_repr(self) -> str:
        return f"{self.kind}, keepdims={self.keepdims}"


class ChannelLayerNorm(nn.Module):
    """Keras ``LayerNormalization`` over the channels of an NCHW image (Keras's last axis)."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TokenEmbedding(nn.Embedding):
    """Keras ``Embedding``: token ids of any numeric dtype (Keras casts them to integers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x if x.dtype == torch.long else x.long())


class KerasReshape(nn.Module):
    """Keras ``Reshape`` of each sample to ``shape`` (in torch's layout)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class ChannelsLast(nn.Module):
    """A channels-first torch module (``BatchNorm1d``) applied to ``(N, T, C)`` sequences."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.transpose(1, 2)).transpose(1, 2)


class SequencePad(nn.Module):
    """Keras ``ZeroPadding1D``: zeros before and after the time axis of ``(N, T, C)``."""

    def __init__(self, left: int, right: int) -> None:
        super().__init__()
        self.left, self.right = left, right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 0, self.left, self.right))

    def extra_repr(self) -> str:
        return f"left={self.left}, right={self.right}"
