"""An analog layer is torch state: it follows ``.to()``, ``deepcopy`` and ``load_state_dict``
without losing (or redrawing) its programmed chip."""

import copy

import pytest
import torch
from torch import nn

import nvmsim
from nvmsim.config import AnalogConfig, validate
from nvmsim.crossbar.tile import STATE
from nvmsim.nn import analog_layers

NOISY = validate(
    AnalogConfig,
    {
        "device": {
            "preset": "reram",
            "programming_error": {"kind": "proportional", "sigma": 0.05},
            "read_noise": {"kind": "proportional", "sigma": 0.05},
        },
        "crossbar": {"tile_rows": 16, "bias": "analog"},
    },
)


def _model(config=NOISY):
    torch.manual_seed(0)
    ref = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(),
        nn.Linear(16, 3),
    )  # fmt: skip
    return ref, nvmsim.convert(ref, config)


def _x(dtype=torch.float32):
    return torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1)).to(dtype)


def _reseed(model, seed=5):
    for i, layer in enumerate(analog_layers(model)):
        layer.reseed(seed + i)


def _count_programs(model, monkeypatch):
    calls = []
    for layer in analog_layers(model):
        original = layer.tile.program

        def spy(*args, _original=original, **kw):
            calls.append(1)
            return _original(*args, **kw)

        monkeypatch.setattr(layer.tile, "program", spy)
    return calls


def test_dtype_round_trip_reads_like_a_copy_that_never_moved(monkeypatch):
    _, model = _model()
    still = copy.deepcopy(model)
    calls = _count_programs(model, monkeypatch)
    g0 = [layer.tile.g0.clone() for layer in analog_layers(model)]
    model.to(torch.float64)
    for layer in analog_layers(model):
        assert layer.tile.g0.dtype == torch.float64 and layer.tile.w_mean.dtype == torch.float64
    with torch.no_grad():
        y64 = model(_x(torch.float64))
    assert y64.dtype == torch.float64
    model.to(torch.float32)
    assert calls == []  # moving and casting never reprogram
    for layer, g in zip(analog_layers(model), g0, strict=True):
        assert torch.equal(layer.tile.g0, g)
    _reseed(model)
    _reseed(still)
    with torch.no_grad():
        y, y_still = model(_x()), still(_x())
    assert y.dtype == torch.float32
    assert torch.equal(y, y_still)
    # the float64 read was the same chip, other noise (read-noise std ~0.025 here)
    torch.testing.assert_close(y64.float(), y, rtol=0, atol=0.15)
    assert calls == []


def test_casting_keeps_a_chip_that_a_reprogram_would_redraw():
    """Programmed with a generator of its own, drifted and ADC-calibrated: a reprogram would
    draw from the layer's seed, reset the drift time and the calibration."""
    cfg = NOISY.model_copy(
        update={
            "device": NOISY.device.model_copy(update={"drift_nu": 0.05}),
            "converter": validate(AnalogConfig, {"converter": {"adc_bits": 8}}).converter,
        }
    )
    _, model = _model(cfg)
    layer = model[4]
    layer.program(torch.Generator().manual_seed(1234))
    layer.drift_to(100.0)
    with torch.no_grad():
        model(_x())  # calibrates the ADC ranges
    g0, adc_range = layer.tile.g0.clone(), layer.tile.adc_range.clone()
    fresh = copy.deepcopy(layer).program()  # what a reprogram would give
    assert not torch.equal(fresh.tile.g0, g0)
    model.double()
    assert layer.tile.time == 100.0
    assert torch.equal(layer.tile.g0, g0.double())
    assert torch.equal(layer.tile.adc_range, adc_range.double())
    with torch.no_grad():
        model(_x(torch.float64))
    assert torch.equal(layer.tile.g0, g0.double())  # the forward pass did not reprogram
    model.float()
    assert torch.equal(layer.tile.g0, g0) and layer.tile.time == 100.0


def test_deepcopy_reads_identically():
    _, model = _model()
    with torch.no_grad():
        model(_x())  # advance the noise streams
    twin = copy.deepcopy(model)
    for a, b in zip(analog_layers(model), analog_layers(twin), strict=True):
        assert a.generator is not b.generator
        assert torch.equal(a.generator.get_state(), b.generator.get_state())
        for name in STATE:
            ta, tb = getattr(a.tile, name), getattr(b.tile, name)
            assert (ta is None and tb is None) or torch.equal(ta, tb), name
    with torch.no_grad():
        for _ in range(2):
            assert torch.equal(model(_x()), twin(_x()))


def test_deepcopy_keeps_drift_and_calibrated_ranges_until_the_weights_change():
    """A copy is the same chip: its weights are new tensors (version counters at 0), which
    must not make it reprogram itself back to t = 0 and forget its converter ranges."""
    cfg = validate(AnalogConfig, {
        "device": {"preset": "pcm"}, "converter": {"dac_bits": 6, "adc_bits": 6},
    })  # fmt: skip
    torch.manual_seed(0)
    model = nvmsim.convert(nn.Sequential(nn.Linear(6, 5), nn.LSTM(5, 4)), cfg)
    nvmsim.nn.drift_to(model, 86400.0)
    x = torch.rand(3, 2, 6)
    with torch.no_grad():
        model(x)  # calibrates the converters
        twin, edited = copy.deepcopy(model), copy.deepcopy(model)
        assert torch.equal(model(x)[0], twin(x)[0])
        assert all(layer.tile.time == 86400.0 for layer in analog_layers(twin))
        edited[0].weight.mul_(0.5)
        edited(x)
    assert edited[0].tile.time == 0.0  # new weights: programmed afresh
    assert edited[1].arrays["ih_l0"].tile.time == 86400.0  # an untouched layer keeps its drift


def test_state_dict_keys_are_torchs():
    ref, model = _model()
    assert list(model.state_dict().keys()) == list(ref.state_dict().keys())
    for layer in analog_layers(model):
        assert not any(k.startswith("tile") for k in layer.state_dict())


def test_changing_weights_in_place_reprograms():
    ref, model = _model()
    layer = model[4]
    g0 = layer.tile.g0.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = _x().requires_grad_()
    model(x).sum().backward()  # gradients reach the input and the weights
    assert x.grad is not None and layer.weight.grad is not None
    assert layer.weight.grad.abs().sum() > 0
    opt.step()
    with torch.no_grad():
        model(_x())
    assert not torch.equal(layer.tile.g0, g0)
    # load_state_dict: back to the reference weights, and the chip follows (same seed: same draw)
    model.load_state_dict(ref.state_dict())
    with torch.no_grad():
        model(_x())
    assert torch.equal(layer.tile.g0, g0)
    # a bias change alone reprograms too (the bias is an analog row here)
    with torch.no_grad():
        layer.bias.add_(1.0)
        model(_x())
    assert not torch.equal(layer.tile.g0, g0)


def test_ideal_float64_equals_torch_after_a_move():
    ref, model = _model(AnalogConfig())
    ref.double()
    model.double()
    with torch.no_grad():
        torch.testing.assert_close(model(_x(torch.float64)), ref(_x(torch.float64)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_reads_and_is_reproducible(monkeypatch):
    ref, model = _model()
    calls = _count_programs(model, monkeypatch)
    g0 = [layer.tile.g0.clone() for layer in analog_layers(model)]
    model.cuda()
    assert calls == []
    for layer, g in zip(analog_layers(model), g0, strict=True):
        assert layer.generator.device.type == "cuda"
        assert layer.tile.g0.is_cuda and torch.equal(layer.tile.g0.cpu(), g)
    x = _x().cuda()
    with torch.no_grad():
        y = model(x)
        assert y.is_cuda and torch.isfinite(y).all()
        # reproducible: the same seeds give the same reads, run to run
        _reseed(model, 3)
        a = model(x)
        _reseed(model, 3)
        assert torch.equal(a, model(x))
    # zero noise equals torch on cuda
    ideal = nvmsim.convert(ref, AnalogConfig()).cuda()
    ref = ref.cuda()
    with torch.no_grad():
        torch.testing.assert_close(ideal(x), ref(x), rtol=1e-4, atol=1e-5)
    # and back on the CPU the generator follows
    model.cpu()
    assert all(layer.generator.device.type == "cpu" for layer in analog_layers(model))
    with torch.no_grad():
        assert model(_x()).device.type == "cpu"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_deepcopy_and_fixed_seed_runs_agree():
    runs = []
    for _ in range(2):  # two independent conversions: one chip, one noise stream
        _, model = _model()
        model.cuda()
        with torch.no_grad():
            runs.append(model(_x().cuda()))
            twin = copy.deepcopy(model)
            assert torch.equal(twin(_x().cuda()), model(_x().cuda()))
    assert torch.equal(runs[0], runs[1])


_DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]

#: one config per family of draws and periphery, each with a table or per-column state
_FAMILIES = {
    "table noise, offset, drift": {
        "device": {
            "preset": "pcm",
            "read_noise": {"kind": "table", "g_points": [0.0, 1.0], "sigma_points": [0.01, 0.03]},
            "programming_error": {
                "kind": "table", "g_points": [0.0, 0.5, 1.0], "sigma_points": [0.0, 0.02, 0.01],
                "coeffs": [],
            },
        },
        "crossbar": {"mapping": "offset", "tile_rows": 16},
    },
    "sliced, bit-serial, SAR ADC with mismatch": {
        "device": {"bits": 2, "read_noise": {"kind": "additive", "sigma": 0.01}},
        "crossbar": {"weight_slices": 4, "tile_rows": 16, "tile_cols": 8},
        "converter": {
            "dac_bits": 8, "input_bits_per_read": 1, "adc_bits": 8,
            "adc_model": {"kind": "sar", "capacitor_std": 0.01, "columns_per_adc": 4},
        },
    },
}  # fmt: skip


class _Mixed(nn.Module):
    """Conv, LSTM, attention and linear layers in one network."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 8, 3, padding=1)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # x: (B, 3, T)
        h, _ = self.lstm(torch.relu(self.conv(x)).transpose(1, 2))
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.head(a.mean(1))


@pytest.mark.parametrize("device", _DEVICES)
@pytest.mark.parametrize("family", list(_FAMILIES))
def test_every_layer_type_programs_and_reads_on_the_device(device, family, tmp_path):
    """A CPU generator programs a chip on the device; reads, drift, energy counts and a chip
    file work there; the same seed reads the same numbers run to run."""
    from nvmsim.energy import estimate
    from nvmsim.io.chip import load_chip, save_chip

    torch.manual_seed(0)
    ref = _Mixed()
    cfg = validate(AnalogConfig, _FAMILIES[family])
    x = torch.rand(4, 3, 6, generator=torch.Generator().manual_seed(1)).to(device)

    def chip():
        model = nvmsim.convert(ref, cfg, on_unconverted="error").to(device)
        nvmsim.nn.program(model, torch.Generator().manual_seed(3))  # a CPU generator
        _reseed(model)
        return model

    model = chip()
    for layer in analog_layers(model):
        assert layer.weight.device.type == device == layer.generator.device.type
    with torch.no_grad():
        y = model(x)
        assert y.device.type == device and torch.isfinite(y).all()
        assert torch.equal(chip()(x), y)
        nvmsim.nn.drift_to(model, 3600.0)
        assert torch.isfinite(model(x)).all()
    assert estimate(model, "reram", input_shape=(3, 6)).total_pj > 0
    path = save_chip(model, tmp_path / "chip.safetensors")
    twin = load_chip(nvmsim.convert(ref, cfg).to(device), path)
    with torch.no_grad():
        _reseed(model)
        _reseed(twin)
        assert torch.equal(twin(x), model(x))


@pytest.mark.parametrize("device", _DEVICES)
def test_hardware_aware_training_runs_on_the_device(device):
    from nvmsim.training import hwa

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).to(device)
    x = torch.rand(32, 12, device=device)
    y = torch.randint(0, 3, (32,), device=device)
    recipe = hwa.Recipe(epochs=1, batch_size=8, seed=0, input_range="learned")
    cfg = validate(AnalogConfig, {"device": "pcm", "converter": {"dac_bits": 6}})
    before = [p.detach().clone() for p in model.parameters()]
    hwa.fit(model, cfg, (x, y), recipe)
    after = list(model.parameters())
    assert all(p.device.type == device and torch.isfinite(p).all() for p in after)
    assert not all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
