"""``convert()``: what becomes analog, what stays digital and how that is reported."""

import warnings

import pytest
import torch
from torch import nn

from nvmsim.config import AnalogConfig, validate
from nvmsim.nn import (
    CONVERSION_MAP,
    AnalogConv1d,
    AnalogConv2d,
    AnalogLinear,
    UnconvertedError,
    analog_layers,
    convert,
    register,
)
from nvmsim.nn.attention import AnalogMultiheadAttention
from nvmsim.nn.base import AnalogMixin
from nvmsim.nn.owned import OwnedMatrix
from nvmsim.nn.recurrent import AnalogLSTM

NOISY = validate(AnalogConfig, {"device": "reram"})


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # (B, 4, T)
        h = self.norm(self.conv(x).transpose(1, 2))
        h, _ = self.lstm(h)
        h, _ = self.attn(h, h, h, need_weights=False)
        return self.head(h.mean(1))


@pytest.fixture
def restore_map():
    saved = dict(CONVERSION_MAP)
    yield
    CONVERSION_MAP.clear()
    CONVERSION_MAP.update(saved)


def test_unconverted_modules_are_named_in_a_warning():
    model = nn.Sequential(Mixed(), nn.Embedding(3, 6))
    with pytest.warns(UserWarning, match=r"1 module\(s\) with parameters stay digital: 1$"):
        analog = convert(model, NOISY)
    mixed = analog[0]
    assert isinstance(mixed.conv, AnalogConv1d) and isinstance(mixed.head, AnalogLinear)
    assert type(mixed.lstm) is AnalogLSTM and type(mixed.norm) is nn.LayerNorm
    # attention is converted whole: its projections are its own arrays, out_proj stays a
    # plain (bypassed) Linear holding the parameters
    assert type(mixed.attn) is AnalogMultiheadAttention
    out_proj = mixed.attn.out_proj
    assert isinstance(out_proj, nn.Linear) and not isinstance(out_proj, AnalogMixin)
    assert type(analog[1]) is nn.Embedding
    kinds = [type(m) for m in analog_layers(mixed)]
    assert kinds == [AnalogConv1d, OwnedMatrix, OwnedMatrix, *[OwnedMatrix] * 4, AnalogLinear]
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        assert not torch.allclose(mixed.attn(x, x, x)[0], model[0].attn(x, x, x)[0])
        y = mixed(torch.randn(2, 4, 5))
    assert y.shape == (2, 3)


def test_on_unconverted_error_and_ignore():
    with pytest.raises(UnconvertedError, match="stay digital: 0$"):
        convert(nn.Sequential(nn.Embedding(4, 8)), on_unconverted="error")
    assert issubclass(UnconvertedError, ValueError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analog = convert(Mixed(), on_unconverted="ignore")
    assert isinstance(analog.head, AnalogLinear)
    with pytest.raises(ValueError, match="on_unconverted must be 'warn', 'error' or 'ignore'"):
        convert(Mixed(), on_unconverted="raise")


def test_bare_parameters_and_embeddings_are_reported():
    class Owner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))
            self.emb = nn.Embedding(5, 8)
            self.enc = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
            self.fc = nn.Linear(8, 3)

    with pytest.warns(
        UserWarning, match=r"2 module\(s\) with parameters stay digital: Owner, emb$"
    ):
        analog = convert(Owner(), on_unconverted="warn")
    assert isinstance(analog.enc.linear1, AnalogLinear)  # the encoder layer converts inside
    assert isinstance(analog.fc, AnalogLinear)


def test_norms_are_digital_by_design_and_not_reported():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.Flatten(), nn.LayerNorm(16),
        nn.RMSNorm(16), nn.Linear(16, 2),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analog = convert(model)
    assert isinstance(analog[0], AnalogConv2d) and isinstance(analog[6], AnalogLinear)
    assert type(analog[1]) is nn.BatchNorm2d and type(analog[4]) is nn.LayerNorm


@pytest.mark.parametrize(
    ("exclude", "digital"),
    [
        (["head"], {"head"}),
        (["block"], {"block.0", "block.2"}),  # a name keeps the whole subtree
        (["block.*"], {"block.0", "block.2"}),
        (["*.2"], {"block.2"}),
        ([nn.Conv1d], {"block.0"}),
        ([nn.Linear], {"block.2", "head"}),
        (["head", nn.Conv1d], {"head", "block.0"}),
    ],
)
def test_exclude_by_name_glob_and_type(exclude, digital):
    model = nn.Sequential()
    model.add_module("block", nn.Sequential(nn.Conv1d(2, 2, 1), nn.ReLU(), nn.Linear(3, 3)))
    model.add_module("head", nn.Linear(3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analog = convert(model, exclude=exclude)
    for name in ("block.0", "block.2", "head"):
        m = analog.get_submodule(name)
        assert isinstance(m, AnalogMixin) == (name not in digital), name
        if name in digital:
            assert type(m) is type(model.get_submodule(name))


def test_excluded_modules_are_not_reported():
    model = nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analog = convert(model, exclude=["1"], on_unconverted="error")
    assert isinstance(analog[0], AnalogLinear) and type(analog[1]) is nn.LSTM


class MyLinear(nn.Linear):
    pass


class MyAnalogLinear(AnalogLinear):
    pass


def test_subclasses_convert_by_the_class_hierarchy():
    analog = convert(nn.Sequential(MyLinear(3, 2)))
    assert type(analog[0]) is AnalogLinear


def test_register_a_custom_mapping(restore_map):
    register(MyLinear, MyAnalogLinear)
    model = nn.Sequential(MyLinear(3, 2), nn.Linear(2, 2))
    analog = convert(model)
    assert type(analog[0]) is MyAnalogLinear and type(analog[1]) is AnalogLinear
    x = torch.randn(4, 3)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), model(x))


@pytest.mark.parametrize(
    ("torch_type", "analog_type", "match"),
    [
        (nn.Linear(2, 2), AnalogLinear, "torch_type must be an nn.Module class"),
        (int, AnalogLinear, "torch_type must be an nn.Module class"),
        (MyLinear, nn.Linear, "analog_type must be an analog layer class"),
        (MyLinear, AnalogLinear(2, 2), "analog_type must be an analog layer class"),
    ],
)
def test_register_refuses_bad_arguments(restore_map, torch_type, analog_type, match):
    with pytest.raises(TypeError, match=match):
        register(torch_type, analog_type)
    assert MyLinear not in CONVERSION_MAP


def test_original_model_is_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    analog = convert(model, NOISY)
    assert [type(m) for m in model] == [nn.Conv2d, nn.ReLU, nn.Flatten, nn.Linear]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert analog[0].weight is not model[0].weight
    # the analog copy starts from the same weights (torch's keys)
    assert analog.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(before[k], v) for k, v in analog.state_dict().items())


def test_a_root_layer_converts_to_an_analog_layer():
    ref = nn.Linear(4, 2)
    layer = convert(ref)
    assert isinstance(layer, AnalogLinear) and layer is not ref
    x = torch.randn(3, 4)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref(x))


def test_same_config_gives_the_same_programmed_instance():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4), nn.Linear(4, 2))
    a, b = convert(model, NOISY), convert(model, NOISY)
    for la, lb in zip(analog_layers(a), analog_layers(b), strict=True):
        assert torch.equal(la.tile.g0, lb.tile.g0)
    seeds = [layer.seed for layer in analog_layers(a)]
    assert len(set(seeds)) == len(seeds)  # each layer its own draw
    x = torch.randn(5, 2, 4, 4)
    with torch.no_grad():
        ya, yb = a(x), b(x)
        assert torch.equal(ya, yb)  # same read-noise streams too
        assert not torch.equal(ya, model(x))
        assert not torch.equal(a(x), ya)  # fresh noise on the next read
    other = convert(model, NOISY.model_copy(update={"seed": 1}))
    assert not torch.equal(other[2].tile.g0, a[2].tile.g0)


def test_conversion_errors_name_the_layer():
    model = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer '0': .*NaN or inf"):
        convert(model)


def test_converting_a_converted_model_keeps_its_chip():
    torch.manual_seed(0)
    once = convert(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)), NOISY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twice = convert(once, NOISY.model_copy(update={"seed": 9}))
    for a, b in zip(analog_layers(once), analog_layers(twice), strict=True):
        assert a is not b and a.seed == b.seed and torch.equal(a.tile.g0, b.tile.g0)
    x = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(once(x), twice(x))
