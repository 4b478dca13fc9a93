"""``Product``: the geometry of a layer's crossbar product against torch's own functions."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nvmsim.crossbar.products import Product, row_partition

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
SIZES = {1: (11,), 2: (7, 6), 3: (5, 6, 4)}


def _product(dims, k, s, p, d, groups=1):
    return Product((k,) * dims, (s,) * dims, (p,) * dims, (d,) * dims, groups)


@pytest.mark.parametrize("groups", [1, 2, 5])
def test_dense_apply_equals_linear_and_a_per_group_loop(groups):
    gen = torch.Generator().manual_seed(groups)
    ig, og = 3, 4
    x = torch.randn(6, groups * ig, generator=gen, dtype=torch.float64)
    w = torch.randn(groups * og, ig, generator=gen, dtype=torch.float64)
    y = Product(groups=groups).apply(x, w)
    loop = torch.cat(
        [x[:, i * ig : (i + 1) * ig] @ w[i * og : (i + 1) * og].T for i in range(groups)], dim=1
    )
    torch.testing.assert_close(y, loop, rtol=1e-12, atol=1e-12)
    if groups == 1:
        torch.testing.assert_close(y, F.linear(x, w), rtol=1e-12, atol=1e-12)


def test_dense_groups_override():
    x = torch.randn(3, 6, dtype=torch.float64)
    w = torch.randn(4, 3, dtype=torch.float64)  # 2 groups of 3 inputs, 2 outputs each
    y = Product().apply(x, w, groups=2)
    expected = torch.cat([x[:, :3] @ w[:2].T, x[:, 3:] @ w[2:].T], dim=1)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    dims=st.sampled_from([1, 2, 3]),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
    groups=st.sampled_from([1, 2, 3]),
)
def test_apply_equals_torch_conv(dims, k, s, p, d, groups):
    gen = torch.Generator().manual_seed(dims * 100 + k * 10 + s)
    c_in, c_out = 2 * groups, 3 * groups
    x = torch.randn(2, c_in, *SIZES[dims], generator=gen, dtype=torch.float64)
    kernel = torch.randn(c_out, c_in // groups, *(k,) * dims, generator=gen, dtype=torch.float64)
    prod = _product(dims, k, s, p, d, groups)
    m = kernel.reshape(c_out, -1)  # the crossbar matrix, (out, rows)
    y = prod.apply(x, prod.kernel_weight(m))
    ref = CONV[dims](x, kernel, None, s, p, d, groups)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    assert y.shape[2:] == prod.out_sizes(tuple(x.shape[2:]))
    assert prod.unit == k**dims and prod.dims == dims


@settings(max_examples=30, deadline=None)
@given(
    dims=st.sampled_from([1, 2, 3]),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
)
def test_im2col_matmul_fold_equals_torch_conv(dims, k, s, p, d):
    gen = torch.Generator().manual_seed(dims * 1000 + k * 100 + s * 10 + p)
    c_in, c_out, batch = 3, 4, 2
    x = torch.randn(batch, c_in, *SIZES[dims], generator=gen, dtype=torch.float64)
    kernel = torch.randn(c_out, c_in, *(k,) * dims, generator=gen, dtype=torch.float64)
    prod = _product(dims, k, s, p, d)
    sizes = prod.out_sizes(tuple(x.shape[2:]))
    cols = prod.im2col(x)
    assert cols.shape == (batch * math.prod(sizes), c_in * k**dims)
    y = prod.fold(cols @ kernel.reshape(c_out, -1).T, batch, sizes)
    ref = CONV[dims](x, kernel, None, s, p, d)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_dense_im2col_and_fold_are_identities():
    x = torch.randn(4, 5)
    prod = Product()
    assert prod.im2col(x) is x
    assert prod.fold(x, 4, ()) is x
    assert prod.out_sizes(()) == ()


@settings(max_examples=30, deadline=None)
@given(
    dims=st.sampled_from([0, 1, 2, 3]),
    k=st.integers(1, 3),
    s=st.integers(1, 2),
    p=st.integers(0, 1),
    groups=st.sampled_from([1, 2, 3]),
)
def test_channel_sums_equal_a_conv_with_ones_per_group(dims, k, s, p, groups):
    gen = torch.Generator().manual_seed(dims * 50 + k * 7 + groups)
    cg = 2
    c_in = cg * groups
    if dims == 0:
        prod = Product(groups=groups)
        x = torch.rand(3, c_in, generator=gen, dtype=torch.float64)
        ref = x.reshape(3, groups, cg).sum(2)
    else:
        prod = _product(dims, k, s, p, 1, groups)
        x = torch.rand(3, c_in, *SIZES[dims], generator=gen, dtype=torch.float64)
        ones = torch.ones(groups, cg, *(k,) * dims, dtype=torch.float64)
        ref = CONV[dims](x, ones, None, s, p, 1, groups)  # one output per group
    got = prod.channel_sums(x)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_channel_sums_groups_override():
    x = torch.rand(2, 6, 5, dtype=torch.float64)
    prod = Product((3,), (1,), (1,), (1,), 1)
    ones = torch.ones(3, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(
        prod.channel_sums(x, groups=3), F.conv1d(x, ones, None, 1, 1, 1, 3), rtol=0, atol=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(
    n_rows=st.integers(0, 200),
    tile_rows=st.integers(1, 64),
    unit=st.integers(1, 27),
    bias_row=st.booleans(),
)
def test_row_partition_properties(n_rows, tile_rows, unit, bias_row):
    blocks = row_partition(n_rows, tile_rows, unit, bias_row)
    total = n_rows + int(bias_row)
    # contiguous, complete, each at most tile_rows rows
    if total == 0:
        assert blocks == ()
        return
    assert [s for s, _ in blocks] == [0, *[e for _, e in blocks[:-1]]]
    assert (blocks[-1][1] if blocks else 0) == total
    assert all(0 < e - s <= tile_rows for s, e in blocks)
    inner = [s for s, _ in blocks[1:] if s < n_rows]
    if unit <= tile_rows:  # a channel's kernel never straddles two arrays
        assert all(s % unit == 0 for s in inner)
        step = (tile_rows // unit) * unit
        assert all(e - s == step for s, e in blocks[:-1] if e <= n_rows)
    else:
        assert all(s % tile_rows == 0 for s in inner)
    if bias_row:
        kernel_blocks = row_partition(n_rows, tile_rows, unit, False)
        last = kernel_blocks[-1] if kernel_blocks else None
        if last is not None and last[1] - last[0] < tile_rows:
            assert len(blocks) == len(kernel_blocks)  # the bias row joins the last array
            assert blocks[-1] == (last[0], last[1] + 1)
        else:
            assert len(blocks) == len(kernel_blocks) + 1  # its own block
            assert blocks[-1] == (n_rows, n_rows + 1)


def test_row_partition_examples():
    # 64 channels x 3x3: 28 channels (252 rows) per 256-row array -> 3 arrays
    assert row_partition(576, 256, 9) == ((0, 252), (252, 504), (504, 576))
    # the bias row joins the last array when it has room ...
    assert row_partition(576, 256, 9, True) == ((0, 252), (252, 504), (504, 577))
    # ... even a full-step one that is still shorter than tile_rows
    assert row_partition(252, 256, 9, True) == ((0, 253),)
    # ... and gets its own block when the last array is full
    assert row_partition(512, 256, 1, True) == ((0, 256), (256, 512), (512, 513))
    assert row_partition(0, 8, 1, True) == ((0, 1),)
    assert row_partition(0, 8) == ()
    # unit > tile_rows: plain tile_rows steps (a kernel straddles arrays)
    assert row_partition(18, 4, 9) == ((0, 4), (4, 8), (8, 12), (12, 16), (16, 18))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"kernel": (1, 1, 1, 1), "stride": (1,) * 4, "padding": (0,) * 4, "dilation": (1,) * 4},
         "0 to 3 spatial dimensions"),
        ({"kernel": (3,), "stride": (), "padding": (0,), "dilation": (1,)}, "stride must have 1"),
        ({"kernel": (3, 3), "stride": (1, 1), "padding": (0,), "dilation": (1, 1)},
         "padding must have 2"),
        ({"kernel": (3,), "stride": (1,), "padding": (0,), "dilation": (1, 1)},
         "dilation must have 1"),
        ({"groups": 0}, "groups must be >= 1"),
    ],
)  # fmt: skip
def test_bad_geometry_raises(args, match):
    with pytest.raises(ValueError, match=match):
        Product(**args)


@pytest.mark.parametrize(("n", "t", "u"), [(-1, 4, 1), (4, 0, 1), (4, 4, 0)])
def test_bad_partition_raises(n, t, u):
    with pytest.raises(ValueError, match="bad partition"):
        row_partition(n, t, u)


@pytest.mark.parametrize(
    ("dims", "groups"), [(0, 1), (0, 3), (1, 1), (1, 2), (2, 1), (2, 3), (3, 1)]
)
def test_weight_grad_equals_autograd_of_apply(dims, groups):
    gen = torch.Generator().manual_seed(dims * 10 + groups)
    p = Product(groups=groups) if dims == 0 else _product(dims, 3, 2, 1, 1, groups)
    c_in, out = 2 * groups, 2 * groups
    x = torch.randn(4, c_in, *SIZES.get(dims, ()), generator=gen, dtype=torch.float64)
    w = torch.randn(out, c_in // groups, *p.kernel, generator=gen, dtype=torch.float64)
    w.requires_grad_()
    y = p.apply(x, w)
    g = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (expected,) = torch.autograd.grad((g * y).sum(), w)
    got = p.weight_grad(
        x, g.contiguous(memory_format=torch.channels_last) if dims == 2 else g, w.shape
    )
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
