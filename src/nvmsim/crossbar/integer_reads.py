"""Bit-serial reads of bit-sliced integer arrays through ideal ADCs, every read at once.

A sliced layer with noiseless integer cells, DAC codes on its rows and ideal ADCs whose LSB is
a power of two of the integer unit (:meth:`AnalogTile._digitises_exactly`) reads

    y = sum_j 2**(b j) lsb_j sum_p w_p sum_a ADC_j,a(x_p[rows_a] @ (D_j[rows_a] / lsb_j))

for input planes ``x_p`` (weights ``w_p``), slices ``D_j`` and row arrays ``a``; every value is
an exact float, so any order of the sums gives the same bits. This module computes it with one
matrix product per array for every slice and plane (the slices' columns side by side, the
planes stacked as rows), rounding and clamping each product in place and adding the planes with
one matrix-vector product, in chunks of rows that stay in cache. A convolution passes its
unfolded patches (one row per output position), so a kernel split over arrays mid-channel costs
no padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Products per chunk (partial sums of every slice and plane of one array): in cache.
CHUNK_ELEMENTS = 1 << 20
#: Planes are collapsed where that leaves fewer rows to multiply than this share of all
#: planes' rows (gathering and scattering the others costs about a quarter of a product).
COLLAPSE_BELOW = 0.75


@dataclass(frozen=True)
class Planes:
    """How DAC codes of ``bits`` bits are applied: ``per_read`` bits per read, least
    significant first (``None``: all at once), ``"twos_complement"`` or ``"unsigned"``."""

    bits: int
    per_read: int | None
    encoding: str

    @property
    def count(self) -> int:
        return 1 if self.per_read is None else math.ceil(self.bits / self.per_read)

    @property
    def weights(self) -> list[float]:
        """Each plane's weight: ``sum_p weight_p * plane_p == codes``."""
        step = self.per_read or 0
        return [float(1 << (step * p)) for p in range(self.count)]


def input_planes(
    codes: torch.Tensor,
    bits: int,
    per_read: int,
    encoding: str,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[torch.Tensor, list[float]]:
    """Integer DAC codes ``(B, ...)`` as ``P = ceil(bits / per_read)`` digit planes stacked on
    the batch axis ``(P * B, ...)``, and the planes' weights: ``sum_p weight_p * plane_p ==
    codes``. Two's complement: the top plane is signed (its MSB weighs ``-2**(bits-1)``)."""
    spec = Planes(bits, per_read, encoding)
    shape = (spec.count * codes.shape[0], *codes.shape[1:])
    out = codes.new_empty(shape).contiguous(memory_format=memory_format)
    u = codes.to(torch.int32)
    _write_planes(spec, u, torch.empty_like(u), out)
    return out, spec.weights


def _write_planes(spec: Planes, u: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> None:
    """Planes of the integer codes ``u`` (overwritten) into ``out``, through ``t`` (scratch of
    ``u``'s shape)."""
    b, m = u.shape[0], spec.per_read
    if spec.encoding == "twos_complement":
        u.bitwise_and_((1 << spec.bits) - 1)  # two's complement bits of negative codes
    for p in range(spec.count):
        torch.bitwise_right_shift(u, m * p, out=t)
        if p < spec.count - 1:
            t.bitwise_and_((1 << m) - 1)
        elif spec.encoding == "twos_complement":  # the top plane's MSB is the sign: extend it
            shift = 32 - (spec.bits - m * p)
            t.bitwise_left_shift_(shift).bitwise_right_shift_(shift)
        out[p * b : (p + 1) * b].copy_(t)


@dataclass(frozen=True)
class ArrayWeights:
    """One row array of one group: its rows ``[lo, hi)`` of the group's kernel rows, every
    slice's ``D_j / lsb_j`` side by side ``(hi - lo, slices * cols)``, and per slice the factor
    of its codes: ``2**(b j) lsb_j``, a float or a ``(cols,)`` row (per-column ranges).
    ``integral``: every ``D_j / lsb_j`` is a whole number (no LSB above the integer unit), so
    every product of integer inputs is its own ADC code unless it saturates. ``row_max``:
    each row's largest ``|D_j / lsb_j|`` over every slice and column."""

    lo: int
    hi: int
    weight: torch.Tensor
    scales: tuple[float | torch.Tensor, ...]
    integral: bool
    row_max: torch.Tensor

    @classmethod
    def of(cls, lo: int, hi: int, weight: torch.Tensor, scales: tuple) -> ArrayWeights:
        """The array with its derived facts (whole numbers, row maxima) computed once."""
        integral = bool(torch.equal(weight, weight.round()))
        return cls(lo, hi, weight, scales, integral, weight.abs().amax(1))


def read(
    rows: torch.Tensor,
    arrays: list[list[ArrayWeights]],
    cols: int,
    planes: Planes,
    steps: int,
    ties_up: bool,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Digitised, shifted and added reads of integer codes ``rows`` ``(N, G * k)``, one row per
    read position: ``(N, G * cols)``. ``arrays`` holds each group's arrays; ``planes`` says
    how the codes are applied; ``steps`` is the ADC's largest code; ``ties_up`` rounds halves
    up (a comparator trips at its level) instead of to even; the result may be written into
    ``out``."""
    n_rows, groups = rows.shape[0], len(arrays)
    out = rows.new_empty(n_rows, groups * cols) if out is None else out
    reader = _Reader(rows, arrays, planes, steps, ties_up)
    for start in range(0, n_rows, reader.chunk):
        codes = rows[start : start + reader.chunk]
        n = codes.shape[0]
        stacked = reader.planes_of(codes)
        acc = out[start : start + n].view(n, groups, cols)
        acc.zero_()
        reader.collapsed = False
        for g, group in enumerate(arrays):
            xg = stacked[:, g * reader.k : (g + 1) * reader.k]
            cg = codes[:, g * reader.k : (g + 1) * reader.k]
            for a in group:
                part = reader.array(xg[:, a.lo : a.hi], cg[:, a.lo : a.hi], a, n)
                summed = part.view(n, len(a.scales), cols)
                dst = acc[:, g]
                for j, s in enumerate(a.scales):
                    if isinstance(s, float):
                        dst.add_(summed[:, j], alpha=s)
                    else:
                        dst.addcmul_(summed[:, j], s)
        # the rows of one read are alike: planes that could not be collapsed in one chunk
        # will not be in the next, so stop bounding them
        reader.collapse = reader.collapse and reader.collapsed
    return out


class _Reader:
    """Buffers for one :func:`read` (each allocated once: a fresh large tensor costs its page
    faults) and the read of one array for one chunk of rows."""

    def __init__(
        self,
        rows: torch.Tensor,
        arrays: list[list[ArrayWeights]],
        planes: Planes,
        steps: int,
        ties_up: bool,
    ) -> None:
        self.spec, self.steps, self.ties_up = planes, steps, ties_up
        self.k = rows.shape[1] // len(arrays)
        widest = max((a.weight.shape[1] for g in arrays for a in g), default=1)
        deepest = max((a.hi - a.lo for g in arrays for a in g), default=1)
        p = planes.count
        self.chunk = chunk = max(1, min(rows.shape[0], CHUNK_ELEMENTS // (p * widest)))
        self.plane_w = torch.tensor(planes.weights, dtype=rows.dtype, device=rows.device)
        self.half = rows.new_full((widest,), 0.5)
        new = rows.new_empty
        self.serial = planes.per_read is not None
        if self.serial:
            self.stacked = new(p * chunk * rows.shape[1])
            i32 = torch.int32
            self.ints = [torch.empty(chunk * rows.shape[1], dtype=i32, device=rows.device)
                         for _ in range(2)]  # fmt: skip
        self.part = new(p * chunk * widest)
        self.sums = new(chunk * widest)
        # products of the safe planes summed are exact floats: every partial sum on the
        # way is at most steps * sum(plane weights) in magnitude
        exact = steps * sum(planes.weights) < 2 / torch.finfo(rows.dtype).eps
        self.collapse = p > 1 and exact and len(arrays) == 1
        self.collapsed = False  # whether any array of the current chunk was
        if self.collapse:
            self.comb = new(chunk * deepest)
            self.picked = new(p * chunk * deepest)
            # each array's row maxima in its own column: every bound of a chunk in one product
            group = arrays[0]
            self.row_max = rows.new_zeros(len(group), self.k)
            for i, a in enumerate(group):
                self.row_max[i, a.lo : a.hi] = a.row_max
            self.index = {id(a): i for i, a in enumerate(group)}

    def planes_of(self, codes: torch.Tensor) -> torch.Tensor:
        """The chunk's input planes stacked ``(P * n, G * k)`` (and, to collapse planes, each
        plane's bound in each array: ``sum_r |x_r| max_c |W_rc|``)."""
        if not self.serial:
            return codes
        u, t = (b[: codes.numel()].view(codes.shape) for b in self.ints)
        p, n = self.spec.count, codes.shape[0]
        stacked = self.stacked[: p * codes.numel()].view(-1, codes.shape[1])
        _write_planes(self.spec, u.copy_(codes), t, stacked)
        if self.collapse:  # (F.linear: a product of few columns runs fastest this way)
            self._bounds = F.linear(stacked, self.row_max)
            if self.spec.encoding == "twos_complement":  # the top plane may mix signs
                top = slice((p - 1) * n, p * n)
                self._bounds[top] = F.linear(stacked[top].abs(), self.row_max)
        return stacked

    def array(self, xa: torch.Tensor, codes: torch.Tensor, a: ArrayWeights, n: int) -> torch.Tensor:
        """``sum_p w_p ADC(x_p @ W)`` of one array for the chunk's planes ``xa`` of its
        ``codes``: ``(n, N)``."""
        if a.integral and self.collapse:
            summed = self._collapsed(xa, codes, a, n)
            if summed is not None:
                self.collapsed = True
                return summed
        w = a.weight
        part = self.part[: xa.shape[0] * w.shape[1]].view(-1, w.shape[1])
        if a.integral:
            torch.mm(xa, w, out=part)
        elif self.ties_up:
            torch.addmm(self.half[: w.shape[1]], xa, w, out=part).floor_()
        else:
            torch.mm(xa, w, out=part).round_()
        part.clamp_(-self.steps, self.steps)
        summed = self.sums[: n * w.shape[1]].view(1, -1)
        torch.mm(self.plane_w.view(1, -1), part.view(self.spec.count, -1), out=summed)
        return summed.view(n, -1)

    def _collapsed(
        self, xa: torch.Tensor, codes: torch.Tensor, a: ArrayWeights, n: int
    ) -> torch.Tensor | None:
        """The same sum where most planes cannot saturate the ADC: a plane whose bound
        ``sum_r |x_r| max_c |W_rc|`` is within the ADC's range reads its own exact product,
        so the safe planes of a row are added first (the row's ``codes`` less its other
        planes) and read with one product; the others are read one by one. ``None`` when too
        few planes are safe for this to save work (:data:`COLLAPSE_BELOW`)."""
        p, w = self.spec.count, a.weight
        bound = self._bounds[:, self.index[id(a)]]
        idx = (bound > self.steps).nonzero().squeeze(1)
        if n + len(idx) > COLLAPSE_BELOW * p * n:
            return None
        comb = self.comb[: n * xa.shape[1]].view(n, -1).copy_(codes)
        summed = self.sums[: n * w.shape[1]].view(n, -1)
        if len(idx):
            at, weight = idx % n, self.plane_w.index_select(0, idx // n).unsqueeze(1)
            picked = self.picked[: len(idx) * xa.shape[1]].view(len(idx), -1)
            torch.index_select(xa, 0, idx, out=picked)
            comb.index_add_(0, at, picked * weight, alpha=-1)
            part = self.part[: len(idx) * w.shape[1]].view(len(idx), -1)
            torch.mm(picked, w, out=part).clamp_(-self.steps, self.steps)
            torch.mm(comb, w, out=summed)
            summed.index_add_(0, at, part.mul_(weight))
        else:
            torch.mm(comb, w, out=summed)
        return summed
