"""``AnalogConv1d/2d/3d``: torch's convolutions computed on programmed crossbars.

The kernel ``(out, C/groups, *k)`` is programmed as one ``(out/groups) x (C/groups * prod(k))``
matrix per group, read once per output position (im2col). The tile computes that read without
unfolding (``F.convNd`` on the expected weights, and for the variance on ``x**2``); explicit
sampling unfolds. Padding modes other than zeros, and ``padding="same"``, are applied here
before the read, exactly as torch does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.crossbar.products import Product
from nvmsim.nn.base import AnalogMixin


class _AnalogConvNd(AnalogMixin):
    """Shared forward of the analog convolutions (``_dims`` spatial dimensions)."""

    _dims: int
    in_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...] | str
    padding_mode: str
    groups: int

    def _setup(self, config: AnalogConfig | None, seed: int | None) -> None:
        explicit = self.padding_mode != "zeros" or isinstance(self.padding, str)
        pad = (0,) * self._dims if explicit else tuple(self.padding)
        product = Product(
            tuple(self.kernel_size), tuple(self.stride), pad, tuple(self.dilation), self.groups
        )
        self._init_analog(config, seed, product)

    @staticmethod
    def _torch_args(layer) -> tuple:
        return (
            layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
            layer.padding, layer.dilation, layer.groups, layer.bias is not None,
            layer.padding_mode,
        )  # fmt: skip

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Apply non-zero padding modes and string padding explicitly."""
        if self.padding_mode != "zeros":
            return F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        if self.padding == "same":
            # torch pads asymmetrically when the total is odd (extra on the right).
            pads = []
            for d, k in zip(reversed(self.dilation), reversed(self.kernel_size), strict=True):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return F.pad(x, pads)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._ensure_programmed()
        batched = x.dim() == self._dims + 2
        if not batched and x.dim() == self._dims + 1:
            x = x.unsqueeze(0)
        if x.dim() != self._dims + 2 or x.shape[1] != self.in_channels:
            spatial = ", ".join(["L", "H, W", "D, H, W"][self._dims - 1].split(", "))
            raise ValueError(
                f"{type(self).__name__} expects (batch, {self.in_channels}, {spatial}), "
                f"got {tuple(x.shape)}"
            )
        y = self._read(self._pad(x))
        return y if batched else y.squeeze(0)


def _conv_init(self, base, args, config, seed) -> None:
    base.__init__(self, *args)
    self._setup(config, seed)


class AnalogConv1d(_AnalogConvNd, nn.Conv1d):
    """Same signature and ``state_dict`` keys as :class:`torch.nn.Conv1d` (any ``groups``)."""

    _dims = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None,
                 config: AnalogConfig | None = None, seed: int | None = None) -> None:  # fmt: skip
        args = (in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                padding_mode, device, dtype)  # fmt: skip
        _conv_init(self, nn.Conv1d, args, config, seed)


class AnalogConv2d(_AnalogConvNd, nn.Conv2d):
    """Same signature and ``state_dict`` keys as :class:`torch.nn.Conv2d` (any ``groups``)."""

    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None,
                 config: AnalogConfig | None = None, seed: int | None = None) -> None:  # fmt: skip
        args = (in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                padding_mode, device, dtype)  # fmt: skip
        _conv_init(self, nn.Conv2d, args, config, seed)

    @classmethod
    def from_conv(
        cls, layer: nn.Conv2d, config: AnalogConfig | None = None, seed: int | None = None
    ) -> AnalogConv2d:
        return cls.from_torch(layer, config, seed)


class AnalogConv3d(_AnalogConvNd, nn.Conv3d):
    """Same signature and ``state_dict`` keys as :class:`torch.nn.Conv3d` (any ``groups``)."""

    _dims = 3

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None,
                 config: AnalogConfig | None = None, seed: int | None = None) -> None:  # fmt: skip
        args = (in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                padding_mode, device, dtype)  # fmt: skip
        _conv_init(self, nn.Conv3d, args, config, seed)
