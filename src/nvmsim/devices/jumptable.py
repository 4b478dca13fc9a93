"""Jump-tables: per conductance bin, the CDF of the conductance change of one pulse.

A jump-table (Burr et al., IEDM 2014; Sidler et al., paper 004) describes how one programming
pulse (SET = potentiation, RESET = depression) changes a device's conductance ``G``: for each
bin of the conductance *before* the pulse it holds the cumulative distribution of ``dG``.
A uniform deviate ``r`` picks ``dG`` by scanning the row of the device's bin for the first
entry that exceeds ``r`` (inverse-CDF sampling). Here every bin ``b`` has its own grid of
``dG`` values ``dg[b, :]`` (non-decreasing) and ``cdf[b, j] = P(dG <= dg[b, j])``
(non-decreasing, last entry 1). Sampling whole arrays is one ``searchsorted`` on the
flattened table (each row offset by its bin index, so the flat array stays sorted).

Conductances are normalised (``[g_min, g_max]``, default ``[0, 1]``); after a pulse a
device is clamped to that range. The artificial tables of paper 004 (linear, asymmetric,
partially and fully nonlinear, with optional stochastic spread) have constructors below;
measured tables load from NPZ or CSV (:func:`load_jumptable`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import torch

from nvmsim.files import atomic_open

Tensor = torch.Tensor


class JumpTableError(ValueError):
    """A jump-table that cannot be used (malformed file or arrays); names the source."""


class JumpTable:
    """Per-bin CDF of ``dG`` for one pulse of one polarity.

    Args:
        g_edges: ``(nb + 1,)`` strictly increasing bin edges; the first and last are
            ``g_min`` and ``g_max``.
        dg: ``(nb, nd)`` (or ``(nd,)``, shared by all bins) non-decreasing ``dG`` values.
        cdf: ``(nb, nd)`` non-decreasing cumulative probabilities in ``[0, 1]``, last 1.
        name: a label (plots, messages).
        source: where the arrays came from (error messages).
    """

    def __init__(
        self,
        g_edges: Tensor,
        dg: Tensor,
        cdf: Tensor,
        name: str = "",
        source: str = "jump-table",
    ) -> None:
        g_edges = torch.as_tensor(g_edges, dtype=torch.float64).flatten()
        dg = torch.as_tensor(dg, dtype=torch.float64)
        cdf = torch.as_tensor(cdf, dtype=torch.float64)
        nb = g_edges.numel() - 1
        if nb < 1:
            raise JumpTableError(f"{source}: need at least 2 bin edges, got {g_edges.numel()}")
        if dg.dim() == 1:
            dg = dg.expand(nb, -1)
        if cdf.dim() == 1:
            cdf = cdf.expand(nb, -1)
        if dg.dim() != 2 or cdf.shape != dg.shape or dg.shape[0] != nb or dg.shape[1] < 1:
            raise JumpTableError(
                f"{source}: dg and cdf must have shape ({nb}, nd) for {nb} bins; "
                f"got dg {tuple(dg.shape)}, cdf {tuple(cdf.shape)}"
            )
        for label, t in (("g_edges", g_edges), ("dg", dg), ("cdf", cdf)):
            if not bool(torch.isfinite(t).all()):
                raise JumpTableError(f"{source}: {label} holds NaN or infinite values")
        if bool((g_edges[1:] <= g_edges[:-1]).any()):
            raise JumpTableError(f"{source}: g_edges must increase strictly")
        if bool((dg[:, 1:] < dg[:, :-1]).any()):
            raise JumpTableError(f"{source}: dg must be non-decreasing along each bin's row")
        if bool((cdf < 0).any()) or bool((cdf > 1 + 1e-6).any()):
            raise JumpTableError(f"{source}: cdf values must lie in [0, 1]")
        if bool((cdf[:, 1:] < cdf[:, :-1] - 1e-12).any()):
            raise JumpTableError(f"{source}: cdf must be non-decreasing along each bin's row")
        last = cdf[:, -1]
        if bool(((last - 1).abs() > 1e-6).any()):
            bad = int(((last - 1).abs() > 1e-6).nonzero()[0])
            raise JumpTableError(
                f"{source}: the cdf of bin #{bad} ends at {float(last[bad]):.6g}, not 1"
            )
        cdf = torch.cummax(cdf.clamp(0.0, 1.0), dim=1).values.clone()
        cdf[:, -1] = 1.0
        self.g_edges = g_edges.contiguous()
        self.dg = dg.contiguous()
        self.cdf = cdf.contiguous()
        self.name = name
        self.g_min = float(g_edges[0])
        self.g_max = float(g_edges[-1])
        widths = g_edges[1:] - g_edges[:-1]
        self._uniform = bool(torch.allclose(widths, widths.mean(), rtol=1e-9, atol=0.0))
        self._inv_width = float(nb / (self.g_max - self.g_min))
        nd = dg.shape[1]
        # A row's flat keys lie in [b, b + 1]: the flattened array is sorted.
        self._keys = (cdf + torch.arange(nb, dtype=torch.float64)[:, None]).flatten()
        self._dg_flat = dg.flatten()
        # Rows with a single possible value (deterministic): no deviate needed.
        one = cdf[:, :1] >= 1.0
        self._deterministic = bool(one.all())
        self._det_step = dg[:, 0].clone()
        self._constant = self._deterministic and bool((self._det_step == self._det_step[0]).all())
        self._nd = nd
        self._cache: dict[torch.dtype, tuple[Tensor, Tensor]] = {}
        # Same distribution in every bin and steps of one sign: n pulses are n independent
        # draws added at once (clamping at the end equals clamping after every pulse).
        same = bool((dg == dg[:1]).all() and (cdf == cdf[:1]).all())
        one_sign = bool((dg >= 0).all() or (dg <= 0).all())
        self._independent = same and one_sign
        self._row_keys = cdf[0].contiguous()

    # ----------------------------------------------------------------- properties
    @property
    def bins(self) -> int:
        return self.g_edges.numel() - 1

    @property
    def deterministic(self) -> bool:
        """True when every bin has one possible ``dG`` (no uniform deviates are used)."""
        return self._deterministic

    @property
    def centres(self) -> Tensor:
        return 0.5 * (self.g_edges[1:] + self.g_edges[:-1])

    def __repr__(self) -> str:
        kind = "deterministic" if self._deterministic else "stochastic"
        return (
            f"JumpTable({self.name or 'unnamed'}: {self.bins} bins on [{self.g_min:g}, "
            f"{self.g_max:g}], {self._nd} dG points, {kind})"
        )

    # ----------------------------------------------------------------- statistics
    def probabilities(self) -> Tensor:
        """``(nb, nd)`` probability of each ``dg`` entry."""
        p = self.cdf.clone()
        p[:, 1:] -= self.cdf[:, :-1]
        return p

    def mean_step(self) -> Tensor:
        """Expected ``dG`` of one pulse in each bin, ``(nb,)``."""
        return (self.probabilities() * self.dg).sum(1)

    def std_step(self) -> Tensor:
        """Standard deviation of ``dG`` of one pulse in each bin, ``(nb,)``."""
        p = self.probabilities()
        m = (p * self.dg).sum(1, keepdim=True)
        return ((p * (self.dg - m) ** 2).sum(1)).clamp_min(0).sqrt()

    def quantile(self, q: float) -> Tensor:
        """The ``dG`` a uniform deviate ``q`` picks in each bin, ``(nb,)`` (e.g. the median)."""
        j = (self.cdf <= q).sum(1).clamp(max=self._nd - 1)
        return self.dg.gather(1, j[:, None]).squeeze(1)

    def cdf_at(self, dg: Tensor) -> Tensor:
        """``P(dG <= dg)`` for every bin at the values ``dg`` (``(m,)``): ``(nb, m)``."""
        dg = torch.as_tensor(dg, dtype=torch.float64)
        le = self.dg[:, :, None] <= dg[None, None, :]
        return (self.probabilities()[:, :, None] * le).sum(1)

    # ----------------------------------------------------------------- sampling
    def bin_index(self, g: Tensor) -> Tensor:
        """Bin of each conductance (values outside the range fall in the end bins)."""
        nb = self.bins
        if self._uniform:
            b = ((g - self.g_min) * self._inv_width).floor()
            return b.clamp(0, nb - 1).long()
        edges = self.g_edges.to(g.dtype)
        return (torch.bucketize(g, edges[1:-1].contiguous(), right=True)).clamp(0, nb - 1)

    def _tables(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if dtype not in self._cache:
            self._cache[dtype] = (self._dg_flat.to(dtype), self._det_step.to(dtype))
        return self._cache[dtype]

    def sample(self, g: Tensor, r: Tensor | None = None) -> Tensor:
        """``dG`` of one pulse for every device at conductance ``g``, picked by uniform
        deviates ``r`` (same shape; ignored by deterministic tables). Vectorised: one
        ``searchsorted`` for the whole array."""
        dg_flat, det = self._tables(g.dtype)
        if self._constant:
            return torch.full_like(g, float(det[0]))
        b = self.bin_index(g)
        if self._deterministic:
            return det[b]
        if r is None:
            raise ValueError("a stochastic jump-table needs uniform deviates r")
        key = b.to(torch.float64) + r.to(torch.float64).clamp(0.0, 1.0 - 1e-12)
        j = torch.searchsorted(self._keys, key, right=True)
        j = torch.minimum(j, b * self._nd + (self._nd - 1))
        return dg_flat[j]

    def step(self, g: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Conductances after one pulse, clamped to ``[g_min, g_max]``."""
        r = None
        if not self._deterministic:
            r = torch.rand(g.shape, generator=generator, dtype=torch.float64)
        return (g + self.sample(g, r)).clamp_(self.g_min, self.g_max)

    def pulse(self, g: Tensor, n: Tensor | int, generator: torch.Generator | None = None) -> Tensor:
        """Conductances after ``n`` pulses each (``n`` >= 0: a tensor like ``g`` or an int).

        Each pulse depends on the conductance left by the previous one; pulse ``k`` is applied
        to the devices with ``n > k`` at once (a loop over pulse index, never over devices).
        A constant deterministic table takes ``n`` pulses in one step (exactly
        ``clamp(g + n * dG)``).
        """
        out = g.clone()
        apply_pulses(self, out.view(-1), None, n, generator)
        return out

    # ----------------------------------------------------------------- trajectories
    def trajectory(
        self,
        pulses: int,
        devices: int = 1,
        g0: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``(pulses + 1, devices)`` conductances of ``devices`` cells given successive pulses
        from ``g0`` (default: ``g_min`` for a potentiating table, ``g_max`` otherwise)."""
        if g0 is None:
            g0 = self.g_min if float(self.mean_step().mean()) >= 0 else self.g_max
        g = torch.full((devices,), float(g0), dtype=torch.float64)
        out = [g.clone()]
        for _ in range(pulses):
            g = self.step(g, generator)
            out.append(g.clone())
        return torch.stack(out)

    def pulses_to_traverse(self) -> float:
        """Pulses of median size that take a device across its range (dynamic range)."""
        g = self.g_min if float(self.mean_step().mean()) >= 0 else self.g_max
        lo, hi = self.g_min, self.g_max
        med = self.quantile(0.5)
        n, span = 0, hi - lo
        for _ in range(1_000_000):
            b = min(self.bins - 1, max(0, int((g - lo) / span * self.bins)))
            s = float(med[b])
            if s == 0:
                return math.inf
            g += s
            n += 1
            if g >= hi or g <= lo:
                return float(n)
        return math.inf

    # ----------------------------------------------------------------- I/O
    def save(self, path: str | Path) -> None:
        """Write ``g_edges``, ``dg``, ``cdf`` to an NPZ file (atomically)."""
        import numpy as np

        with atomic_open(path) as f:
            np.savez(
                f,
                g_edges=self.g_edges.numpy(),
                dg=self.dg.numpy(),
                cdf=self.cdf.numpy(),
                name=np.array(self.name),
            )


def apply_pulses(
    table: JumpTable,
    flat: Tensor,
    idx: Tensor | None,
    n: Tensor | int,
    generator: torch.Generator | None,
) -> int:
    """In place: give ``flat[idx]`` ``n`` pulses each (``idx=None``: all of ``flat``).

    Returns the number of device pulses applied. ``n`` is a tensor aligned with ``idx`` (or
    with ``flat``) or an int for all.
    """
    if idx is None:
        idx = torch.arange(flat.numel())
    if not isinstance(n, Tensor):
        n = torch.full((idx.numel(),), int(n), dtype=torch.long)
    n = n.reshape(-1).long()
    if n.numel() != idx.numel():
        raise ValueError(f"n has {n.numel()} entries for {idx.numel()} devices")
    if bool((n < 0).any()):
        raise ValueError("pulse counts must be >= 0")
    total = int(n.sum())
    if total == 0:
        return 0
    if table._constant:
        s = float(table._det_step[0])
        flat[idx] = (flat[idx] + n.to(flat.dtype) * s).clamp_(table.g_min, table.g_max)
        return total
    keep = n > 0
    idx, n = idx[keep], n[keep]
    if table._independent:
        r = torch.rand(total, generator=generator, dtype=torch.float64)
        j = torch.searchsorted(table._row_keys, r, right=True).clamp_(max=table._nd - 1)
        steps = table._tables(flat.dtype)[0][j]
        seg = torch.repeat_interleave(torch.arange(idx.numel()), n)
        add = torch.zeros(idx.numel(), dtype=flat.dtype).index_add_(0, seg, steps)
        flat[idx] = (flat[idx] + add).clamp_(table.g_min, table.g_max)
        return total
    k = 0
    while idx.numel():
        g = flat[idx]
        flat[idx] = table.step(g, generator)
        k += 1
        more = n > k
        idx, n = idx[more], n[more]
    return total


# --------------------------------------------------------------------- constructors
def _edges(bins: int, g_min: float, g_max: float) -> Tensor:
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if not g_max > g_min:
        raise ValueError(f"need g_max > g_min, got [{g_min}, {g_max}]")
    return torch.linspace(g_min, g_max, bins + 1, dtype=torch.float64)


def from_steps(
    mean_step: Callable[[Tensor], Tensor] | Tensor | float,
    spread: float = 0.0,
    *,
    bins: int = 100,
    g_min: float = 0.0,
    g_max: float = 1.0,
    points: int = 33,
    name: str = "",
) -> JumpTable:
    """A table whose ``dG`` in each bin is Gaussian around ``mean_step`` (evaluated at the bin
    centres) with std ``spread * |mean_step|``, discretised on ``points`` values within
    +-4 std (each value gets the probability of its interval, the tails go to the ends);
    ``spread = 0`` gives a deterministic table."""
    if spread < 0 or not math.isfinite(spread):
        raise ValueError(f"spread must be >= 0, got {spread}")
    edges = _edges(bins, g_min, g_max)
    centres = 0.5 * (edges[1:] + edges[:-1])
    if callable(mean_step):
        mu = torch.as_tensor(mean_step(centres), dtype=torch.float64).expand(bins).clone()
    else:
        mu = torch.as_tensor(mean_step, dtype=torch.float64).expand(bins).clone()
    if spread == 0:
        return JumpTable(edges, mu[:, None], torch.ones(bins, 1, dtype=torch.float64), name)
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    z = torch.linspace(-4.0, 4.0, points, dtype=torch.float64)
    dz = float(z[1] - z[0])
    upper = z + dz / 2
    cdf = 0.5 * torch.erfc(-upper / math.sqrt(2.0))
    cdf[-1] = 1.0
    cdf = cdf.expand(bins, -1)
    sd = spread * mu.abs()
    dg = mu[:, None] + sd[:, None] * z[None, :]
    return JumpTable(edges, dg, cdf, name)


def linear(
    step: float,
    spread: float = 0.0,
    *,
    reset: bool = False,
    bins: int = 100,
    g_min: float = 0.0,
    g_max: float = 1.0,
    points: int = 33,
) -> JumpTable:
    """Linear response: every pulse moves ``G`` by ``step`` (of the range ``g_max - g_min``
    when ``g_min, g_max = 0, 1``), up for SET, down for ``reset=True``; ``spread`` is the
    relative std of a step (cycle-to-cycle stochasticity)."""
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    s = -step if reset else step
    kind = "RESET" if reset else "SET"
    return from_steps(
        s, spread, bins=bins, g_min=g_min, g_max=g_max, points=points, name=f"linear {kind}"
    )


def asymmetric(
    step: float,
    asymmetry: float,
    spread: float = 0.0,
    *,
    bins: int = 100,
    g_min: float = 0.0,
    g_max: float = 1.0,
) -> tuple[JumpTable, JumpTable]:
    """SET and RESET tables of paper 004's Fig. 8: both linear, SET step ``step``, RESET step
    ``step / asymmetry`` (``asymmetry`` = SET step / RESET step; < 1: RESET steeper)."""
    if not asymmetry > 0:
        raise ValueError(f"asymmetry must be > 0, got {asymmetry}")
    kw = {"bins": bins, "g_min": g_min, "g_max": g_max}
    return (
        linear(step, spread, **kw),
        linear(step / asymmetry, spread, reset=True, **kw),
    )


def nonlinear_step(step: float, extent: float, strength: float, g_min: float, g_max: float):
    """Mean SET step as a function of ``G`` for paper 004's Figs. 9-11.

    Over the lowest ``extent`` of the range the step falls exponentially (geometrically in
    ``G``) from ``step / strength`` at ``g_min`` to ``step`` at the end of the region; above
    it the response is linear with ``step``. ``strength`` = min/max step in ``(0, 1]``.
    """
    if not 0.0 <= extent <= 1.0:
        raise ValueError(f"extent must be in [0, 1], got {extent}")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength (min/max step) must be in (0, 1], got {strength}")
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    span = g_max - g_min

    def fn(g: Tensor) -> Tensor:
        if extent == 0:
            return torch.full_like(g, step)
        u = ((g - g_min) / (extent * span)).clamp(0.0, 1.0)
        return step * strength ** (u - 1.0)

    return fn


def partially_nonlinear(
    step: float,
    extent: float,
    strength: float,
    spread: float = 0.0,
    *,
    bins: int = 100,
    g_min: float = 0.0,
    g_max: float = 1.0,
) -> JumpTable:
    """SET table with an initial nonlinear region (paper 004, Figs. 9-10): see
    :func:`nonlinear_step`. ``extent = 0`` is linear, ``extent = 1`` fully nonlinear."""
    fn = nonlinear_step(step, extent, strength, g_min, g_max)
    return from_steps(
        fn,
        spread,
        bins=bins,
        g_min=g_min,
        g_max=g_max,
        name=f"SET, {100 * extent:g} % nonlinear, min/max {strength:g}",
    )


def fully_nonlinear(
    step: float,
    strength: float,
    spread: float = 0.0,
    *,
    bins: int = 100,
    g_min: float = 0.0,
    g_max: float = 1.0,
) -> JumpTable:
    """SET table without a linear region (paper 004, Fig. 11): the step falls from
    ``step / strength`` at ``g_min`` to ``step`` at ``g_max``."""
    return partially_nonlinear(step, 1.0, strength, spread, bins=bins, g_min=g_min, g_max=g_max)


def from_samples(
    g: Tensor,
    dg: Tensor,
    *,
    bins: int = 50,
    g_min: float | None = None,
    g_max: float | None = None,
    points: int = 64,
    name: str = "measured",
    source: str = "samples",
) -> JumpTable:
    """An empirical table from measured pulses: ``g`` before each pulse and its ``dG``.

    Each bin keeps ``points`` quantiles of its samples (each with probability ``1/points``;
    all samples when it has fewer). A bin without samples copies the nearest bin that has
    some.
    """
    g = torch.as_tensor(g, dtype=torch.float64).flatten()
    dg = torch.as_tensor(dg, dtype=torch.float64).flatten()
    if g.numel() != dg.numel():
        raise JumpTableError(f"{source}: {g.numel()} conductances but {dg.numel()} dG values")
    if g.numel() < 2:
        raise JumpTableError(f"{source}: need at least 2 measured pulses, got {g.numel()}")
    if not bool(torch.isfinite(g).all() and torch.isfinite(dg).all()):
        raise JumpTableError(f"{source}: NaN or infinite values in the measured data")
    lo = float(g.min()) if g_min is None else float(g_min)
    hi = float(g.max()) if g_max is None else float(g_max)
    if not hi > lo:
        raise JumpTableError(f"{source}: the conductance range [{lo}, {hi}] is empty")
    if bins < 1 or points < 1:
        raise JumpTableError(f"{source}: bins and points must be >= 1")
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    b = ((g - lo) / (hi - lo) * bins).floor().long().clamp(0, bins - 1)
    rows: list[tuple[Tensor, Tensor] | None] = []
    for k in range(bins):
        s = dg[b == k].sort().values
        if s.numel() == 0:
            rows.append(None)
        elif s.numel() <= points:
            c = torch.arange(1, s.numel() + 1, dtype=torch.float64) / s.numel()
            rows.append((s, c))
        else:
            q = (torch.arange(points, dtype=torch.float64) + 0.5) / points
            rows.append((torch.quantile(s, q), (torch.arange(points) + 1.0) / points))
    have = [k for k, r in enumerate(rows) if r is not None]
    for k in range(bins):
        if rows[k] is None:
            rows[k] = rows[min(have, key=lambda h, k=k: abs(h - k))]
    nd = max(r[0].numel() for r in rows if r is not None)
    dgt = torch.empty(bins, nd, dtype=torch.float64)
    cdf = torch.ones(bins, nd, dtype=torch.float64)
    for k, r in enumerate(rows):
        assert r is not None
        v, c = r
        dgt[k, : v.numel()] = v
        dgt[k, v.numel() :] = v[-1]
        cdf[k, : c.numel()] = c
    return JumpTable(edges, dgt, cdf, name, source)


def load_jumptable(
    path: str | Path, *, bins: int = 50, points: int = 64, name: str | None = None
) -> JumpTable:
    """Load a measured jump-table.

    * NPZ with ``g_edges``, ``dg`` (``(nd,)`` or ``(nb, nd)``) and ``cdf`` ``(nb, nd)``: a
      table as written by :meth:`JumpTable.save`;
    * NPZ with ``g`` and ``dg`` (1-D, same length), or CSV with header ``g,dg``: measured
      pulses (conductance before each pulse and its change), binned by
      :func:`from_samples` (``bins``, ``points``);
    * CSV with header ``g_lo,g_hi,dg,cdf``: a table in long form, one row per entry, rows of
      one bin consecutive.

    Malformed data raise :class:`JumpTableError` naming the file and the problem.
    """
    path = Path(path)
    src = str(path)
    label = name if name is not None else path.stem
    if not path.is_file():
        raise JumpTableError(f"{src}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path, bins, points, label)
    if suffix in (".csv", ".txt"):
        return _load_csv(path, bins, points, label)
    raise JumpTableError(f"{src}: unknown jump-table format {suffix!r} (expected .npz or .csv)")


#: The most elements one array of an NPZ jump-table may declare (a measured table or 33
#: million measured pulses): a small file cannot make the loader allocate without bound.
MAX_NPZ_ELEMENTS = 1 << 25
#: The most bytes one member of an NPZ jump-table may hold uncompressed (a zip bomb).
MAX_NPZ_MEMBER_BYTES = 1 << 30


def _read_npz_member(zf, info, src: str):
    """One ``.npy`` member of an NPZ file, its header checked before any data are read:
    a numeric dtype, at most :data:`MAX_NPZ_ELEMENTS` elements and
    :data:`MAX_NPZ_MEMBER_BYTES` bytes uncompressed; never a pickle."""
    import numpy as np
    from numpy.lib import format as npy

    key = info.filename.removesuffix(".npy")
    if info.file_size > MAX_NPZ_MEMBER_BYTES:
        raise JumpTableError(
            f"{src}: array {key!r} is {info.file_size:,} bytes uncompressed, more than the "
            f"limit of {MAX_NPZ_MEMBER_BYTES:,}"
        )
    with zf.open(info) as fh:
        version = npy.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = npy.read_array_header_2_0(fh)
        else:
            raise ValueError(f"array {key!r}: unsupported .npy format version {version}")
        count = math.prod(shape)
        if count > MAX_NPZ_ELEMENTS:
            raise JumpTableError(
                f"{src}: array {key!r} declares shape {shape} ({count:,} elements), more than "
                f"the limit of {MAX_NPZ_ELEMENTS:,}"
            )
        if dtype.kind not in "fiu":
            raise JumpTableError(
                f"{src}: array {key!r} holds {dtype} values; a jump-table needs real numbers"
            )
        need = count * dtype.itemsize
        data = fh.read(need)
    if len(data) != need:
        raise JumpTableError(
            f"{src}: array {key!r} declares {need:,} bytes of data but holds {len(data):,}"
        )
    flat = np.frombuffer(data, dtype=dtype)
    return flat.reshape(shape, order="F" if fortran else "C").astype(np.float64)


def _load_npz(path: Path, bins: int, points: int, name: str) -> JumpTable:
    import zipfile
    import zlib

    src = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}
            wanted = (
                ("g_edges", "dg", "cdf")
                if {"g_edges", "dg", "cdf"} <= members.keys()
                else ("g", "dg")
                if {"g", "dg"} <= members.keys()
                else ()
            )
            arrays = {k: _read_npz_member(zf, members[k], src) for k in wanted}
    except JumpTableError:
        raise
    except MemoryError:
        raise JumpTableError(f"{src}: not enough memory to read its arrays") from None
    except (
        OSError,
        ValueError,
        EOFError,
        RuntimeError,
        NotImplementedError,
        zipfile.BadZipFile,
        zlib.error,
    ) as err:
        raise JumpTableError(f"{src}: not a readable NPZ file: {err}") from None
    if not arrays:
        raise JumpTableError(
            f"{src}: expected arrays g_edges, dg, cdf (a table) or g, dg (measured pulses); "
            f"found {sorted(members)}"
        )
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}  # float64, as read
    try:
        if "cdf" in t:
            return JumpTable(t["g_edges"], t["dg"], t["cdf"], name, src)
        if t["g"].ndim != 1 or t["dg"].ndim != 1:
            raise JumpTableError(f"{src}: g and dg must be 1-D arrays of measured pulses")
        return from_samples(t["g"], t["dg"], bins=bins, points=points, name=name, source=src)
    except (TypeError, ValueError) as err:
        if isinstance(err, JumpTableError):
            raise
        raise JumpTableError(f"{src}: {err}") from None


def _load_csv(path: Path, bins: int, points: int, name: str) -> JumpTable:
    src = str(path)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as err:
        raise JumpTableError(f"{src}: cannot read: {err}") from None
    rows = [r for r in rows if r and not r[0].lstrip().startswith("#")]
    if not rows:
        raise JumpTableError(f"{src}: empty file")
    head = [h.strip().lower() for h in rows[0]]
    body = rows[1:]
    cols: dict[str, list[float]] = {h: [] for h in head}
    for i, r in enumerate(body, start=2):
        if len(r) != len(head):
            raise JumpTableError(f"{src}: line {i}: {len(r)} fields, header has {len(head)}")
        for h, v in zip(head, r, strict=True):
            try:
                x = float(v)
            except ValueError:
                raise JumpTableError(
                    f"{src}: line {i}: column {h!r}: not a number: {v!r}"
                ) from None
            if not math.isfinite(x):
                raise JumpTableError(f"{src}: line {i}: column {h!r}: {v!r} is not finite")
            cols[h].append(x)
    if {"g_lo", "g_hi", "dg", "cdf"} <= set(head):
        return _table_from_long(cols, src, name)
    if {"g", "dg"} <= set(head):
        return from_samples(
            torch.tensor(cols["g"], dtype=torch.float64),
            torch.tensor(cols["dg"], dtype=torch.float64),
            bins=bins,
            points=points,
            name=name,
            source=src,
        )
    raise JumpTableError(
        f"{src}: header {','.join(head)!r} names neither g,dg (measured pulses) nor "
        "g_lo,g_hi,dg,cdf (a table)"
    )


def _table_from_long(cols: dict[str, list[float]], src: str, name: str) -> JumpTable:
    n = len(cols["dg"])
    if n == 0:
        raise JumpTableError(f"{src}: no data rows")
    keys: list[tuple[float, float]] = []
    groups: dict[tuple[float, float], list[tuple[float, float]]] = {}
    for lo, hi, d, c in zip(cols["g_lo"], cols["g_hi"], cols["dg"], cols["cdf"], strict=True):
        k = (lo, hi)
        if k not in groups:
            if keys and lo < keys[-1][0]:
                raise JumpTableError(f"{src}: bins must appear in increasing g_lo order")
            keys.append(k)
            groups[k] = []
        groups[k].append((d, c))
    for (_, hi0), (lo1, _) in zip(keys, keys[1:], strict=False):
        if abs(hi0 - lo1) > 1e-9 * max(1.0, abs(hi0)):
            raise JumpTableError(f"{src}: bins are not contiguous: g_hi {hi0} then g_lo {lo1}")
    edges = torch.tensor([k[0] for k in keys] + [keys[-1][1]], dtype=torch.float64)
    nd = max(len(v) for v in groups.values())
    dg = torch.empty(len(keys), nd, dtype=torch.float64)
    cdf = torch.ones(len(keys), nd, dtype=torch.float64)
    for b, k in enumerate(keys):
        v = groups[k]
        dg[b, : len(v)] = torch.tensor([d for d, _ in v], dtype=torch.float64)
        dg[b, len(v) :] = v[-1][0]
        cdf[b, : len(v)] = torch.tensor([c for _, c in v], dtype=torch.float64)
    return JumpTable(edges, dg, cdf, name, src)
