import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from nvmsim.devices import jumptable as jt
from nvmsim.devices.jumptable import JumpTable, JumpTableError


def random_table(seed: int, bins: int = 5, nd: int = 6, g_min=0.0, g_max=1.0) -> JumpTable:
    """A state-dependent stochastic table: every bin its own dG grid and probabilities."""
    g = torch.Generator().manual_seed(seed)
    dg = torch.sort(torch.randn(bins, nd, generator=g, dtype=torch.float64) * 0.02, 1).values
    p = torch.rand(bins, nd, generator=g, dtype=torch.float64) + 0.05
    cdf = torch.cumsum(p / p.sum(1, keepdim=True), 1)
    edges = torch.linspace(g_min, g_max, bins + 1, dtype=torch.float64)
    return JumpTable(edges, dg, cdf, "random")


def test_sampling_reproduces_each_bins_cdf():
    t = random_table(0)
    n = 40_000
    gen = torch.Generator().manual_seed(1)
    for b in range(t.bins):
        lo, hi = float(t.g_edges[b]), float(t.g_edges[b + 1])
        g = lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)
        r = torch.rand(n, generator=gen, dtype=torch.float64)
        d = t.sample(g, r)
        # every draw is one of the bin's dG values, with the bin's probabilities (chi-square)
        vals = t.dg[b]
        j = (d[:, None] == vals[None, :]).double().argmax(1)
        assert bool((d[:, None] == vals[None, :]).any(1).all())
        counts = torch.bincount(j, minlength=vals.numel()).numpy()
        expected = t.probabilities()[b].numpy() * n
        assert stats.chisquare(counts, expected).pvalue > 1e-4


def test_sampling_picks_first_entry_exceeding_r():
    edges = torch.tensor([0.0, 1.0], dtype=torch.float64)
    d = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    t = JumpTable(edges, d, torch.tensor([[0.25, 0.5, 1.0]]))
    g = torch.full((6,), 0.5, dtype=torch.float64)
    r = torch.tensor([0.0, 0.2499, 0.25, 0.4999, 0.5, 0.999], dtype=torch.float64)
    assert t.sample(g, r).tolist() == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3]


def test_gaussian_spread_table_matches_its_moments():
    t = jt.linear(0.01, spread=0.3)
    gen = torch.Generator().manual_seed(2)
    g = torch.rand(200_000, generator=gen, dtype=torch.float64)
    d = t.sample(g, torch.rand(g.shape, generator=gen, dtype=torch.float64))
    assert abs(float(d.mean()) - 0.01) < 5 * 0.003 / math.sqrt(len(d))
    assert abs(float(d.std()) / 0.003 - 1) < 0.03  # discretisation on 33 points
    # empirical CDF of the draws equals the table's CDF at its grid points (KS-like bound)
    emp = (d[:, None] <= t.dg[0][None, :]).double().mean(0)
    assert float((emp - t.cdf[0]).abs().max()) < 4 / math.sqrt(len(d))


@pytest.mark.parametrize("reset", [False, True])
def test_linear_deterministic_table_is_exact_after_n_pulses(reset):
    step = 1 / 64  # exact in float32
    t = jt.linear(step, reset=reset)
    assert t.deterministic
    n = torch.arange(0, 80)
    g0 = torch.full((80,), 1.0 if reset else 0.0)
    g = t.pulse(g0, n)
    sign = -1.0 if reset else 1.0
    expected = (g0 + sign * n.float() * step).clamp(0.0, 1.0)
    assert torch.equal(g, expected)
    # the same, one pulse at a time (the ideal device of the paper's Fig. 5)
    h = g0.clone()
    for k in range(80):
        assert torch.equal(h, expected[k].expand(80))
        h = t.step(h)


def test_state_dependent_deterministic_table_steps_by_bin():
    t = jt.partially_nonlinear(0.01, extent=0.5, strength=0.25, bins=10)
    g = torch.tensor([0.0, 0.55, 0.95], dtype=torch.float64)
    d = t.sample(g)
    c = t.centres
    assert float(d[0]) == pytest.approx(0.01 * 0.25 ** (float(c[0]) / 0.5 - 1))
    assert float(d[1]) == pytest.approx(0.01) and float(d[2]) == pytest.approx(0.01)


def test_nonlinear_constructors():
    s = 0.002
    full = jt.fully_nonlinear(s, strength=0.2, bins=200)
    m = full.mean_step()
    assert float(m[0]) == pytest.approx(s / 0.2, rel=0.02)
    assert float(m[-1]) == pytest.approx(s, rel=0.02)
    assert bool((m[1:] <= m[:-1]).all())  # steps shrink as G grows
    part = jt.partially_nonlinear(s, extent=0.25, strength=0.5, bins=100)
    mp = part.mean_step()
    assert torch.allclose(mp[25:], torch.full((75,), s, dtype=torch.float64))
    assert float(mp[0]) == pytest.approx(s / 0.5, rel=0.05)
    lin = jt.partially_nonlinear(s, extent=0.0, strength=0.1)
    assert torch.allclose(lin.mean_step(), torch.full((100,), s, dtype=torch.float64))
    # a stronger nonlinearity needs fewer pulses to cross the range
    weak = jt.fully_nonlinear(s, 0.8).pulses_to_traverse()
    strong = jt.fully_nonlinear(s, 0.1).pulses_to_traverse()
    assert strong < weak < 1 / s
    with pytest.raises(ValueError, match="strength"):
        jt.fully_nonlinear(s, 0.0)
    with pytest.raises(ValueError, match="extent"):
        jt.partially_nonlinear(s, 1.5, 0.5)


def test_asymmetric_pair():
    set_t, reset_t = jt.asymmetric(0.01, 0.25)
    assert float(set_t.mean_step()[0]) == pytest.approx(0.01)
    assert float(reset_t.mean_step()[0]) == pytest.approx(-0.04)
    with pytest.raises(ValueError, match="asymmetry"):
        jt.asymmetric(0.01, 0.0)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    scale=st.floats(0.001, 0.5),
    g_min=st.floats(-1.0, 0.5),
    width=st.floats(0.1, 2.0),
    pulses=st.integers(0, 30),
)
def test_conductance_stays_in_range(seed, scale, g_min, width, pulses):
    t = random_table(seed, g_min=g_min, g_max=g_min + width)
    t = JumpTable(t.g_edges, t.dg * scale / 0.02, t.cdf)
    gen = torch.Generator().manual_seed(seed)
    g = g_min + width * torch.rand(300, generator=gen)
    n = torch.randint(0, pulses + 1, (300,), generator=gen)
    out = t.pulse(g, n, gen)
    assert bool((out >= t.g_min).all() and (out <= t.g_max).all())


def test_independent_table_sums_pulses_like_sequential_draws():
    t = jt.linear(0.01, spread=0.2)  # same distribution everywhere, one sign: batched path
    assert t._independent
    n = 20_000
    gen = torch.Generator().manual_seed(3)
    g = t.pulse(torch.zeros(n, dtype=torch.float64), torch.full((n,), 5), gen)
    # sum of 5 draws: mean 0.05, std sqrt(5) * 0.002
    assert abs(float(g.mean()) - 0.05) < 5 * math.sqrt(5) * 0.002 / math.sqrt(n)
    assert abs(float(g.std()) / (math.sqrt(5) * 0.002) - 1) < 0.05


def test_from_samples_recovers_a_known_response():
    gen = torch.Generator().manual_seed(4)
    g = torch.rand(60_000, generator=gen, dtype=torch.float64)
    dg = 0.02 * (1 - g) + 0.002 * torch.randn(g.shape, generator=gen, dtype=torch.float64)
    t = jt.from_samples(g, dg, bins=10, points=32)
    assert torch.allclose(t.mean_step(), 0.02 * (1 - t.centres), atol=4e-4)
    assert torch.allclose(t.std_step(), torch.full((10,), 0.002, dtype=torch.float64), rtol=0.1)


def test_from_samples_fills_empty_bins_from_the_nearest():
    g = torch.tensor([0.05, 0.06, 0.95], dtype=torch.float64)
    dg = torch.tensor([0.1, 0.1, 0.3], dtype=torch.float64)
    t = jt.from_samples(g, dg, bins=10, g_min=0.0, g_max=1.0)
    m = t.mean_step()
    assert float(m[0]) == pytest.approx(0.1) and float(m[3]) == pytest.approx(0.1)
    assert float(m[9]) == pytest.approx(0.3) and float(m[7]) == pytest.approx(0.3)


def test_npz_round_trip(tmp_path):
    t = random_table(5)
    p = tmp_path / "t.npz"
    t.save(p)
    u = jt.load_jumptable(p)
    assert torch.equal(u.dg, t.dg) and torch.equal(u.cdf, t.cdf)
    assert torch.equal(u.g_edges, t.g_edges)
    assert list(tmp_path.iterdir()) == [p]  # no temporary left behind


def test_csv_samples_and_long_table(tmp_path):
    p = tmp_path / "pulses.csv"
    rows = ["g,dg"] + [f"{0.1 * (i % 10) + 0.05},{0.01 + 0.001 * (i % 3)}" for i in range(300)]
    p.write_text("\n".join(rows) + "\n")
    t = jt.load_jumptable(p, bins=10)
    assert t.bins == 10
    assert torch.allclose(t.mean_step(), torch.full((10,), 0.011, dtype=torch.float64))
    q = tmp_path / "table.csv"
    q.write_text(
        "# a measured table\ng_lo,g_hi,dg,cdf\n0,0.5,0.01,0.5\n0,0.5,0.02,1\n0.5,1,0.005,1\n"
    )
    u = jt.load_jumptable(q)
    assert u.bins == 2
    assert u.mean_step().tolist() == pytest.approx([0.015, 0.005])


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.csv", "g,dg\n0.1,0.01\n0.2,abc\n", "line 3: column 'dg': not a number"),
        ("b.csv", "g,dg\n0.1,0.01\n0.2\n", "line 3: 1 fields"),
        ("c.csv", "x,y\n0.1,0.01\n", "names neither"),
        ("d.csv", "g,dg\n0.1,nan\n0.2,0.1\n", "is not finite"),
        ("e.csv", "", "empty file"),
        ("f.csv", "g,dg\n0.1,0.01\n", "at least 2 measured pulses"),
        ("g.csv", "g_lo,g_hi,dg,cdf\n0,0.5,0.01,0.5\n0.5,1,0.01,1\n", "ends at 0.5"),
        ("h.csv", "g_lo,g_hi,dg,cdf\n0,0.5,0.02,0.5\n0,0.5,0.01,1\n", "non-decreasing"),
        ("i.csv", "g_lo,g_hi,dg,cdf\n0,0.4,0.02,1\n0.5,1,0.01,1\n", "not contiguous"),
        ("j.json", "{}", "unknown jump-table format"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(JumpTableError, match=message) as err:
        jt.load_jumptable(p)
    assert str(p) in str(err.value)


def test_malformed_npz_names_the_file(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, g_edges=np.array([0.0, 1.0]), dg=np.array([[0.1, 0.2]]), cdf=np.array([[0.6, 0.4]]))
    with pytest.raises(JumpTableError, match="cdf must be non-decreasing") as err:
        jt.load_jumptable(p)
    assert str(p) in str(err.value)
    q = tmp_path / "other.npz"
    np.savez(q, foo=np.zeros(3))
    with pytest.raises(JumpTableError, match="expected arrays"):
        jt.load_jumptable(q)
    r = tmp_path / "garbage.npz"
    r.write_bytes(b"not a zip")
    with pytest.raises(JumpTableError, match="not a readable NPZ"):
        jt.load_jumptable(r)
    s = tmp_path / "shape.npz"
    np.savez(s, g_edges=np.array([0.0, 0.5, 1.0]), dg=np.zeros((3, 2)), cdf=np.ones((3, 2)))
    with pytest.raises(JumpTableError, match="shape"):
        jt.load_jumptable(s)
    with pytest.raises(JumpTableError, match="file not found"):
        jt.load_jumptable(tmp_path / "missing.npz")


def test_constructor_validation():
    e = torch.tensor([0.0, 1.0])
    with pytest.raises(JumpTableError, match="increase strictly"):
        JumpTable(torch.tensor([0.0, 0.0]), torch.tensor([[0.1]]), torch.tensor([[1.0]]))
    with pytest.raises(JumpTableError, match="NaN"):
        JumpTable(e, torch.tensor([[math.nan]]), torch.tensor([[1.0]]))
    with pytest.raises(JumpTableError, match=r"in \[0, 1\]"):
        JumpTable(e, torch.tensor([[0.1, 0.2]]), torch.tensor([[-0.1, 1.0]]))
    with pytest.raises(ValueError, match="uniform deviates"):
        random_table(0).sample(torch.zeros(3))


def _npz_with_headers(path, arrays):
    """An NPZ whose members have the given ``.npy`` headers followed by ``data`` bytes
    (which need not match the header: a hostile file)."""
    import io
    import zipfile

    from numpy.lib import format as npy

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, (descr, shape, data) in arrays.items():
            buf = io.BytesIO()
            npy.write_array_header_1_0(
                buf, {"descr": descr, "fortran_order": False, "shape": shape}
            )
            zf.writestr(f"{key}.npy", buf.getvalue() + data)
    return path


def test_npz_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    p = _npz_with_headers(tmp_path / "huge.npz", {
        "g": ("<f8", (10**12,), b"\0" * 80), "dg": ("<f8", (10,), b"\0" * 80),
    })  # fmt: skip
    with pytest.raises(
        JumpTableError,
        match=r"huge\.npz: array 'g' declares shape \(1000000000000,\) "
        r"\(1,000,000,000,000 elements\), more than the limit of 33,554,432",
    ):
        jt.load_jumptable(p)


def test_npz_member_too_large_uncompressed_is_refused(tmp_path, monkeypatch):
    p = tmp_path / "bomb.npz"
    np.savez_compressed(p, g=np.zeros(10_000), dg=np.zeros(10_000))  # 80 kB of zeros each
    monkeypatch.setattr(jt, "MAX_NPZ_MEMBER_BYTES", 50_000)
    with pytest.raises(JumpTableError, match=r"bomb\.npz: array 'g' is 80,128 bytes "
                       r"uncompressed, more than the limit of 50,000"):  # fmt: skip
        jt.load_jumptable(p)


def test_npz_element_limit_applies_to_every_array(tmp_path, monkeypatch):
    p = tmp_path / "t.npz"
    np.savez(p, g=np.linspace(0, 1, 50), dg=np.full(50, 0.01))
    assert jt.load_jumptable(p, bins=5).bins == 5
    monkeypatch.setattr(jt, "MAX_NPZ_ELEMENTS", 49)
    with pytest.raises(JumpTableError, match=r"array 'g' declares shape \(50,\) \(50 elements\)"):
        jt.load_jumptable(p, bins=5)


@pytest.mark.parametrize(
    ("g", "dtype_text"),
    [
        (np.array([0.1, 0.5, 0.9], dtype=complex), "complex128"),
        (np.array([True, False, True]), "bool"),
        (np.array(["a", "b", "c"]), "<U1"),
    ],
)
def test_npz_with_non_real_arrays_names_the_array(tmp_path, g, dtype_text):
    p = tmp_path / "odd.npz"
    np.savez(p, g=g, dg=np.full(3, 0.01))
    with pytest.raises(JumpTableError, match=rf"odd\.npz: array 'g' holds {dtype_text} values; "
                       "a jump-table needs real numbers"):  # fmt: skip
        jt.load_jumptable(p)


def test_npz_object_array_is_refused_without_unpickling(tmp_path):
    p = _npz_with_headers(tmp_path / "pickle.npz", {
        "g": ("<f8", (2,), np.array([0.1, 0.9]).tobytes()), "dg": ("|O", (2,), b"\x80\x04."),
    })  # fmt: skip
    with pytest.raises(JumpTableError, match=r"array 'dg' holds object values"):
        jt.load_jumptable(p)


def test_npz_with_fewer_bytes_than_declared_is_refused(tmp_path):
    p = _npz_with_headers(tmp_path / "short.npz", {
        "g": ("<f8", (100,), b"\0" * 16), "dg": ("<f8", (2,), b"\0" * 16),
    })  # fmt: skip
    with pytest.raises(JumpTableError, match=r"array 'g' declares 800 bytes of data but holds 16"):
        jt.load_jumptable(p)


def test_npz_of_other_byte_orders_layouts_and_integer_types_loads(tmp_path):
    g = np.linspace(0.0, 1.0, 200)
    dg = 0.01 * (1 - g)
    ref = jt.load_jumptable(_save(tmp_path / "ref.npz", g=g, dg=dg), bins=8)
    big = jt.load_jumptable(_save(tmp_path / "big.npz", g=g.astype(">f8"), dg=dg.astype(">f4")),
                            bins=8)  # fmt: skip
    assert torch.allclose(big.mean_step(), ref.mean_step(), rtol=1e-6)
    t = jt.from_samples(torch.linspace(0, 1, 400), 0.01 * torch.linspace(0, 1, 400) ** 2,
                        bins=4, points=8)  # fmt: skip
    assert t.dg.shape == (4, 8)  # not symmetric in C and Fortran order
    table = {"g_edges": t.g_edges.numpy(), "dg": np.asfortranarray(t.dg.numpy()),
             "cdf": np.asfortranarray(t.cdf.numpy())}  # fmt: skip
    back = jt.load_jumptable(_save(tmp_path / "fortran.npz", **table))
    assert torch.equal(back.dg, t.dg) and torch.equal(back.cdf, t.cdf)
    counts = jt.load_jumptable(
        _save(tmp_path / "ints.npz", g=np.arange(200, dtype=np.int32), dg=np.ones(200, np.uint8)),
        bins=4,
    )
    assert torch.allclose(counts.mean_step(), torch.ones(4, dtype=torch.float64))


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path
