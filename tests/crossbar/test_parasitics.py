"""IR drop solver against ngspice, a sparse nodal oracle, ideal-wire limits and invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvmsim.crossbar import parasitics as P
from nvmsim.crossbar.parasitics import (
    benchmark_sizes,
    effective_matrix,
    solve_currents,
    solve_dense_reference,
)

from .spice_util import NGSPICE, crossbar_netlist, run_ngspice


def _crossbar(rng: np.random.Generator, n: int, m: int, per_segment: bool = True):
    """Random conductances (1 kΩ..1 MΩ devices) and wire segments (0.5..5 Ω)."""
    G = rng.uniform(1e-6, 1e-3, size=(n, m))
    if per_segment:
        return G, rng.uniform(0.5, 5.0, size=(n, m)), rng.uniform(0.5, 5.0, size=(n, m))
    return G, 2.5, 1.5


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --------------------------------------------------------------------------------- SPICE ---

SPICE_CASES = [
    # (n, m, both_ends, r_access, per_segment)
    (8, 8, False, 0.0, True),
    (16, 16, False, 0.0, True),
    (32, 16, False, 0.0, True),
    (16, 32, False, 0.0, True),  # transposed ordering (columns as blocks)
    (16, 32, True, 0.0, True),  # transposed ordering with right-end feeds
    (12, 12, True, 0.0, False),
    (12, 10, False, 2e3, True),  # access device in series with every cell
]


@pytest.mark.spice
@pytest.mark.skipif(NGSPICE is None, reason="ngspice not on PATH (apt-get install ngspice)")
@pytest.mark.parametrize(("n", "m", "both_ends", "r_access", "per_segment"), SPICE_CASES)
def test_matches_ngspice(tmp_path, n, m, both_ends, r_access, per_segment):
    rng = np.random.default_rng(1000 * n + m + both_ends)
    G, r_row, r_col = _crossbar(rng, n, m, per_segment)
    G[rng.random((n, m)) < 0.1] = 0.0  # a few open cells
    if both_ends and per_segment:
        r_row = rng.uniform(0.5, 5.0, size=(n, m + 1))
    v = rng.uniform(-0.2, 0.5, size=n)
    ref = run_ngspice(
        crossbar_netlist(G, v, r_row, r_col, both_ends=both_ends, r_access=r_access), tmp_path, m
    )
    got = solve_currents(G, v, r_row, r_col, both_ends=both_ends, r_access=r_access)
    assert got.shape == (m,)
    assert _rel(got, ref) < 1e-6
    ideal = v @ (G / (1 + r_access * G))
    assert _rel(ideal, ref) > 1e-4  # the wires matter in this circuit


# ------------------------------------------------------------------------ nodal oracle -----


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 11),
    m=st.integers(1, 11),
    both_ends=st.booleans(),
    per_segment=st.booleans(),
    access=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_sparse_oracle(n, m, both_ends, per_segment, access, seed):
    rng = np.random.default_rng(seed)
    G, r_row, r_col = _crossbar(rng, n, m, per_segment)
    G[rng.random((n, m)) < 0.2] = 0.0
    r_access = rng.uniform(0, 1e4, size=(n, m)) if access else 0.0
    v = rng.normal(size=(3, n))
    kw = {"both_ends": both_ends, "r_access": r_access}
    ref = solve_dense_reference(G, v, r_row, r_col, **kw)
    if not np.any(ref):
        return
    assert _rel(solve_currents(G, v, r_row, r_col, **kw), ref) < 1e-10
    # Both block orderings (rows as blocks, columns through reciprocity) agree with the oracle.
    g, rr, rc = P._prepare(G, r_row, r_col, both_ends, r_access)
    for ordering in ("rows", "columns"):
        assert _rel(v @ P._effective_matrix_np(g, rr, rc, ordering), ref) < 1e-10


@pytest.mark.parametrize(("n", "m"), [(40, 24), (24, 40), (33, 33)])
@pytest.mark.parametrize("both_ends", [False, True])
def test_larger_tiles_match_oracle(n, m, both_ends):
    rng = np.random.default_rng(n * m)
    G, r_row, r_col = _crossbar(rng, n, m)
    ref = solve_dense_reference(G, np.eye(n), r_row, r_col, both_ends=both_ends)
    T = effective_matrix(G, r_row, r_col, both_ends=both_ends)
    assert _rel(T, ref) < 1e-11


def test_wire_dominated_regime():
    """Devices far more conductive than the wires: no cancellation in either regime."""
    rng = np.random.default_rng(7)
    G = rng.uniform(0.1, 10.0, size=(9, 6))
    ref = solve_dense_reference(G, np.eye(9), 50.0, 30.0, both_ends=True)
    assert _rel(effective_matrix(G, 50.0, 30.0, both_ends=True), ref) < 1e-10


def test_right_feed_defaults_to_left_feed():
    rng = np.random.default_rng(3)
    G, r_row, r_col = _crossbar(rng, 6, 5)
    explicit = np.concatenate([r_row, r_row[:, :1]], axis=1)
    a = effective_matrix(G, r_row, r_col, both_ends=True)
    b = effective_matrix(G, explicit, r_col, both_ends=True)
    np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)
    v = np.full(6, 0.2)  # uniform drive: a second feed can only add current (Rayleigh)
    assert (v @ a).sum() > solve_currents(G, v, r_row, r_col).sum()


# ------------------------------------------------------------------------ ideal wires ------


@pytest.mark.parametrize("both_ends", [False, True])
def test_zero_resistance_is_ideal(both_ends):
    rng = np.random.default_rng(11)
    G = rng.uniform(0, 1e-4, size=(7, 5))
    v = rng.normal(size=(4, 7))
    ideal = v @ G
    got = solve_currents(G, v, 0.0, 0.0, both_ends=both_ends)
    assert _rel(got, ideal) < 1e-12
    T = effective_matrix(G, np.zeros((7, 5)), 0, both_ends=both_ends)
    np.testing.assert_array_equal(T, G)


@pytest.mark.parametrize("zero", ["r_row", "r_col"])
@pytest.mark.parametrize("both_ends", [False, True])
@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 6), (6, 1), (8, 5)])
def test_one_ideal_wire_is_the_limit(zero, both_ends, n, m):
    """r -> 0 on one wire set: the analytic elimination equals the limit of the full solve."""
    rng = np.random.default_rng(n + 10 * m)
    G, r_row, r_col = _crossbar(rng, n, m)
    v = rng.normal(size=(2, n))
    tiny = {"r_row": r_row, "r_col": r_col}
    exact = dict(tiny)
    tiny[zero] = np.full((n, m), 1e-9)
    exact[zero] = 0.0
    ref = solve_dense_reference(G, v, **tiny, both_ends=both_ends)
    got = solve_currents(G, v, **exact, both_ends=both_ends)
    assert _rel(got, ref) < 1e-8


# ------------------------------------------------------------------------ invariants -------


def test_linearity_and_shapes():
    rng = np.random.default_rng(5)
    G, r_row, r_col = _crossbar(rng, 10, 7)
    T = effective_matrix(G, r_row, r_col)
    v = rng.normal(size=(6, 10))
    I = solve_currents(G, v, r_row, r_col)
    assert T.shape == (10, 7) and I.shape == (6, 7)
    np.testing.assert_allclose(v @ T, I, rtol=1e-13, atol=1e-20)
    np.testing.assert_allclose(solve_currents(G, v[0], r_row, r_col), I[0], rtol=1e-13)
    np.testing.assert_allclose(
        solve_currents(G, 2 * v[0] - 3 * v[1], r_row, r_col), 2 * I[0] - 3 * I[1], rtol=1e-10
    )


def test_ir_drop_only_loses_current():
    rng = np.random.default_rng(9)
    G, r_row, r_col = _crossbar(rng, 20, 14)
    T = effective_matrix(G, r_row, r_col)
    assert np.all(T >= 0)  # a positive source never pulls current out of a column
    assert np.all(T.sum(axis=1) < G.sum(axis=1))  # Rayleigh: wires only add resistance
    v = np.full(20, 0.3)  # uniform drive: every node lies between 0 and 0.3 V
    ideal = v @ G
    I = v @ T
    assert np.all(I < ideal) and np.all(I > 0)
    totals = [solve_currents(G, v, r, r).sum() for r in (0.0, 0.1, 1.0, 10.0)]
    assert all(a > b for a, b in zip(totals, totals[1:], strict=False))


def test_zero_conductance_gives_zero_current():
    G = np.zeros((5, 4))
    v = np.ones(5)
    np.testing.assert_array_equal(solve_currents(G, v, 1.0, 1.0), np.zeros(4))
    G = np.random.default_rng(0).uniform(1e-5, 1e-4, size=(5, 4))
    G[:, 2] = 0.0  # a column with no devices carries nothing
    assert np.all(effective_matrix(G, 1.0, 1.0)[:, 2] == 0)


def test_torch_in_torch_out():
    rng = np.random.default_rng(2)
    G, r_row, r_col = _crossbar(rng, 6, 4)
    ref = effective_matrix(G, r_row, r_col)
    for dtype in (torch.float32, torch.float64):
        T = effective_matrix(torch.tensor(G, dtype=dtype), torch.tensor(r_row), r_col)
        assert isinstance(T, torch.Tensor) and T.dtype == dtype
        np.testing.assert_allclose(T.numpy(), ref, rtol=1e-6 if dtype == torch.float32 else 1e-15)
    I = solve_currents(torch.tensor(G), torch.ones(3, 6), r_row, r_col)
    assert isinstance(I, torch.Tensor) and I.shape == (3, 4)
    assert isinstance(solve_currents(G, torch.ones(6), r_row, r_col), np.ndarray)


# ------------------------------------------------------------------------ bad input --------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"G": -np.ones((3, 2))}, "G"),
        ({"G": np.full((3, 2), np.nan)}, "G"),
        ({"G": np.ones(3)}, "G"),
        ({"G": np.ones((1, 3, 2))}, "G"),
        ({"v": np.ones(4)}, "v"),
        ({"v": np.ones((2, 2))}, "v"),
        ({"v": np.array([1.0, np.inf, 0.0])}, "v"),
        ({"r_row": -1.0}, "r_row"),
        ({"r_row": np.ones((2, 3))}, "r_row"),
        ({"r_row": np.array([[0.0, 1.0]] * 3)}, "r_row"),
        ({"r_col": np.inf}, "r_col"),
        ({"r_col": np.ones((3, 3))}, "r_col"),
        ({"r_access": -2.0}, "r_access"),
        ({"r_access": np.ones((2, 2))}, "r_access"),
    ],
)
def test_bad_input_names_the_argument(kwargs, name):
    a = {"G": np.full((3, 2), 1e-5), "v": np.ones(3), "r_row": 1.0, "r_col": 1.0, "r_access": 0}
    a.update(kwargs)
    with pytest.raises(ValueError, match=name):
        solve_currents(a["G"], a["v"], a["r_row"], a["r_col"], r_access=a["r_access"])


def test_oracle_refuses_ideal_wires():
    with pytest.raises(ValueError, match="r_col"):
        solve_dense_reference(np.ones((2, 2)), np.ones(2), 1.0, 0.0)


def test_benchmark_sizes_reports_each_size():
    out = benchmark_sizes(sizes=(8, (6, 10)), r_wire=2.0)
    assert [(r["n"], r["m"]) for r in out] == [(8, 8), (6, 10)]
    assert all(r["seconds"] >= 0 and 0 < r["mean_drop"] < 1 for r in out)
