"""Keras sequence, depthwise and embedding layers: bad files and fields refused in one line,
paper 000's RNN as a MosaicsRNN, imported models on crossbars."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from nvmsim.config import AnalogConfig, validate
from nvmsim.io import KerasImportError, load_keras
from nvmsim.io.keras_modules import KerasBidirectional, KerasRecurrent
from nvmsim.nn import analog_layers, convert, summary
from nvmsim.nn.mosaics import MosaicsRNN

FIXTURES = Path(__file__).parent / "fixtures"


def _edit_h5(tmp_path, name: str, layer: str, change: dict | None = None, weight=None):
    """A copy of fixture ``name`` (legacy .h5) with ``change`` merged into the config of
    ``layer`` and/or weight ``(suffix, array)`` of that layer replaced."""
    dst = tmp_path / name
    shutil.copy(FIXTURES / name, dst)
    with h5py.File(dst, "r+") as f:
        if change is not None:
            cfg = json.loads(f.attrs["model_config"])
            for entry in cfg["config"]["layers"]:
                if entry["config"].get("name") == layer:
                    entry["config"].update(change)
            f.attrs["model_config"] = json.dumps(cfg)
        if weight is not None:
            suffix, arr = weight
            group = f["model_weights"][layer]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            (path,) = [n for n in names if n.endswith(suffix)]
            del group[path]
            group[path] = arr
    return dst


@pytest.mark.parametrize(
    ("layer", "change", "match"),
    [
        ("simple_rnn_1", {"activation": "sigmoid"}, r"activation 'sigmoid' is not supported"),
        ("simple_rnn_2", {"return_state": True}, r"return_state=True is not supported"),
        ("lstm", {"recurrent_activation": "hard_sigmoid"}, r"recurrent_activation='hard_sig"),
        ("lstm", {"units": 0}, r"units=0 is not valid"),
        ("lstm", {"units": 7}, r"kernel has shape \(5, 32\), expected \(5, 28\)"),
    ],
)
def test_bad_recurrent_fields(tmp_path, layer, change, match):
    name = "seq_rnn.h5" if layer.startswith("simple_rnn") else "seq_lstm.h5"
    path = _edit_h5(tmp_path, name, layer, change)
    with pytest.raises(KerasImportError, match=rf"{name}: layer '{layer}' .*{match}"):
        load_keras(path)


@pytest.mark.parametrize(
    ("name", "layer", "change", "match"),
    [
        ("seq_bidir.h5", "bidirectional", {"merge_mode": None}, r"merge_mode=None"),
        ("seq_bidir.h5", "bidirectional", {"layer": {"class_name": "Dense", "config": {}}},
         r"wraps 'Dense'"),
        ("seq_embed.h5", "embedding", {"mask_zero": True}, r"mask_zero=True"),
        ("seq_embed.h5", "layer_normalization_2", {"axis": [1]}, r"axis=\[1\] is not supp"),
        ("seq_embed.h5", "layer_normalization_2", {"rms_scaling": True}, r"rms_scaling"),
        ("seq_conv1d.h5", "conv1d", {"padding": "full"}, r"padding='full' is not supported"),
        ("seq_conv1d.h5", "conv1d", {"kernel_size": [10**9]}, r"kernel_size=\[1000000000\]"),
        ("seq_separable.h5", "depthwise_conv2d", {"depth_multiplier": 3},
         r"kernel has shape \(3, 3, 3, 2\), expected \(3, 3, 3, 3\)"),
    ],
)  # fmt: skip
def test_bad_layer_fields(tmp_path, name, layer, change, match):
    path = _edit_h5(tmp_path, name, layer, change)
    with pytest.raises(KerasImportError, match=rf"{name}: layer '{layer}' .*{match}"):
        load_keras(path)


def test_non_finite_recurrent_weight_is_refused(tmp_path):
    rk = np.ones((4, 12), np.float32)
    rk[1, 2] = np.nan
    path = _edit_h5(tmp_path, "seq_gru.h5", "gru_1", weight=("recurrent_kernel", rk))
    with pytest.raises(KerasImportError, match=r"'gru_1' \(GRU\).*'recurrent_kernel' has 1 NaN"):
        load_keras(path)


def test_a_sequence_layer_on_an_image_is_refused(tmp_path):
    path = _edit_h5(tmp_path, "seq_lstm.h5", "input_layer_4", {"batch_shape": [None, 6, 5, 1]})
    with pytest.raises(KerasImportError, match=r"expects a sequence input \(T, C\)"):
        load_keras(path)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_paper_000_rnn_loads_as_one_core_array(ext):
    model = load_keras(FIXTURES / f"seq_mosaics.{ext}")
    (net,) = model.children()
    assert isinstance(net, MosaicsRNN)
    assert (net.t, net.chunk, net.hidden) == (4, 6, 5)
    assert net.core.weight.shape == (5, 11)  # [x_chunk, h] -> D: the paper's single array
    x = torch.from_numpy(np.load(FIXTURES / "seq_mosaics_x.npy"))
    want = np.load(FIXTURES / "seq_mosaics_y.npy")
    np.testing.assert_allclose(net(x.reshape(3, 24)).detach().numpy(), want, atol=1e-5)


def test_a_tanh_rnn_is_not_a_mosaics_rnn(tmp_path):
    path = _edit_h5(tmp_path, "seq_mosaics.h5", "simple_rnn", {"activation": "tanh"})
    (mod, _) = load_keras(path).children()
    assert isinstance(mod, KerasRecurrent)


@pytest.mark.parametrize("stem", ["seq_lstm", "seq_gru", "seq_bidir", "seq_conv1d",
                                  "seq_separable", "seq_embed"])  # fmt: skip
def test_imported_models_on_crossbars(stem):
    model = load_keras(FIXTURES / f"{stem}.keras")
    x = torch.from_numpy(np.load(FIXTURES / f"{stem}_x.npy"))
    x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x
    with torch.no_grad():
        want = model(x)
        if stem == "seq_embed":  # the lookup table has no products: digital, and said so
            with pytest.warns(UserWarning, match=r"stay digital: embedding$"):
                ideal = convert(model, AnalogConfig())
        else:
            ideal = convert(model, AnalogConfig(), on_unconverted="error")
        torch.testing.assert_close(ideal(x), want, rtol=1e-5, atol=1e-5)
        noisy_cfg = {"device": {"read_noise": {"kind": "proportional", "sigma": 0.1}}}
        noisy = convert(model, validate(AnalogConfig, noisy_cfg), on_unconverted="ignore")
        assert (noisy(x) - want).abs().max() > 1e-3
    rows = summary(noisy).rows
    assert any(r.analog for r in rows) and analog_layers(noisy)


def test_bidirectional_halves_are_separate_crossbars():
    model = convert(load_keras(FIXTURES / "seq_bidir.h5"), AnalogConfig())
    bidi = model[0]
    assert isinstance(bidi, KerasBidirectional)
    fwd, bwd = bidi.forward_layer.rnn, bidi.backward_layer.rnn
    assert type(fwd).__name__ == type(bwd).__name__ == "AnalogLSTM"
    assert not torch.equal(fwd.weight_ih_l0, bwd.weight_ih_l0)


def test_reshaped_input_reads_images_of_the_declared_size():
    model = load_keras(FIXTURES / "seq_lstm.h5")
    assert model.input_shape == (6, 5)
    x = torch.from_numpy(np.load(FIXTURES / "seq_lstm_x.npy"))
    with torch.no_grad():
        torch.testing.assert_close(model.reshaped_input()(x.reshape(3, 1, 6, 5)), model(x))
    cnn = load_keras(FIXTURES / "cnn.h5")
    assert cnn.input_shape == (8, 7, 2) and cnn.reshaped_input() is cnn  # NCHW already
