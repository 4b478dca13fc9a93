"""ADC models: which code a column's analog partial sum becomes.

Every model digitises ``u = y / lsb`` (the partial sum in LSBs) of a symmetric converter with
``S = 2**(bits-1) - 1`` codes on each side of zero and returns integer codes in ``[-S, S]``;
the digital side reconstructs ``code * lsb`` (it does not know the converter's errors). The
models follow M. Spear et al., "The Impact of Analog-to-Digital Converter Architecture and
Variability on Analog Neural Network Accuracy", IEEE JXCDC 9 (2023), as CrossSim 3 does:

* ``uniform``: ideal transitions half an LSB either side of each code (round half to even,
  clamp);
* ``sar``: successive approximation, a binary search of ``bits`` comparisons against a
  capacitive DAC (CDAC) of binary-weighted capacitors; capacitor mismatch (``capacitor_std``
  per unit capacitor; a capacitor of ``2**i`` units has ``sqrt(2**i)`` times its spread)
  moves the CDAC levels, and a non-monotonic CDAC gives the SAR's missing codes. One SAR ADC
  (one CDAC, one comparator) serves ``columns_per_adc`` neighbouring columns;
* ``ramp``: one CDAC ramp per array, shared by all its columns, each column with its own
  comparator; the counter stops at the ramp's first crossing, so the transitions are the
  running maximum of the ramp's (mismatched) levels.

On top of every model: a per-column gain error (``gain_std``, relative), a comparator offset
(``offset_std`` LSB: per column, or per ADC for ``sar``), both drawn once per chip instance;
integral non-linearity (``inl``: a table of LSB over the input range, or ``inl_poly``:
polynomial coefficients in the normalised input ``x`` in ``[-1, 1]``; ``dnl``: a table of
code-width errors whose running sum is the INL) that is the same for every ADC of a design;
and input-referred noise (``noise`` LSB rms, fresh for every conversion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Largest threshold table an ADC model builds per converter (``2**bits`` entries each).
MAX_TABLE = 1 << 24


def steps(bits: int) -> int:
    """Codes on each side of zero of a symmetric ``bits``-bit converter."""
    return max(2 ** (bits - 1) - 1, 1)


@dataclass(frozen=True)
class AdcDesign:
    """What an ADC model needs beyond its bits (see :class:`nvmsim.config.AdcModelConfig`)."""

    kind: str = "uniform"
    gain_std: float = 0.0
    offset_std: float = 0.0
    noise: float = 0.0
    capacitor_std: float = 0.0
    columns_per_adc: int = 1
    inl: tuple[float, ...] = ()
    inl_poly: tuple[float, ...] = ()
    dnl: tuple[float, ...] = ()

    @property
    def ideal(self) -> bool:
        """Whether the converter is the plain round-and-clamp quantiser."""
        return (
            self.kind == "uniform"
            and not (self.gain_std or self.offset_std or self.noise)
            and not (self.inl or self.inl_poly or self.dnl)
        )

    @property
    def has_table(self) -> bool:
        """Whether conversion searches a threshold table: mismatched capacitors or a
        non-linearity (else the transitions are the ideal ones and conversion rounds)."""
        cdac = self.kind != "uniform" and self.capacitor_std > 0
        return cdac or bool(self.inl or self.inl_poly or self.dnl)


def nonlinearity(design: AdcDesign, bits: int) -> np.ndarray:
    """INL (LSB) at each of the ``2**bits - 1`` transitions ``r = 1 .. 2**bits - 1`` (float64)."""
    n = 2**bits
    s = steps(bits)
    r = np.arange(1, n)
    x = (r - s - 0.5) / s  # normalised input of each transition, -1 .. 1
    inl = np.zeros(n - 1)
    if design.inl:
        pts = np.asarray(design.inl, dtype=np.float64)
        inl += np.interp(x, np.linspace(-1.0, 1.0, len(pts)), pts)
    if design.inl_poly:
        inl += np.polynomial.polynomial.polyval(x, np.asarray(design.inl_poly, dtype=np.float64))
    if design.dnl:
        pts = np.asarray(design.dnl, dtype=np.float64)
        widths = np.interp(x[:-1] + 0.5 / s, np.linspace(-1.0, 1.0, len(pts)), pts)
        inl[1:] += np.cumsum(widths)  # transition r moves by the code widths below it
    return inl


def cdac_levels(
    bits: int, count: int, capacitor_std: float, generator: torch.Generator | None, **kw
) -> torch.Tensor:
    """Output of ``count`` mismatched binary-weighted CDACs for every word ``0 .. 2**bits - 1``,
    in LSB: ``2**bits * sum_i bit_i C_i / (sum_i C_i + C_term)``, ideal ``C_i = 2**i``."""
    n = 2**bits
    unit = 2.0 ** torch.arange(bits + 1, **kw)
    unit[-1] = 1.0  # the terminating unit capacitor
    caps = unit.expand(count, bits + 1)
    if capacitor_std > 0:
        eps = torch.randn(caps.shape, generator=generator, **kw)
        caps = caps + capacitor_std * unit.sqrt() * eps
    words = torch.arange(n, device=kw.get("device"))
    bit = ((words.unsqueeze(1) >> torch.arange(bits, device=words.device)) & 1).to(caps.dtype)
    return n * (bit @ caps[:, :bits].T).T / caps.sum(1, keepdim=True)  # (count, n)


def thresholds(
    design: AdcDesign, bits: int, tables: int, generator: torch.Generator | None, **kw
) -> torch.Tensor:
    """Transition levels (LSB) of ``tables`` converters: ``(tables, 2**bits)``; entry ``r`` is
    where the register moves from ``r - 1`` to ``r`` (entry 0 is never compared)."""
    n = 2**bits
    if tables * n > MAX_TABLE:
        raise ValueError(
            f"{bits}-bit {design.kind} ADC tables for {tables} converters exceed "
            f"{MAX_TABLE:,} entries; use fewer bits or more columns_per_adc"
        )
    s = steps(bits)
    if design.kind == "uniform":
        levels = torch.arange(n, **kw).expand(tables, n)
    else:
        levels = cdac_levels(bits, tables, design.capacitor_std, generator, **kw)
    t = levels - (s + 0.5)
    inl = torch.as_tensor(nonlinearity(design, bits), **kw)
    t = torch.cat([t[:, :1], t[:, 1:] + inl], dim=1)
    if design.kind != "sar":  # a ramp (or flash) converter trips at the first crossing
        t = t.cummax(dim=1).values
    return t.contiguous()


def search(u: torch.Tensor, table: torch.Tensor, index: torch.Tensor, bits: int) -> torch.Tensor:
    """Successive approximation: ``bits`` comparisons of ``u`` against ``table[index]`` rows.

    On a monotonic table this is the count of transitions below ``u`` (any converter with
    those transitions); on a non-monotonic one it is exactly what a SAR register holds.
    A comparator trips when ``u`` reaches its level (ties go up). Returns codes in
    ``[-S, S]`` (the register minus ``S``, clamped).
    """
    n = 2**bits
    flat = table.reshape(-1)
    base = index * n
    reg = torch.zeros(u.shape, dtype=torch.long, device=u.device)
    for i in range(bits):
        trial = reg + (1 << (bits - 1 - i))
        reg = torch.where(u >= flat.take(base + trial), trial, reg)
    s = steps(bits)
    return (reg - s).clamp_(-s, s).to(u.dtype)


def convert(
    u: torch.Tensor,
    bits: int,
    design: AdcDesign,
    *,
    gain: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
    table: torch.Tensor | None = None,
    index: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Codes of partial sums ``u`` (in LSB). ``gain`` / ``offset`` / ``index`` broadcast to
    ``u`` (per column); ``table`` comes from :func:`thresholds`. Overwrites ``u``."""
    if gain is not None:
        u = u.mul_(gain)
    if offset is not None:
        u = u.add_(offset)
    if design.noise > 0:
        eps = torch.randn(u.shape, generator=generator, dtype=u.dtype, device=u.device)
        u = u.add_(eps, alpha=design.noise)
    if table is None:  # ideal transitions
        s = steps(bits)
        if design.kind == "uniform":
            return u.round_().clamp_(-s, s)  # ties to even, as torch.round
        return u.add_(0.5).floor_().clamp_(-s, s)  # a comparator trips at its level: ties up
    if index is None:
        index = torch.zeros((), dtype=torch.long, device=u.device)
    return search(u, table, index.expand(u.shape), bits)
