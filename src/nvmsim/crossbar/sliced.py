"""Bit-sliced weights and bit-serial inputs: one layer's matrix on several low-precision arrays.

With ``crossbar.weight_slices = k`` and ``device.bits = b`` a weight is rounded to an integer
``q`` of ``B = k * b`` bits (``|q| <= 2**B - 1`` for differential pairs, ``|q| <= 2**(B-1) - 1``
with an offset) and written as ``k`` digits of ``b`` bits, digit ``j`` on its own set of arrays
(an :class:`~nvmsim.crossbar.tile.AnalogTile` whose cells hold exactly the ``2**b`` levels):

* differential ("balanced core"): slice ``j`` holds ``sign(q) * digit_j(|q|)`` on a pair;
* offset: slice ``j`` holds ``digit_j(q + 2**(B-1))`` against a reference column of cells
  programmed to the level nearest mid-range (code ``c``; with an even number of levels the
  middle is not a level), i.e. reads ``digit_j - c``; the digital side adds back
  ``c (2**B - 1) / (2**b - 1) - 2**(B-1)`` times the input sum.

With ``converter.input_bits_per_read = m`` the DAC code of each input (``dac_bits = n``, two's
complement or unsigned) is applied ``m`` bits per read, least significant first, ``ceil(n/m)``
reads; in two's complement the top read carries the sign bit with weight ``-2**(n-1)``.

Every read of every slice goes through that slice's ADCs (per array, in integer units: one
DAC step times one cell level, with the LSB a power of two of that unit), and the digital
side shifts and adds: ``y = sum_j 2**(b j) sum_p 2**(m p) ADC(x_p @ D_j)``. With ideal devices
and enough ADC bits this is exactly the integer product of the DAC codes and ``q`` (Xiao et
al., "On the Accuracy of Analog Neural Network Inference Accelerators", IEEE CAS Magazine
2022; ISAAC, Shafiee et al., ISCA 2016). Every slice's devices have their own programming
error, drift and read noise, drawn from the layer's generators in slice order.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.crossbar import adc as adc_models
from nvmsim.crossbar import integer_reads, mapping
from nvmsim.crossbar.integer_reads import input_planes
from nvmsim.crossbar.products import Product
from nvmsim.crossbar.tile import AnalogTile, NonFiniteError, all_finite
from nvmsim.devices import levels

#: Unfolded patches per piece of a sliced convolution read exactly (8 MB of float32).
IM2COL_ELEMENTS = 1 << 21


def weight_digits(q: torch.Tensor, slices: int, bits: int, offset: bool) -> list[torch.Tensor]:
    """Integer weights ``q`` as ``slices`` signed digits of ``bits`` bits (see the module)."""
    mask = (1 << bits) - 1
    if offset:
        u = q.to(torch.int64) + (1 << (slices * bits - 1))
        half = mask / 2
        return [((u >> (bits * j)) & mask).to(q.dtype) - half for j in range(slices)]
    mag, sign = q.abs().to(torch.int64), q.sign()
    return [((mag >> (bits * j)) & mask).to(q.dtype) * sign for j in range(slices)]


class SlicedTile(nn.Module):
    """A layer's matrix as ``weight_slices`` tiles read with (bit-serial) integer inputs."""

    def __init__(
        self,
        config: AnalogConfig | None = None,
        product: Product | None = None,
        bias_row: bool = False,
    ) -> None:
        super().__init__()
        self.config = config or AnalogConfig()
        self.product = product or Product()
        if bias_row:
            raise ValueError("bit-sliced and bit-serial tiles keep the bias digital")
        self.bias_row = False
        conv = self.config.converter
        # the slices share the row drivers: this tile applies the DAC, they read its codes
        k = self.config.crossbar.weight_slices
        self.slices = nn.ModuleList(AnalogTile(self.config, self.product) for _ in range(k))
        self.integer_weights = self.config.device.bits is not None
        for t in self.slices:
            t.adc_unit = 1.0 if self.integer_weights and conv.dac_bits is not None else None
        self.register_buffer("w_read", None, persistent=False)
        self.wmax, self.w_lsb = 1.0, 1.0
        self.offset_correction = 0.0  # times the input-code sum, in integer units
        self._name = ""
        self._integer_cache: tuple | None = None  # (slices' caches it was built from, arrays)

    # ------------------------------------------------------------------ as a tile
    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value
        for j, t in enumerate(self.slices):
            t.name = f"{value} slice {j}"

    @property
    def noise_gradient(self) -> str:
        return self.slices[0].noise_gradient

    @noise_gradient.setter
    def noise_gradient(self, value: str) -> None:
        for t in self.slices:
            t.noise_gradient = value

    def __getattr__(self, name: str):
        if name in ("programmed", "held", "rows", "cols", "groups", "row_blocks", "col_blocks",
                    "time", "partition", "kernel_rows", "in_features", "out_features"):  # fmt: skip
            return getattr(self.slices[0], name)
        return super().__getattr__(name)

    @property
    def dac_range(self) -> torch.Tensor | None:
        """The row drivers' range, shared by every slice (kept in the first slice's state)."""
        return self.slices[0].dac_range

    def parts(self) -> list[tuple[str, AnalogTile]]:
        """The physical tiles and their names in a chip file."""
        return [(f"slice{j}", t) for j, t in enumerate(self.slices)]

    # ------------------------------------------------------------------ programming
    def program(
        self,
        weight: torch.Tensor,
        generator: torch.Generator | None = None,
        hold: torch.Generator | None = None,
    ) -> None:
        """Round ``weight`` (out, rows) to ``weight_slices * device.bits`` bits and program each
        slice's digits (slice 0 first: the least significant); ``hold`` as in
        :meth:`AnalogTile.program`."""
        w = self._checked(weight)
        q = self._scale(w)
        if q is None:  # one slice of analog weights, inputs bit-serial
            self.slices[0].program(w, generator, hold=hold)
            return
        b, k = self.config.device.bits, self.config.crossbar.weight_slices
        offset = self.config.crossbar.mapping == "offset"
        digit_max = (2**b - 1) / 2 if offset else 2**b - 1
        for t, d in zip(self.slices, weight_digits(q, k, b, offset), strict=True):
            t.program(d, generator, wmax=digit_max, hold=hold)

    def restore(self, weight: torch.Tensor) -> None:
        """Recompute the slicing's own scale from ``weight`` once the slices' programmed state
        is loaded (a chip file): the same values :meth:`program` set, with no draw."""
        self._scale(self._checked(weight))

    @staticmethod
    def _checked(weight: torch.Tensor) -> torch.Tensor:
        w = weight.detach()
        if not w.is_floating_point():
            w = w.to(torch.float32)
        if w.dim() != 2:
            raise ValueError(f"weight must be 2-D (out, rows), got shape {tuple(w.shape)}")
        if not all_finite(w):
            raise NonFiniteError("weight contains NaN or inf; cannot program it")
        return w

    def _scale(self, w: torch.Tensor) -> torch.Tensor | None:
        """Set ``wmax``, ``w_lsb``, ``offset_correction`` and the read weight from ``w``;
        returns the integer weights ``q`` to slice (``None``: analog weights, one slice)."""
        cfg = self.config
        self.wmax = mapping.weight_range(w, cfg.crossbar.weight_clip_percentile)
        if not self.integer_weights:
            self.w_lsb = 1.0
            self.w_read = self.product.kernel_weight(w.contiguous())
            return None
        b, k = cfg.device.bits, cfg.crossbar.weight_slices
        offset = cfg.crossbar.mapping == "offset"
        top = 2 ** (k * b - 1) - 1 if offset else 2 ** (k * b) - 1
        if top < 1:
            raise ValueError("an offset mapping needs weight_slices * device.bits >= 2")
        q = (w.clamp(-self.wmax, self.wmax) / self.wmax * top).round()
        self.w_lsb = self.wmax / top
        self.offset_correction = 0.0
        if offset:
            g_min = cfg.device.g_min
            # the tile's own rounding of its reference target, in the same dtype
            ref = torch.full((1,), mapping.reference_level(g_min), dtype=w.dtype)
            ref = levels.quantize(ref, b, g_min)
            c = round(float(ref - g_min) / (1 - g_min) * (2**b - 1))
            self.offset_correction = c * (2 ** (k * b) - 1) / (2**b - 1) - 2 ** (k * b - 1)
        self.w_read = self.product.kernel_weight((q * self.w_lsb).contiguous())
        return q

    def drift_to(self, t_seconds: float, hold: torch.Generator | None = None) -> None:
        for t in self.slices:
            t.drift_to(t_seconds, hold)

    def _derive(self) -> None:
        for t in self.slices:
            t._derive()

    def hold_read(self, generator: torch.Generator | None) -> None:
        """Every slice reads one held draw of its devices (:meth:`AnalogTile.hold_read`)."""
        for t in self.slices:
            t.hold_read(generator)

    def reset_calibration(self) -> None:
        for t in self.slices:
            t.reset_calibration()

    # ------------------------------------------------------------------ reading
    def _planes(self, codes: torch.Tensor, memory_format: torch.memory_format):
        """``codes`` as input planes stacked on the batch axis, and the planes' weights."""
        conv = self.config.converter
        if conv.input_bits_per_read is None:
            return codes, [1.0]
        bits, per_read, encoding = conv.dac_bits, conv.input_bits_per_read, conv.input_encoding
        return input_planes(codes, bits, per_read, encoding, memory_format)

    def _read_slices(self, codes: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Every slice read with every input plane (each through its ADCs), shifted and added:
        the general path, in integer units."""
        stacked, pw = self._planes(codes, self.slices[0]._fmt)
        b, bits = codes.shape[0], self.config.device.bits or 0
        y = None
        for j, t in enumerate(self.slices):
            yj = t.read(stacked, generator, apply_dac=False)
            yj = yj.view(len(pw), b, *yj.shape[1:])
            part = yj[0].mul_(pw[0] * 2.0 ** (bits * j))
            for p in range(1, len(pw)):  # shift and add the input planes
                part.add_(yj[p], alpha=pw[p] * 2.0 ** (bits * j))
            y = part if y is None else y.add_(part)
        return y

    def _read_integer(self, codes: torch.Tensor) -> torch.Tensor:
        """The same reads where every one digitises exactly (:mod:`integer_reads`): a
        convolution's patches unfolded a few images at a time."""
        first, p = self.slices[0], self.product
        b = codes.shape[0]
        sizes = p.out_sizes(tuple(codes.shape[2:])) if p.dims else ()
        positions = math.prod(sizes)
        out = codes.new_empty(b * positions, first.out_features)
        conv = self.config.converter
        steps = adc_models.steps(conv.adc_bits)
        ties_up = first.adc_design.kind != "uniform"
        planes = integer_reads.Planes(conv.dac_bits, conv.input_bits_per_read, conv.input_encoding)
        args = (self._integer_arrays(), first.cols, planes, steps, ties_up)
        if not p.dims:
            return integer_reads.read(codes, *args, out=out)
        per = max(1, IM2COL_ELEMENTS // max(1, positions * first.kernel_rows * first.groups))
        for i in range(0, b, per):
            rows = p.im2col(codes[i : i + per])
            integer_reads.read(rows, *args, out=out[i * positions : i * positions + len(rows)])
        return p.fold(out, b, sizes)

    def _integer_arrays(self) -> list[list[integer_reads.ArrayWeights]]:
        """Every slice's ``D_j / lsb_j`` side by side per group and row array, with each
        slice's factor; rebuilt when a slice's own cache (its ranges, its state) changes."""
        caches = [t._exact_adc_weights() for t in self.slices]
        key = tuple(t._exact_cache for t in self.slices)
        held = self._integer_cache
        if held is not None and all(a is b for a, b in zip(held[0], key, strict=True)):
            return held[1]
        first, bits = self.slices[0], self.config.device.bits
        arrays = []
        for g in range(first.groups):
            group = []
            for a, (lo, hi) in enumerate(first.partition()):
                hi = min(hi, first.kernel_rows)
                if hi <= lo:
                    continue  # an array of no rows reads 0
                w = torch.cat([weights[g][a] for weights, _ in caches], dim=1)
                scales = tuple(lsbs[g][a] * 2.0 ** (bits * j) for j, (_, lsbs) in enumerate(caches))
                group.append(integer_reads.ArrayWeights.of(lo, hi, w, scales))
            arrays.append(group)
        self._integer_cache = (key, arrays)
        return arrays

    def read(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        bias: torch.Tensor | None = None,
        apply_dac: bool = True,
        dac_range: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Read every slice with every input plane, shift and add: as
        :meth:`AnalogTile.read`. Gradients are straight-through the quantised product; a
        fixed ``dac_range`` is used as it is (not learned here)."""
        first = self.slices[0]
        first._require_programmed()
        conv = self.config.converter
        x_in = x
        x = x.to(first.w_mean.dtype).contiguous(memory_format=first._fmt)
        if dac_range is not None:
            if dac_range.requires_grad:
                raise ValueError("DAC ranges cannot be learned on bit-sliced or bit-serial tiles")
            first.dac_range = dac_range.to(x.dtype).clone()
        if conv.dac_bits is not None:
            codes, unit, _, _ = first.dac_codes(x)
            codes = codes.detach()  # integers: the gradient is straight-through below
        else:
            codes, unit = x.detach(), torch.ones((), dtype=x.dtype, device=x.device)
        if self.integer_weights and all(t._digitises_exactly(codes) for t in self.slices):
            y = self._read_integer(codes)
        else:
            y = self._read_slices(codes, generator)
        if self.offset_correction:
            s = self.product.channel_sums(codes)  # (B, G, *o)
            cols = y.shape[1] // s.shape[1]
            y = y.add_(s.repeat_interleave(cols, dim=1), alpha=self.offset_correction)
        y = y.mul_(unit * self.w_lsb)
        if x.requires_grad:  # straight-through: the gradient of the quantised product
            lin = self.product.apply(x, self.w_read.to(x.dtype))
            y = lin + (y - lin).detach()
        if bias is not None:
            y = y + bias.view(1, -1, *([1] * self.product.dims))
        if not all_finite(y) and all_finite(x_in):
            first._overflowed(x_in, y)
        return y


def make_tile(config: AnalogConfig, product: Product, bias_row: bool = False) -> nn.Module:
    """The tile a layer needs: bit-sliced / bit-serial or one plain :class:`AnalogTile`."""
    return (SlicedTile if config.sliced else AnalogTile)(config, product, bias_row)
