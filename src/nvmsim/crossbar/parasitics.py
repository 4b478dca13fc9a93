"""Parasitic IR drop: exact nodal solution of a resistive crossbar by block elimination.

Circuit (N rows, M columns). Row ``i`` is a wire of M nodes ``a(i, j)``, driven by an ideal
voltage source ``v_i`` at its LEFT end through the first segment ``r_row[i, 0]``; segment
``r_row[i, j]`` joins ``a(i, j-1)`` and ``a(i, j)``. Column ``j`` is a wire of N nodes
``b(i, j)``; segment ``r_col[i, j]`` joins ``b(i, j)`` to ``b(i+1, j)`` and ``r_col[N-1, j]``
joins the bottom node to a sense amplifier held at 0 V. Device ``G[i, j]`` joins ``a(i, j)`` to
``b(i, j)``. The output ``I[:, j]`` is the current flowing out of the bottom of column ``j``.

The network is linear, so ``I = v @ T`` with the effective matrix ``T`` (N x M); one solve per
programmed array, then inference with IR drop is a matmul. ``T`` is computed exactly (float64
round-off, no relaxation): ordering the unknowns crossbar row by crossbar row gives a
block-tridiagonal system; eliminating each row wire (a tridiagonal chain) leaves a dense M x M
block on the column nodes, and block elimination from the top row down costs about
2.4 N M^3 + N^2 M^2 flops. All N inputs travel through the sweep at once (row ``i``'s source
only enters block ``i``) and only the bottom block is ever needed, so there is no back
substitution. When M > N (by that cost estimate) the transposed problem, with columns as
blocks, is solved instead through reciprocity. Ideal wires (r = 0) are eliminated analytically.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

__all__ = [
    "benchmark_sizes",
    "effective_matrix",
    "solve_currents",
    "solve_dense_reference",
]

ArrayLike = np.ndarray | torch.Tensor | float | int

# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------


def _to_float64(x: Any, name: str) -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor or number) as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}") from exc
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _check_G(G: Any) -> np.ndarray:
    g = _to_float64(G, "G")
    if g.ndim != 2:
        raise ValueError(f"G must be a 2-D (N, M) conductance matrix, got shape {g.shape}")
    if g.shape[0] == 0 or g.shape[1] == 0:
        raise ValueError(f"G must have at least one row and one column, got shape {g.shape}")
    if np.any(g < 0):
        raise ValueError("G contains negative conductance; a conductance is never negative")
    return g


def _resistances(r: Any, name: str, shapes: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Validate a scalar or per-segment resistance and broadcast it to ``shapes[0]``."""
    a = _to_float64(r, name)
    if a.ndim == 0:
        a = np.full(shapes[0], float(a))
    elif a.shape not in shapes:
        allowed = " or ".join(str(s) for s in shapes)
        raise ValueError(f"{name} must be a scalar or have shape {allowed}, got {a.shape}")
    if np.any(a < 0):
        raise ValueError(f"{name} contains a negative resistance")
    return a


def _prepare(
    G: Any, r_row: Any, r_col: Any, both_ends: bool, r_access: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate inputs; return (G_eff, row segments (N, M+1), column segments (N, M)).

    The row-segment array holds the left feed and inner segments in columns 0..M-1 and the
    right feed in column M (``inf`` = no right source).
    """
    g = _check_G(G)
    n, m = g.shape
    ra = _resistances(r_access, "r_access", ((n, m),))
    g = g / (1.0 + ra * g)  # 1/(1/G + r_access), written so that G = 0 gives exactly 0
    row_shapes = ((n, m), (n, m + 1)) if both_ends else ((n, m),)
    rr = _resistances(r_row, "r_row", row_shapes)
    rc = _resistances(r_col, "r_col", ((n, m),))
    for arr, name in ((rr, "r_row"), (rc, "r_col")):
        zero = arr == 0
        if zero.any() and not zero.all():
            raise ValueError(
                f"{name} mixes zero and positive segment resistances; give all zeros "
                "(ideal wire) or all positive values"
            )
    if rr.shape == (n, m):
        # Right feed: mirror of the left feed segment when both ends are driven.
        right = rr[:, :1] if both_ends else np.full((n, 1), np.inf)
        rr = np.concatenate([rr, right], axis=1)
    return g, rr, rc


def _check_v(v: Any, n: int) -> np.ndarray:
    a = _to_float64(v, "v")
    if a.ndim not in (1, 2) or a.shape[-1] != n:
        raise ValueError(
            f"v must have shape ({n},) or (K, {n}) to match G's N = {n} rows, got {a.shape}"
        )
    return a


def _like(result: np.ndarray, G: Any) -> np.ndarray | torch.Tensor:
    """Return ``result`` as the same kind (numpy / torch) and floating dtype as ``G``."""
    if isinstance(G, torch.Tensor):
        dtype = G.dtype if G.is_floating_point() else torch.float64
        return torch.from_numpy(np.ascontiguousarray(result)).to(device=G.device, dtype=dtype)
    g = np.asarray(G)
    dtype = g.dtype if np.issubdtype(g.dtype, np.floating) else np.float64
    return np.ascontiguousarray(result, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Tridiagonal helpers
# ---------------------------------------------------------------------------------------------


def _tridiag_batched(off: np.ndarray, diag: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve many symmetric tridiagonal systems at once (Thomas algorithm along axis 0).

    ``diag`` (L, B), ``off`` (L-1, B) the sub/super diagonal, ``rhs`` (L, B); each of the B
    systems is diagonally dominant (a resistor chain with a path to ground), so no pivoting.
    """
    length = diag.shape[0]
    cp = np.empty_like(diag)
    dp = np.empty_like(rhs)
    denom = diag[0].copy()
    cp[0] = off[0] / denom if length > 1 else 0.0
    dp[0] = rhs[0] / denom
    for k in range(1, length):
        denom = diag[k] - off[k - 1] * cp[k - 1]
        if k < length - 1:
            cp[k] = off[k] / denom
        dp[k] = (rhs[k] - off[k - 1] * dp[k - 1]) / denom
    x = np.empty_like(rhs)
    x[-1] = dp[-1]
    for k in range(length - 2, -1, -1):
        x[k] = dp[k] - cp[k] * x[k + 1]
    return x


def _chain_solve(g: np.ndarray, gr: np.ndarray, work: np.ndarray) -> np.ndarray:
    """Solve one row wire: ``A^-1 [L, u]`` in ``work`` (F-ordered (M, M+1)), returned.

    ``g`` (M,) device conductances, ``gr`` (M+1,) segment conductances (left feed, inner
    segments, right feed). ``L`` is the row-wire Laplacian with the sources grounded,
    ``A = L + diag(g)`` and ``u`` the source feed. Eliminating the row wire leaves the column
    nodes coupled by ``H = diag(g) A^-1 L`` and fed by ``w v_i`` with ``w = g A^-1 u``.
    ``H = g A^-1 L`` rather than ``g - g A^-1 g`` avoids cancellation when the wire is far more
    conductive than the devices.
    """
    m = g.shape[0]
    d_lap = gr[:-1] + gr[1:]
    off = -gr[1:-1]
    work.fill(0.0)
    flat = work.ravel(order="F")  # a view: element (j, k) sits at j + k * m
    flat[: m * m : m + 1] = d_lap
    flat[m : m * m : m + 1] = off  # (j, j + 1)
    flat[1 : m * m : m + 1] = off  # (j + 1, j)
    work[0, m] += gr[0]
    work[m - 1, m] += gr[m]
    if m == 1:
        work /= d_lap[0] + g[0]
        return work
    ab = np.empty((2, m))
    ab[0, 0] = 0.0
    ab[0, 1:] = off
    ab[1] = d_lap + g
    y = sla.solveh_banded(ab, work, overwrite_b=True, check_finite=False)
    if not np.shares_memory(y, work):
        work[...] = y
    return work


def _add_coupling(e: np.ndarray, g: np.ndarray, y: np.ndarray, tmp: np.ndarray) -> None:
    """``e += diag(g) y[:, :M]`` in place: add the coupling H of a fresh row.

    H and E are symmetric up to round-off; the Cholesky factorisation reads only the upper
    triangle, so no (slow, strided) symmetrisation is needed.
    """
    np.multiply(g[:, None], y[:, : g.shape[0]], out=tmp)
    open_cells = g == 0
    if open_cells.any():
        tmp[:, open_cells] = 0.0  # exact: no device, no coupling (y = e_j only to round-off)
    e += tmp


# ---------------------------------------------------------------------------------------------
# Block elimination
# ---------------------------------------------------------------------------------------------


def _row_sweep(g: np.ndarray, grs: np.ndarray, gcs: np.ndarray) -> np.ndarray:
    """Effective matrix by block elimination over crossbar rows (blocks of size M).

    ``g`` (N, M); ``grs`` (N, M+1) row segment conductances (column M: right feed to the same
    source, 0 if none); ``gcs`` (N+1, M) column segment conductances, ``gcs[0]`` a top segment
    to ground (0 if none), ``gcs[i+1]`` the segment below node ``(i, j)``. Output: currents out
    of the bottom segments ``gcs[N]`` for a unit voltage on each row source, shape (N, M).

    Schur complements are carried as ``S_i = diag(gcs[i+1]) + E_i`` with
    ``E_i = H_i + diag(c) S_{i-1}^-1 E_{i-1}`` (c = gcs[i]): the network above row ``i`` seen
    through one column segment. This product form has no cancellation, unlike
    ``D_i - c S^-1 c``. The right-hand sides of all inputs so far ride along in the same
    Cholesky solve: ``R_i = [diag(c) S_{i-1}^-1 R_{i-1}, w_i]``. Only the bottom block is
    needed, so there is no back substitution.
    """
    n, m = g.shape
    # buf = [E | R]; Fortran order keeps buf[:, :m + i] contiguous, so potrs works in place.
    buf = np.zeros((m, m + n), order="F")
    work = np.empty((m, m + 1), order="F")
    tmp = np.empty((m, m), order="F")
    s = np.empty((m, m), order="F")
    diag = np.diag_indices(m)
    e = buf[:, :m]
    y = _chain_solve(g[0], grs[0], work)
    _add_coupling(e, g[0], y, tmp)
    e[diag] += gcs[0]
    buf[:, m] = g[0] * y[:, m]
    for i in range(1, n + 1):
        c = gcs[i]
        np.copyto(s, e)
        s[diag] += c
        factor = sla.cho_factor(s, lower=False, overwrite_a=True, check_finite=False)
        x = sla.cho_solve(factor, buf[:, : m + i], overwrite_b=True, check_finite=False)
        if not np.shares_memory(x, buf):
            buf[:, : m + i] = x
        x = buf[:, : m + i]
        x *= c[:, None]
        if i == n:
            return x[:, m:].T.copy()
        y = _chain_solve(g[i], grs[i], work)
        _add_coupling(e, g[i], y, tmp)
        buf[:, m + i] = g[i] * y[:, m]
    raise AssertionError("unreachable")


def _flip_t(a: np.ndarray) -> np.ndarray:
    """Map an array of the crossbar onto its transpose (bottom-left corner first)."""
    return np.ascontiguousarray(a[::-1, ::-1].T)


def _sweep_cost(blocks: int, size: int) -> float:
    return blocks * (2.4 * size**3 + size**2 * blocks)


def _block_solve(g: np.ndarray, grs: np.ndarray, gcs: np.ndarray, ordering: str) -> np.ndarray:
    """Effective matrix with rows as blocks, or (reciprocity) columns as blocks.

    By reciprocity T[k, j] equals the current into source k when the bottom of column j is
    driven with 1 V; that is the same kind of crossbar flipped about its anti-diagonal: old
    column bottoms become left row feeds, old row feeds become column bottoms, and an old right
    feed becomes a top segment of the new columns, whose current also counts as output. The top
    output is the bottom output of the upside-down problem.
    """
    n, m = g.shape
    both = bool(np.any(grs[:, m] > 0))
    if ordering == "auto":
        transposed_cost = _sweep_cost(m, n) * (2 if both else 1)
        ordering = "columns" if transposed_cost < _sweep_cost(n, m) else "rows"
    if ordering == "rows":
        return _row_sweep(g, grs, gcs)
    if ordering != "columns":
        raise ValueError(f"ordering must be 'auto', 'rows' or 'columns', got {ordering!r}")
    g_t, grs_t, gcs_t = _flip_t(g), _flip_t(gcs), _flip_t(grs)
    t_t = _row_sweep(g_t, grs_t, gcs_t)
    if both:
        t_t += _row_sweep(g_t[::-1], grs_t[::-1], gcs_t[::-1])[::-1]
    return _flip_t(t_t)


def _effective_matrix_np(
    g: np.ndarray, rr: np.ndarray, rc: np.ndarray, ordering: str = "auto"
) -> np.ndarray:
    """Effective matrix from validated float64 arrays (see ``_prepare``)."""
    n, m = g.shape
    row_ideal = bool(np.all(rr[:, :m] == 0))  # the right feed is then 0 or absent (inf)
    col_ideal = bool(np.all(rc == 0))
    if row_ideal and col_ideal:
        return g.copy()
    if row_ideal:
        # Row nodes sit at v_i: column j is a chain fed by currents G[:, j] v_i.
        # T[k, j] = G[k, j] * gc_bottom[j] * (A_j^-1)[N-1, k] with A_j symmetric.
        gc = 1.0 / rc
        diag = g + gc
        diag[1:] += gc[:-1]
        rhs = np.zeros((n, m))
        rhs[-1] = 1.0
        y = _tridiag_batched(-gc[:-1], diag, rhs)
        return g * y * gc[-1]
    with np.errstate(divide="ignore"):
        gr = 1.0 / rr  # right feed inf -> 0 (no source)
    if col_ideal:
        # Column nodes sit at 0 V: every row is a chain with shunts G to ground.
        diag = (gr[:, :-1] + gr[:, 1:] + g).T
        rhs = np.zeros((m, n))
        rhs[0] = gr[:, 0]
        rhs[-1] += gr[:, m]
        z = _tridiag_batched(-gr[:, 1:-1].T, diag, rhs)
        return g * z.T
    gcs = np.vstack([np.zeros((1, m)), 1.0 / rc])
    return _block_solve(g, gr, gcs, ordering)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def effective_matrix(
    G: ArrayLike,
    r_row: ArrayLike,
    r_col: ArrayLike,
    *,
    both_ends: bool = False,
    r_access: ArrayLike = 0.0,
) -> np.ndarray | torch.Tensor:
    """Effective conductance matrix ``T`` (N, M) with ``v @ T == solve_currents(G, v, ...)``.

    ``G`` in siemens (numpy array or torch tensor; the result has the same kind and floating
    dtype, computed in float64). ``r_row`` / ``r_col`` in ohms: scalars or per-segment (N, M)
    arrays (see the module docstring); 0 means an ideal wire. ``both_ends`` drives each row
    from the right end as well, through one more segment (``r_row[:, M]`` if ``r_row`` has
    shape (N, M+1), else the same resistance as the left feed ``r_row[:, 0]``). ``r_access`` is
    a series resistance in every cell (scalar or (N, M)). Not differentiable.
    """
    g, rr, rc = _prepare(G, r_row, r_col, both_ends, r_access)
    return _like(_effective_matrix_np(g, rr, rc), G)


def solve_currents(
    G: ArrayLike,
    v: ArrayLike,
    r_row: ArrayLike,
    r_col: ArrayLike,
    *,
    both_ends: bool = False,
    r_access: ArrayLike = 0.0,
) -> np.ndarray | torch.Tensor:
    """Exact column currents (amperes) of the crossbar for row voltages ``v``.

    ``v`` has shape (K, N) or (N,); the result has shape (K, M) or (M,), positive when current
    flows out of the bottom of a column. Same options as :func:`effective_matrix`.
    """
    g, rr, rc = _prepare(G, r_row, r_col, both_ends, r_access)
    vv = _check_v(v, g.shape[0])
    return _like(vv @ _effective_matrix_np(g, rr, rc), G)


def _nodal_system(
    g: np.ndarray, rr: np.ndarray, rc: np.ndarray
) -> tuple[sp.csc_matrix, sp.csr_matrix, np.ndarray]:
    """Full 2NM x 2NM nodal conductance matrix of the crossbar (all resistances > 0).

    Returns ``(Y, B, out)``: node voltages are ``Y^-1 B v`` (B maps source voltages to injected
    Norton currents) and column currents are ``out * x[bottom column nodes]``.
    """
    n, m = g.shape
    nm = n * m
    a = np.arange(nm).reshape(n, m)  # row-wire nodes
    b = nm + a  # column-wire nodes
    gr = 1.0 / rr
    gc = 1.0 / rc
    rows, cols, vals = [], [], []

    def branch(p: np.ndarray, q: np.ndarray, cond: np.ndarray) -> None:
        p, q, cond = p.ravel(), q.ravel(), cond.ravel()
        rows.extend([p, q, p, q])
        cols.extend([p, q, q, p])
        vals.extend([cond, cond, -cond, -cond])

    def shunt(p: np.ndarray, cond: np.ndarray) -> None:
        rows.append(p.ravel())
        cols.append(p.ravel())
        vals.append(cond.ravel())

    branch(a, b, g)  # devices
    branch(a[:, :-1], a[:, 1:], gr[:, 1:m])  # row wire segments
    branch(b[:-1], b[1:], gc[:-1])  # column wire segments
    shunt(a[:, 0], gr[:, 0])  # left feed (source shorted in Y)
    shunt(a[:, -1], gr[:, m])  # right feed (0 conductance when absent)
    shunt(b[-1], gc[-1])  # bottom segment to the 0 V sense amplifier
    y = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(2 * nm,) * 2
    ).tocsc()
    src_rows = np.concatenate([a[:, 0], a[:, -1]])
    src_cols = np.concatenate([np.arange(n), np.arange(n)])
    bmat = sp.coo_matrix(
        (np.concatenate([gr[:, 0], gr[:, m]]), (src_rows, src_cols)), shape=(2 * nm, n)
    ).tocsr()
    return y, bmat, gc[-1]


def solve_dense_reference(
    G: ArrayLike,
    v: ArrayLike,
    r_row: ArrayLike,
    r_col: ArrayLike,
    *,
    both_ends: bool = False,
    r_access: ArrayLike = 0.0,
) -> np.ndarray:
    """Test oracle: column currents from a sparse LU of the full nodal matrix (float64 numpy).

    Slow (meant for small arrays) and independent of the block elimination. Resistances must be
    positive; ideal wires (r = 0) have no finite nodal matrix.
    """
    g, rr, rc = _prepare(G, r_row, r_col, both_ends, r_access)
    for arr, name in ((rr, "r_row"), (rc, "r_col")):
        if np.any(arr == 0):
            raise ValueError(f"{name} must be positive for the nodal reference solver")
    vv = _check_v(v, g.shape[0])
    n, m = g.shape
    y, bmat, out = _nodal_system(g, rr, rc)
    rhs = (bmat @ np.atleast_2d(vv).T).astype(np.float64)
    x = spla.splu(y).solve(rhs)
    cur = (out[:, None] * x[2 * n * m - m :]).T
    return cur[0] if vv.ndim == 1 else cur


def benchmark_sizes(
    sizes: tuple[int | tuple[int, int], ...] = (64, 128, 256, 512),
    r_wire: float = 1.0,
    *,
    seed: int = 0,
    g_range: tuple[float, float] = (1e-6, 1e-4),
) -> list[dict[str, float | int]]:
    """Time :func:`effective_matrix` on random tiles (for ``nvmsim bench`` / ``nvmsim irdrop``).

    Each size is ``n`` (square) or ``(n, m)``; conductances are uniform in ``g_range`` siemens
    and both wires use ``r_wire`` ohms a segment. Returns one dict per size with ``n``, ``m``,
    ``r_wire``, ``seconds`` and ``mean_drop`` (1 - sum(T) / sum(G), the average current lost).
    """
    rng = np.random.default_rng(seed)
    results: list[dict[str, float | int]] = []
    for size in sizes:
        n, m = (size, size) if isinstance(size, int) else size
        g = rng.uniform(g_range[0], g_range[1], size=(n, m))
        start = time.perf_counter()
        t = effective_matrix(g, r_wire, r_wire)
        seconds = time.perf_counter() - start
        drop = 1.0 - float(np.sum(t) / np.sum(g))
        results.append({"n": n, "m": m, "r_wire": r_wire, "seconds": seconds, "mean_drop": drop})
    return results
