"""``AnalogConv2d``: ``nn.Conv2d`` computed on a programmed crossbar.

The kernel ``(out, C, kh, kw)`` is programmed as an ``(out, C*kh*kw)`` matrix, read once per
output pixel (im2col). Where the read is one matmul per pixel with moment-identity noise, the
same result is computed with ``conv2d`` (mean, and for the variance a convolution of ``x**2``),
which is faster than unfolding; explicit sampling and per-array ADC partial sums unfold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.nn.base import AnalogMixin


class AnalogConv2d(AnalogMixin, nn.Conv2d):
    """Same signature and ``state_dict`` keys as :class:`torch.nn.Conv2d` (``groups=1``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        config: AnalogConfig | None = None,
        seed: int | None = None,
    ) -> None:
        if groups != 1:
            raise ValueError(f"AnalogConv2d supports groups=1 only, got groups={groups}")
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )  # fmt: skip
        self._init_analog(config, seed)

    @classmethod
    def from_conv(
        cls, layer: nn.Conv2d, config: AnalogConfig | None = None, seed: int | None = None
    ) -> AnalogConv2d:
        new = cls(
            layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
            layer.padding, layer.dilation, layer.groups, layer.bias is not None,
            layer.padding_mode, config=config, seed=seed,
        )  # fmt: skip
        with torch.no_grad():
            new.weight.copy_(layer.weight)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new.program()

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, object]:
        """Apply non-zero padding modes explicitly; return the padding left for conv/unfold."""
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return x, 0
        if isinstance(self.padding, str):
            if self.padding == "valid":
                return x, 0
            # "same": torch pads asymmetrically when the total is odd (extra on the right).
            pads = []
            for d, k in zip(reversed(self.dilation), reversed(self.kernel_size), strict=True):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return F.pad(x, pads), 0
        return x, self.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._ensure_programmed()
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"AnalogConv2d expects (batch, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        tile = self.tile
        x = x.to(tile.w_mean.dtype)
        if tile.config.converter.dac_bits is not None:
            x = tile.dac(x)
        x, pad = self._pad(x)
        direct = (
            (self.config.read_noise_mode == "moment" or not tile.noisy)
            and not self._analog_bias()
            and (tile.config.converter.adc_bits is None or tile.row_blocks == 1)
        )
        y = self._direct(x, pad) if direct else self._unfolded(x, pad)
        bias = self._digital_bias()
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    def _conv(self, x: torch.Tensor, w: torch.Tensor, pad) -> torch.Tensor:
        return F.conv2d(x, w, None, self.stride, pad, self.dilation)

    def _direct(self, x: torch.Tensor, pad) -> torch.Tensor:
        tile = self.tile
        shape = (-1, self.in_channels, *self.kernel_size)
        y = self._conv(x, tile.w_mean_t.view(self.out_channels, *shape[1:]), pad)
        if tile.noisy:
            x2 = x.square()
            if tile.var_const is not None:
                ones = x.new_ones(1, *shape[1:])
                std = (self._conv(x2, ones, pad) * tile.var_const).sqrt_()
            else:
                std = self._conv(x2, tile.w_var.t().reshape(shape), pad).sqrt_()
            eps = torch.randn(y.shape, generator=self.generator, dtype=y.dtype, device=y.device)
            y = torch.addcmul(y, std, eps)
            if tile.ref_var is not None:
                rstd = self._conv(x2, tile.ref_var.t().reshape(shape), pad).sqrt_()
                reps = torch.randn(rstd.shape, generator=self.generator, dtype=y.dtype)
                y = y - tile.expand_ref(rstd * reps, dim=1)
        if tile.config.converter.adc_bits is not None:
            y = tile.adc(y.unsqueeze(0)).squeeze(0)
        return y

    def _unfolded(self, x: torch.Tensor, pad) -> torch.Tensor:
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        cols = F.unfold(x, self.kernel_size, self.dilation, pad, self.stride)  # (B, CKK, L)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        if self._analog_bias():
            rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)
        y = self.tile.read(rows, self.generator, apply_dac=False)  # forward() applied the DAC
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        ho = (h + 2 * ph - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * pw - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        return y.view(b, ho * wo, self.out_channels).transpose(1, 2).reshape(b, -1, ho, wo)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", device={self.config.device.name}"
