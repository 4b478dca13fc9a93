import torch

from nvmsim.devices import rng


def _draw(shape, seed, threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return rng.randn(shape, torch.Generator().manual_seed(seed), torch.float32, "cpu")
    finally:
        torch.set_num_threads(old)


def test_large_draws_depend_on_the_generator_only_not_on_threads():
    shape = (3, rng.CHUNK + 12345)
    a, b = _draw(shape, 7, 1), _draw(shape, 7, 2)
    assert torch.equal(a, b) and a.shape == shape
    assert not torch.equal(a, _draw(shape, 8, 2))
    # chunks come from distinct streams: no chunk repeats another
    flat = a.view(-1)
    assert not torch.equal(flat[: rng.CHUNK], flat[rng.CHUNK : 2 * rng.CHUNK])


def test_large_draws_are_standard_normal():
    x = _draw((4 * rng.CHUNK,), 0, 2).double()
    n = x.numel()
    assert abs(float(x.mean())) < 5 / n**0.5
    assert abs(float(x.var()) - 1) < 5 * (2 / n) ** 0.5
    # a normal's fourth moment is 3 and the chunks are uncorrelated with each other
    assert abs(float((x**4).mean()) - 3) < 0.02
    c = x.view(4, -1)
    corr = torch.corrcoef(c)
    assert (corr - torch.eye(4, dtype=corr.dtype)).abs().max() < 5 / rng.CHUNK**0.5


def test_small_draws_are_torchs_own():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    got = rng.randn((5, 7), g1, torch.float64, "cpu")
    assert torch.equal(got, torch.randn((5, 7), generator=g2, dtype=torch.float64))
