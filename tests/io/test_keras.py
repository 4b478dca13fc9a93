"""Keras import: files written in Keras's layouts by tests/io/keras_writer.py, checked
against a numpy forward pass written from Keras semantics (tests/io/reference.py)."""

from __future__ import annotations

import json
import zipfile

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import nvmsim
from nvmsim.io import KerasImportError, load_keras
from nvmsim.io.keras import ChannelsLastFlatten
from nvmsim.nn.activations import BoundedReLU
from nvmsim.nn.base import AnalogMixin
from tests.io import keras_writer as kw
from tests.io import reference as ref

RNG = np.random.default_rng(0)


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32) * 0.5


def _run(model: nn.Module, x_nhwc: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(x_nhwc.astype(np.float32))
    if x.ndim == 4:
        x = x.permute(0, 3, 1, 2)  # the torch model takes NCHW
    with torch.no_grad():
        y = model(x).numpy()
    return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y


# One writer per file layout: Keras 3 .keras, Keras 2 .h5, Keras 3 legacy .h5, each for a
# Sequential and a Functional model.
LAYOUTS = {
    "keras3-seq": lambda p, L, s: kw.write_keras3(p / "m.keras", L, s),
    "keras3-func": lambda p, L, s: kw.write_keras3(p / "m.keras", L, s, functional=True),
    "keras3-noname": lambda p, L, s: kw.write_keras3(p / "m.keras", L, s, name_attr=False),
    "tfkeras-zip": lambda p, L, s: kw.write_keras3(
        p / "m.keras", L, s, name_attr=False, container="_layer_checkpoint_dependencies"
    ),
    "keras2-h5-seq": lambda p, L, s: kw.write_legacy_h5(p / "m.h5", L, s),
    "keras2-h5-func": lambda p, L, s: kw.write_legacy_h5(p / "m.h5", L, s, functional=True),
    "keras2-h5-chunked": lambda p, L, s: kw.write_legacy_h5(p / "m.h5", L, s, chunk_attrs=True),
    "keras3-h5-seq": lambda p, L, s: kw.write_legacy_h5(p / "m.h5", L, s, keras2=False),
    "keras3-h5-func": lambda p, L, s: kw.write_legacy_h5(
        p / "m.h5", L, s, keras2=False, functional=True
    ),
}


def _mlp():
    k1, b1, k2, b2 = _w(12, 7), _w(7), _w(7, 4), _w(4)
    layers = [
        # names differ from the weights-file keys Keras 3 uses ("dense", "dense_1")
        kw.dense("hidden", k1, b1, activation="relu"),
        kw.dense("output", k2, b2, activation="softmax"),
    ]

    def forward(x):
        return ref.softmax(ref.dense(ref.relu(ref.dense(x, k1, b1)), k2, b2))

    return layers, (12,), forward


def _cnn():
    c1, cb1, c2, cb2 = _w(3, 3, 2, 3), _w(3), _w(2, 2, 3, 4), _w(4)
    # input 9x8 -> same conv 9x8 -> pool 4x4 -> valid 2x2 conv 3x3x4 -> 36 -> 5
    d, db = _w(36, 5), _w(5)
    layers = [
        kw.conv2d("conv2d", c1, cb1, padding="same", activation="relu"),
        kw.pool("max_pooling2d"),
        kw.conv2d("conv2d_1", c2, cb2, padding="valid"),
        kw.layer("Flatten", "flatten", data_format="channels_last"),
        kw.dense("dense", d, db),
    ]

    def forward(x):
        h = ref.relu(ref.conv2d(x, c1, cb1, padding="same"))
        h = ref.conv2d(ref.pool2d(h, 2), c2, cb2)
        return ref.dense(ref.flatten(h), d, db)

    return layers, (9, 8, 2), forward


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("net", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_round_trip_matches_numpy_reference(tmp_path, layout, net):
    layers, shape, forward = net()
    path = LAYOUTS[layout](tmp_path, layers, shape)
    model = load_keras(path)
    assert isinstance(model, nn.Sequential) and not model.training
    x = RNG.standard_normal((5, *shape))
    np.testing.assert_allclose(_run(model, x), forward(x), atol=1e-5, rtol=1e-5)


def test_old_keras2_sequential_config_as_a_list(tmp_path):
    """Keras <= 2.2: ``config`` is the list of layers; the first holds batch_input_shape."""
    layers, shape, forward = _mlp()
    path = kw.write_legacy_h5(tmp_path / "m.h5", layers, shape)
    entries = [{"class_name": lay.class_name, "config": dict(lay.config)} for lay in layers]
    entries[0]["config"]["batch_input_shape"] = [None, *shape]
    with h5py.File(path, "a") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": entries})
    x = RNG.standard_normal((3, *shape))
    np.testing.assert_allclose(_run(load_keras(path), x), forward(x), atol=1e-5)


def test_mlp_modules_and_drop_softmax(tmp_path):
    layers, shape, forward = _mlp()
    path = kw.write_keras3(tmp_path / "m.keras", layers, shape)
    model = load_keras(path)
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear, nn.Softmax]
    assert model[-1].dim == 1
    logits = load_keras(path, drop_softmax=True)
    assert not any(isinstance(m, nn.Softmax) for m in logits)
    x = RNG.standard_normal((3, 12))
    np.testing.assert_allclose(ref.softmax(_run(logits, x)), forward(x), atol=1e-5)


def test_cnn_is_plain_torch_and_converts_to_analog(tmp_path):
    layers, shape, _ = _cnn()
    model = load_keras(kw.write_keras3(tmp_path / "m.keras", layers, shape))
    kinds = [type(m) for m in model]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.Flatten, nn.Linear]
    analog = nvmsim.convert(model)
    assert isinstance(analog[0], AnalogMixin) and isinstance(analog[-1], AnalogMixin)
    assert analog(torch.zeros(2, 2, 9, 8)).shape == (2, 5)


def test_strided_same_conv_and_same_pools(tmp_path):
    """Odd 'same' padding (extra cell at the end) and pools that ignore padded cells."""
    c1, cb1 = _w(3, 3, 2, 3), _w(3)
    layers = [
        kw.conv2d("conv2d", c1, cb1, padding="same", strides=2, activation="tanh"),
        kw.pool("average_pooling2d", kind="Average", size=3, strides=2, padding="same"),
        kw.pool("max_pooling2d", size=2, padding="same"),
    ]
    path = kw.write_keras3(tmp_path / "m.keras", layers, (10, 7, 2))
    x = RNG.standard_normal((2, 10, 7, 2))
    h = np.tanh(ref.conv2d(x, c1, cb1, strides=2, padding="same"))  # 5x4
    h = ref.pool2d(h, 3, 2, "same", kind="avg")  # 3x2
    want = ref.pool2d(h, 2, 2, "same")  # 2x1
    np.testing.assert_allclose(_run(load_keras(path), x), want, atol=1e-5)


def test_flatten_without_dense_keeps_keras_order(tmp_path):
    c = _w(1, 1, 2, 3)
    layers = [kw.conv2d("conv2d", c), kw.layer("Flatten", "flatten")]
    model = load_keras(kw.write_keras3(tmp_path / "m.keras", layers, (2, 3, 2)))
    assert isinstance(model[-1], ChannelsLastFlatten)
    x = RNG.standard_normal((2, 2, 3, 2))
    np.testing.assert_allclose(_run(model, x), ref.flatten(ref.conv2d(x, c)), atol=1e-5)


def test_relu_max_value_one_is_bounded_relu_and_dropout_is_identity(tmp_path):
    k, b = _w(4, 3), _w(3)
    layers = [
        kw.dense("dense", k, b),
        kw.layer("Dropout", "dropout", rate=0.5),
        kw.layer("ReLU", "re_lu", max_value=1.0, negative_slope=0.0, threshold=0.0),
    ]
    model = load_keras(kw.write_legacy_h5(tmp_path / "m.h5", layers, (4,)))
    assert isinstance(model[-1], BoundedReLU)
    x = RNG.standard_normal((6, 4)) * 3
    np.testing.assert_allclose(_run(model, x), np.clip(ref.dense(x, k, b), 0, 1), atol=1e-5)


def test_batchnorm_and_global_pooling(tmp_path):
    c, g, b, mu, var = _w(3, 3, 2, 4), _w(4), _w(4), _w(4), np.abs(_w(4)) + 0.5
    d, g2, mu2, var2 = _w(4, 3), _w(3), _w(3), np.abs(_w(3)) + 0.5
    bn = [("gamma", g), ("beta", b), ("moving_mean", mu), ("moving_variance", var)]
    bn2 = [("gamma", g2), ("moving_mean", mu2), ("moving_variance", var2)]
    layers = [
        kw.conv2d("conv2d", c),
        kw.layer("BatchNormalization", "bn", bn, axis=-1, epsilon=1e-3),
        kw.layer("GlobalAveragePooling2D", "gap", data_format="channels_last"),
        kw.dense("dense", d),
        kw.layer("BatchNormalization", "bn2", bn2, axis=-1, epsilon=0.01, center=False),
    ]
    for path in (
        kw.write_keras3(tmp_path / "m.keras", layers, (6, 5, 2)),
        kw.write_legacy_h5(tmp_path / "m.h5", layers, (6, 5, 2)),
    ):
        x = RNG.standard_normal((3, 6, 5, 2))
        h = g * (ref.conv2d(x, c) - mu) / np.sqrt(var + 1e-3) + b
        h = ref.dense(h.mean(axis=(1, 2)), d)
        want = g2 * (h - mu2) / np.sqrt(var2 + 0.01)
        np.testing.assert_allclose(_run(load_keras(path), x), want, atol=1e-5)


# ------------------------------------------------------------------------------- errors


def _small(tmp_path, name="m.h5", **weights):
    k = weights.get("kernel", _w(4, 3))
    return kw.write_legacy_h5(tmp_path / name, [kw.dense("dense_7", k, _w(3))], (4,))


def test_keras_file_that_is_not_a_zip(tmp_path):
    path = tmp_path / "bad.keras"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(KerasImportError, match=r"bad\.keras.*not a zip"):
        load_keras(path)


def test_keras_zip_without_config(tmp_path):
    path = tmp_path / "noconf.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.weights.h5", b"")
    with pytest.raises(KerasImportError, match=r"noconf\.keras.*config\.json"):
        load_keras(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        load_keras("nope.h5")


def test_h5_without_model_config(tmp_path):
    path = _small(tmp_path)
    with h5py.File(path, "a") as f:
        del f.attrs["model_config"]
    with pytest.raises(KerasImportError, match=r"m\.h5.*model_config"):
        load_keras(path)


def test_h5_missing_layer_weights(tmp_path):
    path = _small(tmp_path)
    with h5py.File(path, "a") as f:
        del f["model_weights/dense_7"]
    with pytest.raises(KerasImportError, match=r"m\.h5.*'dense_7' \(Dense\).*no weights"):
        load_keras(path)


def test_h5_listed_weight_missing(tmp_path):
    path = _small(tmp_path)
    with h5py.File(path, "a") as f:
        del f["model_weights/dense_7/dense_7/bias:0"]
    with pytest.raises(KerasImportError, match=r"m\.h5.*'dense_7'.*bias:0.*missing"):
        load_keras(path)


def test_keras3_missing_layer_weights(tmp_path):
    layers, shape, _ = _mlp()
    layers[1].config["name"] = "head"  # neither the name nor the class key "dense_1" exists
    path = tmp_path / "m.keras"
    kw.write_keras3(path, layers[:1], shape)
    with zipfile.ZipFile(path) as z:
        weights = z.read("model.weights.h5")
    config = kw.model_config(layers, shape)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights)
    with pytest.raises(KerasImportError, match=r"m\.keras.*'head' \(Dense\).*no weights"):
        load_keras(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights(tmp_path, bad):
    k = _w(4, 3)
    k[2, 1] = bad
    with pytest.raises(KerasImportError, match=r"m\.h5.*'dense_7'.*kernel.*NaN/inf"):
        load_keras(_small(tmp_path, kernel=k))


def test_wrong_weight_shape(tmp_path):
    layers = [kw.dense("dense", _w(4, 3), _w(3)), kw.dense("dense_1", _w(5, 2), _w(2))]
    path = kw.write_keras3(tmp_path / "m.keras", layers, (4,))
    with pytest.raises(KerasImportError, match=r"m\.keras.*'dense_1'.*\(5, 2\).*\(3, 2\)"):
        load_keras(path)


def test_wrong_bias_shape(tmp_path):
    layers = [kw.conv2d("conv2d", _w(3, 3, 1, 2), _w(5))]
    path = kw.write_legacy_h5(tmp_path / "m.h5", layers, (5, 5, 1))
    with pytest.raises(KerasImportError, match=r"'conv2d' \(Conv2D\): bias.*\(5,\).*\(2,\)"):
        load_keras(path)


def test_unsupported_layer(tmp_path):
    lstm = kw.layer("ConvLSTM2D", "lstm", weights=[("kernel", _w(4, 8))], filters=2)
    path = kw.write_keras3(tmp_path / "m.keras", [lstm], (3, 4))
    with pytest.raises(KerasImportError, match=r"m\.keras.*'lstm' \(ConvLSTM2D\).*not supported"):
        load_keras(path)


def test_unsupported_activation(tmp_path):
    layers = [kw.dense("dense", _w(4, 3), _w(3), activation="mish_custom")]
    path = kw.write_keras3(tmp_path / "m.keras", layers, (4,))
    with pytest.raises(KerasImportError, match=r"'dense'.*activation 'mish_custom'"):
        load_keras(path)


def test_branching_functional_model_is_refused(tmp_path):
    layers, shape, _ = _mlp()
    config = kw.model_config(layers, shape, functional=True)
    add = {
        "class_name": "Add",
        "config": {"name": "add"},
        "name": "add",
        "inbound_nodes": [[["hidden", 0, 0, {}], ["output", 0, 0, {}]]],
    }
    config["config"]["layers"].append(add)
    config["config"]["output_layers"] = [["add", 0, 0]]
    path = tmp_path / "m.h5"
    kw.write_legacy_h5(path, layers, shape, functional=True)
    with h5py.File(path, "a") as f:
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(KerasImportError, match=r"m\.h5.*'add' \(Add\) has 2 inputs"):
        load_keras(path)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(KerasImportError, match=r"junk\.bin.*neither"):
        load_keras(path)
