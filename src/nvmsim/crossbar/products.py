"""How a layer multiplies its inputs by a crossbar matrix: a dense product or an N-d convolution.

A crossbar holds a matrix of ``rows x columns``. A ``Linear`` layer reads it once per input
vector; a convolution reads it once per output position with the input patch on the rows
(im2col), rows ordered channel-major ``(c, k1, k2, ...)``. A grouped layer holds one matrix per
group (``in/groups * prod(kernel)`` rows, ``out/groups`` columns). :class:`Product` carries the
geometry and computes ``x @ W`` for any such matrix without unfolding (``F.linear`` /
``F.convNd``); :meth:`Product.im2col` unfolds explicitly for the sampling oracle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.nn.grad as nn_grad

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_WEIGHT_GRAD = {1: nn_grad.conv1d_weight, 2: nn_grad.conv2d_weight, 3: nn_grad.conv3d_weight}


@dataclass(frozen=True)
class Product:
    """Geometry of one layer's product; ``kernel == ()`` is a dense (linear) product.

    ``padding`` is numeric (the layer applies string and non-zero padding modes itself).
    """

    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1

    def __post_init__(self) -> None:
        n = len(self.kernel)
        if n not in (0, 1, 2, 3):
            raise ValueError(f"a product has 0 to 3 spatial dimensions, got {n}")
        for name in ("stride", "padding", "dilation"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have {n} entries, got {getattr(self, name)}")
        if self.groups < 1:
            raise ValueError(f"groups must be >= 1, got {self.groups}")

    @property
    def dims(self) -> int:
        """Spatial dimensions (0 for a dense product)."""
        return len(self.kernel)

    @property
    def unit(self) -> int:
        """Crossbar rows per input channel: ``prod(kernel)``."""
        return math.prod(self.kernel)

    def kernel_weight(self, m: torch.Tensor) -> torch.Tensor:
        """``(out, rows)`` matrix as the weight of :meth:`apply` (``(out, rows/unit, *kernel)``)."""
        return m if not self.kernel else m.reshape(m.shape[0], -1, *self.kernel)

    def apply(self, x: torch.Tensor, w: torch.Tensor, groups: int | None = None) -> torch.Tensor:
        """``x @ W`` for every read: ``x`` is ``(B, C_in)`` or ``(B, C_in, *spatial)``, ``w`` the
        ``(out, rows)`` matrix in kernel layout; ``groups`` overrides the layer's."""
        g = self.groups if groups is None else groups
        if not self.kernel:
            if g == 1:
                return F.linear(x, w)
            b = x.shape[0]
            xg = x.reshape(b, g, -1).transpose(0, 1)  # (g, B, in/g)
            wg = w.reshape(g, -1, w.shape[-1]).transpose(1, 2)  # (g, in/g, out/g)
            return torch.bmm(xg, wg).transpose(0, 1).reshape(b, -1)
        return _CONV[self.dims](x, w, None, self.stride, self.padding, self.dilation, g)

    def weight_grad(
        self, x: torch.Tensor, grad: torch.Tensor, shape: tuple[int, ...] | torch.Size
    ) -> torch.Tensor:
        """Gradient of ``(grad * apply(x, w)).sum()`` with respect to a weight ``w`` of
        ``shape`` (the kernel layout :meth:`apply` takes), without recomputing the product."""
        if self.kernel:
            args = (self.stride, self.padding, self.dilation, self.groups)
            return _CONV_WEIGHT_GRAD[self.dims](x, shape, grad, *args)
        if self.groups == 1:
            return grad.reshape(-1, shape[0]).T @ x.reshape(-1, shape[1])
        b, g = x.shape[0], self.groups
        gw = torch.einsum("bgo,bgi->goi", grad.reshape(b, g, -1), x.reshape(b, g, -1))
        return gw.reshape(shape)

    def channel_sums(
        self, x: torch.Tensor, groups: int | None = None, squared: bool = False
    ) -> torch.Tensor:
        """Sum of ``x`` (or of ``x**2``) over every crossbar row of each group:
        ``(B, groups, *out_spatial)``.

        With a constant per-device variance this is the whole second moment: one channel sum
        and a box filter, never a convolution with one output channel over all inputs.
        """
        g = self.groups if groups is None else groups
        xg = x.unflatten(1, (g, -1))
        if squared:  # without materialising x**2
            s = torch.linalg.vector_norm(xg, dim=2).square_()
        else:
            s = xg.sum(2)
        if not self.kernel:
            return s
        ones = s.new_ones(g, 1, *self.kernel)
        return _CONV[self.dims](s, ones, None, self.stride, self.padding, self.dilation, g)

    def out_sizes(self, sizes: tuple[int, ...]) -> tuple[int, ...]:
        """Output spatial sizes for input spatial ``sizes``."""
        return tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(
                sizes, self.kernel, self.stride, self.padding, self.dilation, strict=True
            )
        )

    def im2col(self, x: torch.Tensor) -> torch.Tensor:
        """Input patches ``(B * L, C_in * unit)``, one row per output position (channel-major
        rows, positions in row-major order); a dense input is returned as it is."""
        if not self.kernel:
            return x
        b, c = x.shape[:2]
        pads = [p for p in reversed(self.padding) for _ in range(2)]
        x = F.pad(x, pads)
        for i, (k, s, d) in enumerate(zip(self.kernel, self.stride, self.dilation, strict=True)):
            x = x.unfold(2 + i, d * (k - 1) + 1, s)[..., ::d]  # window axis appended last
        # (B, C, *out, *kernel) -> (B, *out, C, *kernel)
        n = self.dims
        perm = (0, *range(2, 2 + n), 1, *range(2 + n, 2 + 2 * n))
        return x.permute(perm).reshape(-1, c * self.unit)

    def fold(self, rows: torch.Tensor, batch: int, sizes: tuple[int, ...]) -> torch.Tensor:
        """Inverse of :meth:`im2col` on outputs: ``(B * L, out) -> (B, out, *sizes)``."""
        if not self.kernel:
            return rows
        out = rows.shape[-1]
        y = rows.reshape(batch, *sizes, out)
        return y.permute(0, self.dims + 1, *range(1, self.dims + 1))


def row_partition(
    n_rows: int, tile_rows: int, unit: int = 1, bias_row: bool = False
) -> tuple[tuple[int, int], ...]:
    """Split a crossbar's rows into physical arrays of at most ``tile_rows`` rows.

    Boundaries fall on multiples of ``unit`` (a convolution's rows per input channel, so a
    channel's kernel never straddles two arrays) wherever ``unit <= tile_rows``; otherwise
    every ``tile_rows`` rows. ``n_rows`` counts the kernel rows only; with ``bias_row`` the
    bias row (driven at a constant 1) joins the last array if it has room, else its own.
    """
    if n_rows < 0 or tile_rows < 1 or unit < 1:
        raise ValueError(f"bad partition: {n_rows} rows, tile_rows {tile_rows}, unit {unit}")
    step = (tile_rows // unit) * unit if unit <= tile_rows else tile_rows
    blocks = [(s, min(s + step, n_rows)) for s in range(0, n_rows, step)]
    if bias_row:
        if blocks and blocks[-1][1] - blocks[-1][0] < tile_rows:
            s, e = blocks[-1]
            blocks[-1] = (s, e + 1)
        else:
            blocks.append((n_rows, n_rows + 1))
    return tuple(blocks)
