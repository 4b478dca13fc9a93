"""Hardware-aware training: exact with every non-ideality off, noisy and reproducible with
them on, and the gradients it uses checked against finite differences."""

import copy

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import analog_layers, convert
from nvmsim.training import hwa
from nvmsim.training.software import train as train_software


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 5 * 5, 4),
    ).double()


def _data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(n, 1, 5, 5, dtype=torch.float64, generator=g)
    return x, torch.randint(0, 4, (n,), generator=g)


PCM = validate(AnalogConfig, {"device": {"preset": "pcm"}})
RECIPE = hwa.Recipe(epochs=2, batch_size=8, lr=0.05, optimizer="sgd", seed=5)


def test_ideal_hwa_training_equals_torch_training():
    net, data = _net(), _data()
    ref = copy.deepcopy(net)
    trained = hwa.train(net, AnalogConfig(), data, RECIPE)
    train_software(ref, *data, epochs=2, batch_size=8, lr=0.05, optimizer="sgd", seed=5)
    assert trained is net and type(net[0]) is nn.Conv2d  # a plain torch model comes back
    for (name, p), q in zip(ref.named_parameters(), net.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-10), name


def test_noisy_training_is_reproducible_and_differs_from_ideal():
    data = _data()
    a, b, ideal = (hwa.train(_net(), cfg, data, RECIPE) for cfg in (PCM, PCM, AnalogConfig()))
    wa, wb, wi = (m[3].weight for m in (a, b, ideal))
    assert torch.equal(wa, wb)
    assert not torch.allclose(wa, wi, atol=1e-6)
    other = hwa.train(_net(), PCM, data, RECIPE.model_copy(update={"seed": 6}))
    assert not torch.equal(other[3].weight, wa)


def test_programming_is_redrawn_per_batch_per_epoch_or_fixed():
    """Record each layer's programmed weights before every batch of an (lr ~ 0) run."""
    net = convert(_net(), PCM)
    seen = []
    for mode, expect_new in (("batch", [True, True, True]), ("epoch", [False, True, False])):
        chip = hwa._Chip(net, hwa.Injection(programming=mode), seed=1)
        draws = []
        for epoch in (0, 0, 1, 1):
            chip.program(epoch)
            draws.append(net[3].tile.w_mean.clone())
        new = [not torch.equal(p, q) for p, q in zip(draws[:-1], draws[1:], strict=True)]
        assert new == expect_new, mode
        seen.append(draws[0])
    fixed = hwa._Chip(net, hwa.Injection(programming="fixed"), seed=1)
    fixed.program(0)
    first = net[3].tile.w_mean.clone()
    fixed.program(3)
    assert torch.equal(first, net[3].tile.w_mean)


def test_read_noise_per_batch_is_held_for_the_forward_pass_and_redrawn():
    """``read_noise = "batch"``: one draw per mini-batch, so the forward pass is a smooth,
    deterministic function of the input (autograd's gradient equals central differences),
    and the next batch reads with a new draw; training is reproducible and differs from
    per-read noise."""
    net = convert(_net(), PCM)
    chip = hwa._Chip(net, hwa.Injection(programming="fixed", read_noise="batch"), seed=1)
    chip.program(0)
    assert all(layer.tile.held for layer in analog_layers(net))
    x = _data(2)[0].requires_grad_(True)
    out = net(x)
    out.square().sum().backward()
    h = 1e-6
    for idx in [(0, 0, 1, 2), (1, 0, 4, 4)]:
        xp, xm = x.detach().clone(), x.detach().clone()
        xp[idx] += h
        xm[idx] -= h
        with torch.no_grad():
            fd = (net(xp).square().sum() - net(xm).square().sum()) / (2 * h)
        assert float(x.grad[idx]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)
    chip.program(0)
    with torch.no_grad():
        assert not torch.allclose(net(x), out)  # same programming, a new read draw
    drifting = hwa._Chip(net, hwa.Injection(t_train=60.0, read_noise="batch"), seed=1)
    drifting.program(0)
    assert all(m.tile.held and m.tile.time == 60.0 for m in analog_layers(net))
    data, batch = _data(), RECIPE.model_copy(update={"read_noise": "batch"})
    a, b = (hwa.train(_net(), PCM, data, batch)[3].weight for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, hwa.train(_net(), PCM, data, RECIPE)[3].weight, atol=1e-6)


def test_scaling_turns_noise_off_and_harsher():
    off = hwa.training_config(PCM, hwa.Injection(programming_scale=0, read_scale=0))
    assert not off.device.programming_error.active and not off.device.read_noise.active
    x2 = hwa.training_config(PCM, hwa.Injection(read_scale=2.0, programming_scale=3.0))
    assert x2.device.read_noise.sigma == pytest.approx(2 * PCM.device.read_noise.sigma)
    got, want = x2.device.programming_error.coeffs, PCM.device.programming_error.coeffs
    assert got == pytest.approx(tuple(3 * c for c in want))
    assert x2.device.drift_nu == 0  # reads at t = 0 need no drift exponents
    drifting = hwa.training_config(PCM, hwa.Injection(t_train=60.0))
    assert drifting.device.drift_nu == PCM.device.drift_nu
    assert drifting.device.programming_error == PCM.device.programming_error  # untouched


def test_drift_to_t_train_and_clipping():
    net = convert(_net(), PCM)
    chip = hwa._Chip(net, hwa.Injection(programming="fixed", t_train=3600.0, clip_sigma=1.0), 2)
    chip.program(0)
    assert all(layer.tile.time == 3600.0 for layer in analog_layers(net))
    w = net[3].weight.detach()
    before = float(w.std())
    assert float(w.abs().max()) > before  # something to clip
    chip.clip()
    assert float(w.abs().max()) == pytest.approx(before)


def test_output_noise_only_while_training():
    net = convert(_net(), AnalogConfig())
    chip = hwa._Chip(net, hwa.Injection(output_noise=0.1), seed=0)
    x = _data(4)[0]
    with torch.no_grad():
        net.eval()
        clean = net(x)
        net.train()
        noisy = net(x)
    chip.close()
    with torch.no_grad():
        after = net(x)
    assert not torch.allclose(noisy, clean) and torch.allclose(after, clean)


def test_input_gradient_equals_finite_differences_of_the_deterministic_read():
    """Programming error fixed, no read noise: the forward is deterministic and smooth in the
    input, and autograd's input gradient matches central differences."""
    cfg = validate(AnalogConfig, {"device": {"programming_error": {"sigma": 0.05}}})
    net = convert(_net(), cfg)
    x = _data(2)[0].requires_grad_(True)
    net(x).square().sum().backward()
    g = x.grad
    h = 1e-6
    for idx in [(0, 0, 1, 2), (1, 0, 4, 4), (0, 0, 0, 0)]:
        xp, xm = x.detach().clone(), x.detach().clone()
        xp[idx] += h
        xm[idx] -= h
        with torch.no_grad():
            fd = (net(xp).square().sum() - net(xm).square().sum()) / (2 * h)
        assert float(g[idx]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("kind", ["additive", "proportional"])
def test_input_gradient_of_the_sampled_read_equals_differences_with_the_same_draws(kind):
    device = {"programming_error": {"sigma": 0.05}, "read_noise": {"kind": kind, "sigma": 0.1}}
    lin = convert(nn.Linear(6, 3).double(), validate(AnalogConfig, {"device": device}))
    x = torch.rand(4, 6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 3, dtype=torch.float64)

    def loss(inp):
        lin.reseed(7)  # the same noise draws every time: a deterministic, smooth function
        return (lin(inp) * c).sum()

    loss(x).backward()
    assert not torch.allclose(x.grad, c @ lin.tile._rw_mean)  # the noise term counts
    h = 1e-6
    for idx in [(0, 0), (2, 5), (3, 1)]:
        e = torch.zeros_like(x)
        e[idx] = h
        with torch.no_grad():
            fd = (loss(x + e) - loss(x - e)) / (2 * h)
        assert float(x.grad[idx]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("kind", ["additive", "proportional"])
def test_expected_noise_gradient_is_that_of_the_expected_read(kind):
    device = {"programming_error": {"sigma": 0.05}, "read_noise": {"kind": kind, "sigma": 0.1}}
    lin = convert(nn.Linear(6, 3).double(), validate(AnalogConfig, {"device": device}))
    lin.tile.noise_gradient = "expected"
    x = torch.rand(4, 6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 3, dtype=torch.float64)
    (lin(x) * c).sum().backward()
    mean_w = lin.tile._rw_mean  # E[W] of this instance, as the product reads it
    torch.testing.assert_close(x.grad, c @ mean_w, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # central differences of the expected read
        e = torch.zeros_like(x)
        e[1, 2] = 1e-6
        fd = ((((x + e) @ mean_w.T) * c).sum() - (((x - e) @ mean_w.T) * c).sum()) / 2e-6
    assert float(x.grad[1, 2]) == pytest.approx(float(fd), rel=1e-6)


def test_converters_pass_gradients_straight_through():
    cfg = validate(AnalogConfig, {"converter": {"dac_bits": 4, "adc_bits": 4}})
    lin = convert(nn.Linear(6, 3).double(), cfg)
    x = torch.rand(5, 6, dtype=torch.float64, requires_grad=True)
    out = lin(x)
    out.sum().backward()
    assert x.grad.abs().sum() > 0 and lin.weight.grad.abs().sum() > 0
    with torch.no_grad():  # the forward is still the quantised read
        assert torch.equal(out, lin(x))


def test_recipe_rejects_bad_values():
    with pytest.raises(ValidationError, match="clip_sigma"):
        hwa.Recipe(clip_sigma=-1.0)
    with pytest.raises(ValidationError, match="programming"):
        hwa.Recipe(programming="sometimes")


@pytest.mark.parametrize("kind", ["additive", "proportional"])
def test_zero_input_rows_give_finite_gradients(kind):
    """An all-zero input has zero read variance; sqrt's gradient there is 0 / 0 unless the
    read defines it (found by an HWA epoch on Fashion-MNIST going NaN)."""
    cfg = validate(AnalogConfig, {"device": {"read_noise": {"kind": kind, "sigma": 0.05}}})
    for tile_rows in (256, 4):  # one array, and partial sums of several
        cfg = cfg.model_copy(update={"crossbar": cfg.crossbar.model_copy(
            update={"tile_rows": tile_rows})})  # fmt: skip
        lin = convert(nn.Linear(6, 3).double(), cfg)
        x = torch.rand(3, 6, dtype=torch.float64)
        x[1] = 0.0
        x.requires_grad_(True)
        lin(x)[[0, 2]].sum().backward()  # no gradient reaches the zero row's outputs
        assert torch.isfinite(x.grad).all() and torch.isfinite(lin.weight.grad).all()
        assert (x.grad[0] != 0).any()


# ---------------------------------------------------------------- learned DAC input ranges

DAC = validate(AnalogConfig, {"converter": {"dac_bits": 4}})


@pytest.mark.parametrize("encoding", ["twos_complement", "unsigned"])
def test_learned_range_gets_the_gradient_of_the_inputs_it_clips(encoding):
    """PACT's gradient: d loss / d range = the summed DAC-output gradient of the inputs
    clipped at +range, minus that of those clipped at -range (none for unsigned inputs)."""
    cfg = validate(AnalogConfig, {"converter": {"dac_bits": 4, "input_encoding": encoding}})
    torch.manual_seed(1)
    ref = nn.Linear(6, 3).double()
    layer = convert(ref, cfg)
    r = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))
    layer.set_input_range(r)
    x = torch.randn(20, 6, dtype=torch.float64) * 1.5
    up = torch.randn(20, 3, dtype=torch.float64)
    (layer(x) * up).sum().backward()
    g_q = up @ ref.weight.detach()  # gradient at the DAC output (ideal devices: y = q W^T + b)
    want = g_q[x > 0.7].sum()
    if encoding == "twos_complement":
        want = want - g_q[x < -0.7].sum()
    assert layer.tile.dac_range == 0.7  # the read used the learned range
    torch.testing.assert_close(r.grad, want, rtol=1e-10, atol=1e-12)


def test_learned_ranges_train_and_travel_with_the_model(tmp_path):
    from nvmsim.io import load_checkpoint, save_checkpoint
    from nvmsim.nn.input_range import learned_ranges

    data = _data(48)
    recipe = RECIPE.model_copy(
        update={"input_range": "learned", "optimizer": "adam", "batch_size": 48, "epochs": 6}
    )
    net = hwa.train(_net(), DAC, data, recipe)
    ranges = learned_ranges(net)
    assert set(ranges) == {"0", "3"} and all(r > 0 for r in ranges.values())
    assert net.state_dict().keys() == _net().state_dict().keys()  # torch's keys only
    assert learned_ranges(hwa.train(_net(), DAC, data, recipe)) == ranges  # from the seed
    first = float(3 * data[0].std())  # the first layer starts at 3 std of its inputs
    assert abs(ranges["0"] - first) > 1e-3  # and moved

    analog = convert(net, DAC)
    layers = dict(analog.named_modules())
    analog(data[0])
    for name, value in ranges.items():
        assert float(layers[name].tile.dac_range) == pytest.approx(value, rel=1e-12)
    path = tmp_path / "net.safetensors"
    save_checkpoint(net, path, arch={"name": "net"})
    back = load_checkpoint(path, build=_net())[0]
    assert learned_ranges(back) == ranges


def test_range_decay_shrinks_only_a_range_that_clips_little():
    data = _data(48)
    wide = RECIPE.model_copy(update={
        "input_range": "learned", "input_range_init": 50.0, "optimizer": "adam", "lr": 0.01,
        "batch_size": 48,  # one batch: the first inputs are all of them
    })  # fmt: skip
    from nvmsim.nn.input_range import learned_ranges

    kept = learned_ranges(hwa.train(_net(), DAC, data, wide.model_copy(
        update={"input_range_decay": 0.0})))  # fmt: skip
    shrunk = learned_ranges(hwa.train(_net(), DAC, data, wide))
    start = float(50 * data[0].std())
    assert kept["0"] == pytest.approx(start, rel=1e-9)  # nothing clipped: no gradient
    # the decay is the only gradient: two Adam steps of lr each (one batch, two epochs)
    assert shrunk["0"] == pytest.approx(start - 2 * 0.01, abs=1e-6)


def test_learned_ranges_need_a_dac():
    recipe = RECIPE.model_copy(update={"input_range": "learned"})
    with pytest.raises(ValueError, match="needs a DAC with an automatic range"):
        hwa.train(_net(), PCM, _data(), recipe)
    isaac = validate(AnalogConfig, {"preset": "isaac"})
    with pytest.raises(ValueError, match="does not apply to bit-sliced or bit-serial tiles"):
        hwa.train(_net(), isaac, _data(), recipe)
