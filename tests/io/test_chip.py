"""``save_chip`` / ``load_chip``: one programmed chip instance, re-read bit-identically."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import nvmsim
from nvmsim.config import AnalogConfig, validate
from nvmsim.crossbar.tile import SCALARS, STATE
from nvmsim.io.chip import ChipError, load_chip, save_chip
from nvmsim.nn import analog_layers

CFG = validate(
    AnalogConfig,
    {
        "device": {
            "preset": "reram",
            "drift_nu": 0.05,
            "drift_nu_std": 0.02,
            "dead_rows": 0.15,
        },
        "crossbar": {"tile_rows": 16, "tile_cols": 4, "bias": "analog"},
        "converter": {"dac_bits": 8, "adc_bits": 8},  # auto ranges, calibrated by one read
    },
)


def _torch_net(seed=0, classes=3):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, groups=3), nn.Flatten(),
        nn.Linear(24, classes),
    )  # fmt: skip


def _x():
    return torch.rand(4, 2, 4, 4, generator=torch.Generator().manual_seed(2))


def _snapshot(model):
    """Everything a load could change: weights, tile state and scalars, noise streams."""
    out = {f"w/{k}": v.clone() for k, v in model.state_dict().items()}
    for i, layer in enumerate(analog_layers(model)):
        for b in STATE:
            t = getattr(layer.tile, b)
            out[f"t{i}/{b}"] = None if t is None else t.clone()
        for s in SCALARS:
            out[f"s{i}/{s}"] = getattr(layer.tile, s)
        out[f"g{i}"] = layer.generator.get_state()
    return out


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and torch.equal(x, y), k
        else:
            assert x == y, k


def _chip(tmp_path, cfg=CFG, calibrate=True):
    """A drifted (and calibrated) noisy chip that a fresh programming would not reproduce."""
    model = nvmsim.convert(_torch_net(), cfg)
    nvmsim.nn.program(model, torch.Generator().manual_seed(77))  # not the seed's instance
    nvmsim.nn.drift_to(model, 100.0)
    if calibrate:
        with torch.no_grad():
            model(_x())  # calibrates DAC and ADC ranges
    for layer in analog_layers(model):
        assert (layer.tile.adc_range is not None) == calibrate
        assert layer.tile.dead is not None and layer.tile.nu is not None
    assert any(bool(layer.tile.dead.any()) for layer in analog_layers(model))
    return model, save_chip(model, tmp_path / "chip.safetensors")


@pytest.fixture
def saved(tmp_path):
    return _chip(tmp_path)


@pytest.mark.parametrize("calibrate", [True, False])
@pytest.mark.parametrize("compensate", [False, True, "column", "array"])
def test_round_trip_reads_bit_identically(tmp_path, calibrate, compensate):
    cfg = CFG.model_copy(
        update={"device": CFG.device.model_copy(update={"drift_compensation": compensate})}
    )
    model, path = _chip(tmp_path, cfg, calibrate)
    assert path.is_file()
    with torch.no_grad():
        expected = [model(_x()) for _ in range(3)]
    target = nvmsim.convert(_torch_net(seed=5), cfg)  # other weights, other chip
    with torch.no_grad():
        assert not torch.equal(target(_x()), expected[0])  # (and calibrated on its own)
    assert load_chip(target, path) is target
    for a, b in zip(analog_layers(model), analog_layers(target), strict=True):
        assert b.tile.time == 100.0
        assert torch.equal(a.weight, b.weight)
    with torch.no_grad():
        got = [target(_x()) for _ in range(3)]
    for e, g in zip(expected, got, strict=True):
        assert torch.equal(e, g)
    # the loaded chip drifts on exactly like the saved one
    nvmsim.nn.drift_to(model, 1e4)
    nvmsim.nn.drift_to(target, 1e4)
    with torch.no_grad():
        assert torch.equal(model(_x()), target(_x()))


@pytest.mark.parametrize(
    "extra",
    [
        {"crossbar": {"weight_slices": 2}},
        {"crossbar": {"weight_slices": 2, "mapping": "offset"}},
        {"converter": {"input_bits_per_read": 2}},  # analog weights, bit-serial inputs
    ],
)
def test_bit_sliced_chips_round_trip(tmp_path, extra):
    """A sliced chip's own scale (weight range, LSB, offset correction) comes back with it,
    into a model whose weights differ (they set another scale when it was converted)."""
    base = {"device": {"bits": 2, "programming_error": {"kind": "additive", "sigma": 0.02}},
            "crossbar": {"tile_rows": 16, "tile_cols": 4},
            "converter": {"dac_bits": 6, "adc_bits": 10}}  # fmt: skip
    for part, values in extra.items():
        base[part] = {**base[part], **values}
    cfg = validate(AnalogConfig, base)
    model = nvmsim.convert(_torch_net(), cfg)
    with torch.no_grad():
        expected = model(_x())
    path = save_chip(model, tmp_path / "sliced.safetensors")
    other = _torch_net(seed=5)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(3.0)
    target = load_chip(nvmsim.convert(other, cfg), path)
    with torch.no_grad():
        torch.testing.assert_close(target(_x()), expected, rtol=0, atol=0)


def test_loaded_chip_is_not_reprogrammed_by_the_next_forward(saved):
    model, path = saved
    target = nvmsim.convert(_torch_net(seed=5), CFG)
    load_chip(target, path)
    g0 = [layer.tile.g0.clone() for layer in analog_layers(target)]
    with torch.no_grad():
        target(_x())
    for layer, g in zip(analog_layers(target), g0, strict=True):
        assert torch.equal(layer.tile.g0, g)
    for a, b in zip(analog_layers(model), analog_layers(target), strict=True):
        assert torch.equal(a.tile.g0, b.tile.g0)


def test_missing_file(tmp_path):
    target = nvmsim.convert(_torch_net(), CFG)
    with pytest.raises(ChipError, match=r"nothing\.safetensors: no such chip file"):
        load_chip(target, tmp_path / "nothing.safetensors")


def test_saving_a_digital_model_is_refused(tmp_path):
    with pytest.raises(ChipError, match="no analog layer; convert it first"):
        save_chip(_torch_net(), tmp_path / "x.safetensors")


@pytest.mark.parametrize("keep", [4, 20, 0.5, 0.99])
def test_truncated_file(saved, tmp_path, keep):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    target = nvmsim.convert(_torch_net(seed=5), CFG)
    before = _snapshot(target)
    with pytest.raises(ChipError, match=r"cut\.safetensors: not a readable chip file"):
        load_chip(target, bad)
    _same(before, _snapshot(target))


def test_plain_safetensors_file(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    target = nvmsim.convert(_torch_net(), CFG)
    before = _snapshot(target)
    with pytest.raises(ChipError, match=r"plain\.safetensors: not an nvmsim chip file"):
        load_chip(target, plain)
    _same(before, _snapshot(target))


def test_other_format_version(saved, tmp_path):
    _, path = saved
    tensors, meta = _read(path)
    bad = tmp_path / "v2.safetensors"
    save_file(tensors, str(bad), metadata={**meta, "format_version": "2"})
    with pytest.raises(ChipError, match=r"format version '2' is not supported"):
        load_chip(nvmsim.convert(_torch_net(), CFG), bad)


@pytest.mark.parametrize(
    ("other", "match"),
    [
        # same layer names, other shapes
        (lambda: nvmsim.convert(_torch_net(classes=4), CFG), r"weights do not fit the model"),
        # other layers
        (
            lambda: nvmsim.convert(nn.Sequential(nn.Linear(4, 2)), CFG),
            r"analog layers \['0', '2', '4'\] do not match the model's \['0'\]",
        ),
    ],
)
def test_other_architecture(saved, other, match):
    _, path = saved
    target = other()
    before = _snapshot(target)
    with pytest.raises(ChipError, match=match):
        load_chip(target, path)
    _same(before, _snapshot(target))


def test_other_config(saved):
    _, path = saved
    cfg = CFG.model_copy(update={"seed": 3})
    target = nvmsim.convert(_torch_net(seed=5), cfg)
    before = _snapshot(target)
    with pytest.raises(ChipError, match=r"layer '0' was programmed with another config \(seed: "):
        load_chip(target, path)
    _same(before, _snapshot(target))


def test_a_chip_saved_before_the_read_noise_stream_option_reads_on_the_serial_stream(
    saved, tmp_path
):
    """Files without ``read_noise_stream`` were read serially: they load into a model on the
    serial stream (bit-identically) and name the setting for any other."""
    model, path = saved
    tensors, meta = _read(path)
    layers = json.loads(meta["layers"])
    for entry in layers.values():
        entry["config"].pop("read_noise_stream")
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={**meta, "layers": json.dumps(layers)})
    blocked = nvmsim.convert(_torch_net(seed=5), CFG)
    with pytest.raises(ChipError, match=r"read_noise_stream: file 'serial', model 'blocked'"):
        load_chip(blocked, old)
    serial_cfg = CFG.model_copy(update={"read_noise_stream": "serial"})
    serial = load_chip(nvmsim.convert(_torch_net(seed=5), serial_cfg), old)
    again = load_chip(nvmsim.convert(_torch_net(seed=5), serial_cfg), old)
    with torch.no_grad():
        assert torch.equal(serial(_x()), again(_x()))


def _read(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_nan_in_weights_is_refused_before_anything_changes(saved, tmp_path):
    _, path = saved
    tensors, meta = _read(path)
    tensors["model/4.weight"][0, 0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    target = nvmsim.convert(_torch_net(seed=5), CFG)
    before = _snapshot(target)
    with pytest.raises(
        ChipError, match=r"the weights: tensor\(s\) \['4\.weight'\] contain NaN or inf"
    ):
        load_chip(target, bad)
    _same(before, _snapshot(target))


def test_bad_tile_state_leaves_the_model_unchanged(saved, tmp_path):
    """A chip whose last layer's conductances are corrupt (NaN) or of the wrong shape is
    refused, and ``load_chip`` promises that nothing is changed when the file does not fit."""
    _, path = saved
    tensors, meta = _read(path)
    tensors["tile/4/g0"][0, 0, 0, 0] = float("nan")
    bad = tmp_path / "nan_tile.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    target = nvmsim.convert(_torch_net(seed=5), CFG)
    before = _snapshot(target)
    with pytest.raises(ChipError, match=r"layer '4' tensor\(s\) \['g0'\] contain NaN or inf"):
        load_chip(target, bad)
    _same(before, _snapshot(target))


def test_missing_tile_state_leaves_the_model_unchanged(saved, tmp_path):
    _, path = saved
    tensors, meta = _read(path)
    del tensors["tile/4/nu"]
    bad = tmp_path / "no_nu.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    target = nvmsim.convert(_torch_net(seed=5), CFG)
    before = _snapshot(target)
    with pytest.raises(ChipError, match=r"layer '4' lacks its 'nu'"):
        load_chip(target, bad)
    _same(before, _snapshot(target))


def test_metadata_names_every_layer_and_its_config(saved):
    model, path = saved
    _, meta = _read(path)
    assert meta["format"] == "nvmsim-chip"
    layers = json.loads(meta["layers"])
    assert sorted(layers) == ["0", "2", "4"]
    assert layers["4"]["scalars"]["time"] == 100.0
    assert layers["4"]["config"] == model[4].config.model_dump(mode="json")


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ("[1, 2]", r"chip metadata 'layers' is malformed"),
        ("{", r"chip metadata 'layers' is malformed"),
        ("scalars", r"layer '0' scalars: wmax must be finite"),
    ],
)
def test_malformed_layer_metadata_is_refused(saved, tmp_path, layers, match):
    _, path = saved
    tensors, meta = _read(path)
    if layers == "scalars":  # the right config, a non-finite weight range
        entries = json.loads(meta["layers"])
        entries["0"]["scalars"]["wmax"] = float("inf")
        layers = json.dumps(entries)
    bad = tmp_path / "meta.safetensors"
    save_file(tensors, str(bad), metadata={**meta, "layers": layers})
    target = nvmsim.convert(_torch_net(seed=5), CFG)
    before = _snapshot(target)
    with pytest.raises(ChipError, match=match):
        load_chip(target, bad)
    _same(before, _snapshot(target))


def _edit(saved, tmp_path, tensors=None, scalars=None, meta_layers=None):
    """The saved chip with ``tensors`` edited (``None`` values delete) and layer 4's
    scalars updated, written to a new file."""
    _, path = saved
    data, meta = _read(path)
    for k, v in (tensors or {}).items():
        if v is None:
            del data[k]
        else:
            data[k] = v(data.get(k)) if callable(v) else v
    entries = json.loads(meta["layers"])
    entries["4"]["scalars"].update(scalars or {})
    entries["4"].update(meta_layers or {})
    meta = {**meta, "layers": json.dumps(entries)}
    bad = tmp_path / "edited.safetensors"
    save_file(data, str(bad), metadata=meta)
    return bad


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"tensors": {"generator/4": None}}, r"layer '4' lacks its read-noise generator state"),
        ({"tensors": {"generator/4": lambda t: torch.zeros_like(t)}}, r"generator state is"),
        ({"tensors": {"generator/4": lambda t: t[:-1].clone()}}, r"generator state is malform"),
        ({"tensors": {"generator/4": lambda t: t.float()}}, r"generator state is malformed"),
        ({"meta_layers": {"generator_device": [1]}}, r"generator_device must be a device"),
        ({"scalars": {"time": -1.0}}, r"scalars: time must be >= 0, got -1"),
        ({"scalars": {"wmax": 0.0}}, r"scalars: wmax must be > 0"),
        ({"scalars": {"wmax": 10**400}}, r"scalars: wmax is too large"),
        ({"scalars": {"wmax": True}}, r"scalars: wmax must be a number"),
        ({"tensors": {"tile/4/g0": lambda t: t > 0.5}}, r"'g0' has dtype torch\.bool, expected"),
        ({"tensors": {"tile/4/dead": lambda t: t.float()}}, r"'dead' has dtype torch\.float32"),
        ({"tensors": {"tile/4/g0": lambda t: t.double() * 1e300}}, r"\['g0'\] contain NaN or"),
        ({"tensors": {"tile/4/g0": lambda t: t.to(torch.complex64)}}, r"'g0' has dtype torch\.c"),
        ({"tensors": {"tile/4/adc_range": lambda t: -t}}, r"'adc_range' must be > 0"),
        ({"tensors": {"tile/4/adc_range": lambda t: t.reshape(-1)[:1]}}, r"'adc_range' has sha"),
        ({"tensors": {"tile/4/dac_range": lambda t: t.reshape(1)}}, r"'dac_range' has shape"),
        ({"tensors": {"tile/4/extra": torch.zeros(2)}}, r"unexpected tensor 'tile/4/extra'"),
        ({"tensors": {"model/4.weight": lambda t: t.double() * 1e300}}, r"the weights: tens"),
        ({"tensors": {"model/4.weight": lambda t: t.to(torch.int32)}}, r"has dtype torch\.int32"),
        ({"tensors": {"tile/4/g0": lambda t: t * 1e30}}, r"the programmed state does not read"),
    ],
)
def test_hostile_chip_files_are_refused_and_change_nothing(saved, tmp_path, edit, match):
    bad = _edit(saved, tmp_path, **edit)
    target = nvmsim.convert(_torch_net(seed=5), CFG)
    before = _snapshot(target)
    with pytest.raises(ChipError, match=match) as info:
        load_chip(target, bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    _same(before, _snapshot(target))
    assert all(layer.is_current() for layer in analog_layers(target))  # no reprogramming


def test_deeply_nested_metadata_is_refused(saved, tmp_path):
    _, path = saved
    data, meta = _read(path)
    bad = tmp_path / "deep.safetensors"
    save_file(data, str(bad), metadata={**meta, "layers": "[" * 100_000 + "]" * 100_000})
    with pytest.raises(ChipError, match=r"'layers' is malformed: nested too deeply"):
        load_chip(nvmsim.convert(_torch_net(seed=5), CFG), bad)
