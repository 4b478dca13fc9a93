import math

import pytest
import torch
from torch import nn

from nvmsim.devices import jumptable as jt
from nvmsim.devices import noise
from nvmsim.training.onchip import (
    OnChipNetwork,
    build_tables,
    describe_mlp,
    init_layers,
    parse_config,
    program_verify,
    train_onchip,
)


def tiny_layers(seed=0, sizes=(6, 5, 3)):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        w = 0.3 * torch.randn(b, a, generator=g)
        layers.append((w, 0.1 * torch.randn(b, generator=g)))
    return layers, ["sigmoid"] * (len(sizes) - 2)


def make_net(cfg, seed=0, sizes=(6, 5, 3)):
    cfg = parse_config(cfg)
    layers, acts = tiny_layers(seed, sizes)
    s, r, sref = build_tables(cfg)
    return OnChipNetwork(layers, acts, cfg, torch.Generator().manual_seed(seed), s, r, sref)


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize(
    "raw, field",
    [
        ({"asymetry": 0.5}, "scenario.onchip.asymetry: unknown setting"),
        ({"asymmetry": -1}, "scenario.onchip.asymmetry"),
        ({"strength": 1.5}, "scenario.onchip.strength"),
        ({"nonlinear_extent": 2}, "scenario.onchip.nonlinear_extent"),
        ({"device": "pcm"}, "scenario.onchip.device"),
        ({"table": "file"}, "set_table"),
        ({"nonlinear_extent": 0.5}, "only used with table = 'nonlinear'"),
        ({"w_max": [1.0, -2.0]}, "w_max"),
        ({"lr": "fast"}, "scenario.onchip.lr"),
    ],
)
def test_bad_settings_name_the_field(raw, field):
    with pytest.raises(ValueError, match=field):
        parse_config(raw)


def test_wrong_w_max_length_and_non_mlp_are_errors():
    assert [la.w_max for la in make_net({"w_max": [1.0, 2.0]}).layers] == [1.0, 2.0]
    assert [la.w_max for la in make_net({}).layers] == [1.0, 2.0]  # default: 2**layer
    with pytest.raises(ValueError, match="w_max: 3 values for 2 layers"):
        make_net({"w_max": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="Conv2d"):
        describe_mlp(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)))


def test_mlp528_is_read_with_its_164885_synapses():
    layers, acts = init_layers("mlp528", {}, 0)
    assert sum(w.numel() + b.numel() for w, b in layers) == 164_885
    assert acts == ["sigmoid", "sigmoid"]


# ------------------------------------------------------------------ backprop
def test_float_mode_equals_per_example_sgd():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)
    )
    layers, acts = describe_mlp(model)
    cfg = parse_config({"device": "float", "lr": 0.3, "w_max": 10.0})
    s, r, sref = build_tables(cfg)
    net = OnChipNetwork(layers, acts, cfg, torch.Generator(), s, r, sref)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(20, 6, generator=g), torch.randint(0, 3, (20,), generator=g)
    for i in range(20):
        net.train_example(x[i], int(y[i]), 0.3)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        opt.step()
    for (w, b), m in zip(net.weights(), [model[0], model[2], model[4]], strict=True):
        torch.testing.assert_close(w, m.weight.detach(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(b, m.bias.detach(), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ the update rule
def mean_update(cfg, x, delta, lr, trials=1500):
    net = make_net(cfg, sizes=(len(x) - 1, len(delta)))
    layer = net.layers[0]
    g0 = layer.G.clone()
    dws, dsum = [], []
    for _ in range(trials):
        layer.G.copy_(g0)
        layer.refresh_w()
        w0 = layer.W.clone()
        net._update(layer, x, delta, lr)
        dws.append(layer.W - w0)
        dsum.append((layer.G[0] + layer.G[1]) - (g0[0] + g0[1]))
    dws, dsum = torch.stack(dws), torch.stack(dsum)
    return dws.mean(0), dws.std(0) / math.sqrt(trials), dsum.mean(0), net


X = torch.tensor([0.3, 0.7, 1.0, 0.0, 0.5, 1.0])  # last entry: the bias row
D = torch.tensor([0.02, -0.05, 0.0, 0.1])


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"rule": "stochastic"},
        {"rule": "exact"},
        {"pair_update": "plus"},
        {"device": "set_only", "refresh_every": 0},
        {"spread": 0.3},
        {"table": "nonlinear", "nonlinear_extent": 0.3, "strength": 0.99},
    ],
)
def test_pulses_are_unbiased_estimates_of_lr_x_delta(cfg):
    base = {"n_steps": 200, "w_max": 1.0, "lr": 0.5}
    mean, se, _, _ = mean_update({**base, **cfg}, X, D, 0.5)
    expected = 0.5 * torch.outer(X, D)
    tol = 5 * se + 2e-3 * expected.abs() + 1e-7
    assert bool(((mean - expected).abs() <= tol).all()), (mean, expected)


def test_asymmetry_and_its_compensation():
    base = {"n_steps": 200, "w_max": 1.0, "lr": 0.5, "asymmetry": 0.5}
    expected = 0.5 * torch.outer(X, D)
    mean, se, dsum, net = mean_update(base, X, D, 0.5)
    assert net.c == pytest.approx(0.5)
    # uncompensated: each event moves w by s + 2 s instead of 2 s, and the pair sum drifts
    assert torch.allclose(mean, 1.5 * expected, atol=float(5 * se.max()) + 1e-7)
    assert float(dsum[expected != 0].max()) < 0
    mean_c, se_c, dsum_c, _ = mean_update({**base, "compensate": True}, X, D, 0.5)
    assert torch.allclose(mean_c, expected, atol=float(5 * se_c.max()) + 1e-7)
    assert float(dsum_c.abs().max()) < float(dsum.abs().max()) / 5
    more, se_m, _, _ = mean_update(
        {**base, "compensate": True, "compensate_by": "more_set"}, X, D, 0.5
    )
    # twice the SET pulses: w moves 2 s + 2 s per nominal event
    assert torch.allclose(more, 2 * expected, atol=float(5 * se_m.max()) + 1e-7)


def test_set_only_pair_only_ever_sets():
    net = make_net({"device": "set_only", "refresh_every": 0, "n_steps": 100, "lr": 2.0})
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        before = [la.G.clone() for la in net.layers]
        net.train_example(torch.rand(6, generator=g), int(torch.randint(0, 3, (1,))), 2.0)
        for la, b in zip(net.layers, before, strict=True):
            assert bool((la.G >= b).all())
    assert net.stats.reset_pulses == 0 and net.stats.set_pulses > 0


# ------------------------------------------------------------------ invariants
CONFIGS = [
    {},
    {"asymmetry": 0.3},
    {"asymmetry": 0.3, "compensate": True},
    {"pair_update": "plus", "spread": 0.5},
    {"device": "set_only"},
    {"device": "set_only", "spread": 0.4, "refresh_every": 7, "table": "nonlinear",
     "nonlinear_extent": 0.5, "strength": 0.2},
    {"table": "nonlinear", "nonlinear_extent": 1.0, "strength": 0.1, "rule": "stochastic"},
    {"rule": "exact", "read_noise": 0.05, "read_noise_kind": "proportional"},
]  # fmt: skip


@pytest.mark.parametrize("cfg", CONFIGS)
def test_conductances_stay_in_range_and_weights_match_them(cfg):
    net = make_net({"n_steps": 20, "lr": 5.0, "refresh_every": 5, **cfg}, sizes=(8, 6, 4))
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(60, 8, generator=g), torch.randint(0, 4, (60,), generator=g)
    for i in range(60):
        net.train_example(x[i], int(y[i]), 5.0)
        for la in net.layers:
            assert bool((la.G >= net.g_min).all() and (la.G <= net.g_max).all())
    for la in net.layers:
        torch.testing.assert_close(la.W, la.scale * (la.G[0] - la.G[1]))
    d = net.diamond()
    assert 0 <= d["saturated_fraction"] <= 1 and 0 <= d["collapsed_fraction"] <= 1


@pytest.mark.parametrize("spread", [0.0, 0.3])
def test_refresh_preserves_the_weight_within_one_step(spread):
    cfg = {"device": "set_only", "n_steps": 50, "spread": spread, "refresh_every": 0}
    net = make_net(cfg, sizes=(40, 30, 3))
    layer = net.layers[0]
    g = torch.Generator().manual_seed(3)
    layer.G.copy_(torch.rand(layer.G.shape, generator=g))
    layer.refresh_w()
    w0, g0 = layer.W.clone(), layer.G.clone()
    n = net.refresh(layer)
    hit = (g0 >= 0.9).any(0)
    assert n == int(hit.sum()) > 0
    assert torch.equal(layer.G[:, ~hit], g0[:, ~hit])  # the others untouched
    assert bool((layer.G[:, hit].min(0).values == 0).all())  # one device of each pair reset
    step = float(net.set_t.dg.max()) if spread else 0.5 / 50
    err = (layer.W - w0).abs()[hit]
    assert float(err.max()) <= layer.scale * step + 1e-6
    torch.testing.assert_close(layer.W, layer.scale * (layer.G[0] - layer.G[1]))


def test_ideal_refresh_is_exact_and_program_verify_stops_within_half_a_step():
    net = make_net({"device": "set_only", "refresh_mode": "ideal", "refresh_every": 0})
    layer = net.layers[0]
    layer.G[0, 0, 0], layer.G[1, 0, 0] = 0.95, 0.25
    layer.refresh_w()
    w0 = layer.W.clone()
    assert net.refresh(layer) == 1
    torch.testing.assert_close(layer.W, w0)
    t = jt.linear(0.01)
    flat = torch.zeros(5)
    target = torch.tensor([0.0, 0.004, 0.006, 0.333, 1.0])
    program_verify(t, flat, torch.arange(5), target, None)
    assert float((flat - target).abs().max()) <= 0.005 + 1e-6
    # a state-dependent table goes through the verify loop: within half its local step
    t2 = jt.partially_nonlinear(0.01, 0.5, 0.5)
    flat = torch.zeros(5)
    program_verify(t2, flat, torch.arange(5), target, None)
    local = t2.mean_step()[t2.bin_index(flat)].float()
    assert bool(((flat - target).abs() <= 0.5 * local + 1e-6).all())


# ------------------------------------------------------------------ reads
@pytest.mark.parametrize("kind", ["additive", "proportional"])
def test_read_noise_moments_match_explicit_device_sampling(kind):
    sigma = 0.1
    net = make_net({"read_noise": sigma, "read_noise_kind": kind}, sizes=(30, 4, 2))
    layer = net.layers[0]
    g = torch.Generator().manual_seed(4)
    layer.G.copy_(torch.rand(layer.G.shape, generator=g))
    layer.refresh_w()
    x = torch.rand(1, 31, generator=g)
    reads = net._read(layer, x.expand(20_000, -1))
    explicit = []
    for _ in range(4000):
        gp = noise.add_noise(layer.G[0], kind, sigma, g)
        gm = noise.add_noise(layer.G[1], kind, sigma, g)
        explicit.append(x @ (layer.scale * (gp - gm)))
    explicit = torch.cat(explicit)
    mean = x @ layer.W
    assert torch.allclose(reads.mean(0), mean[0], atol=float(5 * reads.std(0).max() / 141))
    ratio = reads.var(0) / explicit.var(0)
    assert bool(((ratio - 1).abs() < 0.12).all()), ratio


# ------------------------------------------------------------------ training and the hook
def test_training_learns_digits():
    from nvmsim.data import load

    x, y = load("digits", "train")
    xt, yt = load("digits", "test")
    layers, acts = init_layers("fc_tanh", {"n_fe": 32, "inputs": 64}, 0)
    res = train_onchip(
        {"n_steps": 500, "lr": 0.05, "w_max": [1.0, 2.0]},
        (x[:600], y[:600]),
        (xt, yt),
        layers=layers,
        acts=acts,
        epochs=2,
        seed=0,
    )
    assert res.test_accuracy > 0.75
    assert len(res.curve) == 2 and res.stats.pulses > 0


def test_benchmark_returns_seconds_and_prints_nothing(capsys):
    from nvmsim.training.onchip_bench import run_onchip_benchmark

    t = run_onchip_benchmark(examples=40)
    assert isinstance(t, float) and t > 0
    assert capsys.readouterr() == ("", "")


def test_plot_jumptable(tmp_path):
    from nvmsim.training.onchip import plot_jumptable

    set_t, reset_t = jt.asymmetric(0.02, 0.5, spread=0.3)
    p = plot_jumptable(set_t, tmp_path / "t.png", reset=reset_t, devices=50)
    assert p.is_file() and 1000 < p.stat().st_size < 200_000


def test_torch_threads_sets_a_new_count_and_puts_it_back_but_never_the_same_one(monkeypatch):
    """``torch.set_num_threads`` switches MKL's dynamic threads off process-wide (slower CPU
    attention), so the same count is not set again."""
    from nvmsim.training.onchip import torch_threads

    calls, real = [], torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    old = torch.get_num_threads()
    with torch_threads(old):
        assert torch.get_num_threads() == old
    with torch_threads(None):
        pass
    assert calls == []
    with torch_threads(old + 1):
        assert torch.get_num_threads() == old + 1
    assert calls == [old + 1, old] and torch.get_num_threads() == old
