"""Keras import of malformed and hostile files: every one is a one-line KerasImportError that
names the file and what is wrong, quickly, without reading (or allocating) what a file only
declares."""

from __future__ import annotations

import json
import math
import struct
import time
import zipfile

import h5py
import numpy as np
import pytest
from torch import nn

from nvmsim.io import KerasImportError, load_keras
from tests.io import keras_writer as kw

RNG = np.random.default_rng(1)


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32) * 0.5


def _bn(c: int, variance=None) -> list:
    """BatchNormalization weights for ``c`` channels."""
    variance = _w(c) ** 2 + 0.1 if variance is None else variance
    return [
        ("gamma", _w(c)),
        ("beta", _w(c)),
        ("moving_mean", _w(c)),
        ("moving_variance", variance),
    ]


def _refused(path, pattern: str, quick: bool = False) -> None:
    """Load ``path``: a one-line KerasImportError naming the file and matching ``pattern``
    (``quick``: in well under a second)."""
    start = time.perf_counter()
    with pytest.raises(KerasImportError, match=pattern) as info:
        load_keras(path)
    assert not quick or time.perf_counter() - start < 1.0
    assert "\n" not in str(info.value) and str(path) in str(info.value)


# --------------------------------------------------------------- memory a file only declares

HUGE = (300_000, 130_000)  # 156 GB of float32


def _huge_dense(units=HUGE[1], n_in=HUGE[0], compression=None):
    kernel = kw.Declared(HUGE, compression)
    layer = kw.dense("dense", kernel, kw.Declared((HUGE[1],), compression))
    layer.config["units"] = units
    return [layer], (n_in,)


@pytest.mark.parametrize("suffix", ["h5", "keras"])
def test_huge_declared_weight_is_refused_before_reading(tmp_path, suffix):
    """The config agrees with the 156 GB kernel, but the file stores one 16 kB chunk of it."""
    layers, shape = _huge_dense()
    write = kw.write_legacy_h5 if suffix == "h5" else kw.write_keras3
    path = write(tmp_path / f"m.{suffix}", layers, shape)
    assert path.stat().st_size < 100_000
    declared = r"declares \(300000, 130000\) float32 \(156000000000 bytes\)"
    _refused(
        path,
        rf"'dense' \(Dense\): weight 'kernel' {declared} but the file stores 16384",
        quick=True,
    )


def test_huge_compressed_weight_is_refused_by_the_bound(tmp_path):
    layers, shape = _huge_dense(compression="gzip")
    path = kw.write_keras3(tmp_path / "m.keras", layers, shape)
    _refused(
        path, r"'dense'.*'kernel' declares 156000000000 bytes, more than the 4294967296", quick=True
    )


def test_declared_shape_is_compared_with_the_config_first(tmp_path):
    layers, _ = _huge_dense(units=3, n_in=4)
    path = kw.write_legacy_h5(tmp_path / "m.h5", layers, (4,))
    _refused(path, r"'dense'.*kernel has shape \(300000, 130000\), expected \(4, 3\)", quick=True)


def test_huge_units_in_the_config_is_refused_by_the_stored_shape(tmp_path):
    layer = kw.dense("dense", _w(4, 3), _w(3))
    layer.config["units"] = 10**9
    path = kw.write_keras3(tmp_path / "m.keras", [layer], (4,))
    _refused(path, r"'dense'.*kernel has shape \(4, 3\), expected \(4, 1000000000\)", quick=True)


def _patch_central_entry(path, member: str, offset: int, fmt: str, value: int) -> None:
    """Overwrite one field of ``member``'s entry in the zip's central directory."""
    data = bytearray(path.read_bytes())
    i = data.find(b"PK\x01\x02")
    while data[i + 46 : i + 46 + struct.unpack_from("<H", data, i + 28)[0]] != member.encode():
        i = data.find(b"PK\x01\x02", i + 1)
        assert i >= 0, f"no {member} in the central directory"
    struct.pack_into(fmt, data, i + offset, value)
    path.write_bytes(bytes(data))


def _mlp_keras(tmp_path):
    return kw.write_keras3(tmp_path / "m.keras", [kw.dense("dense", _w(4, 3), _w(3))], (4,))


def test_keras_member_declaring_a_huge_size_is_refused(tmp_path):
    path = _mlp_keras(tmp_path)
    _patch_central_entry(path, "config.json", 24, "<I", 0xFFFFFFF0)  # uncompressed size
    _refused(
        path, r"'config\.json' unpacks to 4294967280 bytes, more than the 67108864", quick=True
    )


def test_encrypted_keras_member(tmp_path):
    path = _mlp_keras(tmp_path)
    _patch_central_entry(path, "model.weights.h5", 8, "<H", 0x1)  # "encrypted" flag
    _refused(path, r"m\.keras: corrupted \.keras archive, cannot read 'model\.weights\.h5'")


def test_weight_linked_from_another_file_is_refused(tmp_path):
    other = tmp_path / "secret.h5"
    with h5py.File(other, "w") as f:
        f["k"] = _w(4, 3)
    path = kw.write_legacy_h5(tmp_path / "m.h5", [kw.dense("dense_7", _w(4, 3), _w(3))], (4,))
    with h5py.File(path, "a") as f:
        del f["model_weights/dense_7/dense_7/kernel:0"]
        f["model_weights/dense_7/dense_7/kernel:0"] = h5py.ExternalLink(str(other), "/k")
    _refused(path, r"'dense_7'.*'kernel' is stored outside the file")


# ------------------------------------------------------------------------- NaN/inf anywhere


@pytest.mark.parametrize("suffix", ["h5", "keras"])
@pytest.mark.parametrize("weight", ["gamma", "beta", "moving_mean", "moving_variance"])
def test_non_finite_batchnorm_weights(tmp_path, suffix, weight):
    values = dict(_bn(3))
    values[weight][1] = np.inf if weight == "moving_variance" else np.nan
    bn = kw.layer("BatchNormalization", "bn", list(values.items()), axis=-1, epsilon=1e-3)
    layers = [kw.dense("dense", _w(4, 3), _w(3)), bn]
    write = kw.write_legacy_h5 if suffix == "h5" else kw.write_keras3
    path = write(tmp_path / f"m.{suffix}", layers, (4,))
    _refused(path, rf"'bn' \(BatchNormalization\): weight '{weight}' has 1 NaN/inf")


def test_float64_weight_beyond_float32_range(tmp_path):
    kernel = _w(4, 3).astype(np.float64)
    kernel[0, 0] = 1e300  # finite in the file, inf once float32
    path = kw.write_keras3(tmp_path / "m.keras", [kw.dense("dense", kernel, _w(3))], (4,))
    _refused(path, r"'dense'.*'kernel' has 1 NaN/inf")


def test_negative_moving_variance(tmp_path):
    bn = kw.layer("BatchNormalization", "bn", _bn(3, variance=-np.ones(3, "f4")))
    layers = [kw.dense("dense", _w(4, 3), _w(3)), bn]
    path = kw.write_legacy_h5(tmp_path / "m.h5", layers, (4,))
    _refused(path, r"'bn'.*moving_variance \+ epsilon must be > 0")


# ------------------------------------------------------------------------ invalid configs


def _zoo():
    """One layer of every kind with numeric config fields; input 8x8x2."""
    return [
        kw.conv2d("conv", _w(3, 3, 2, 4), _w(4), padding="same"),
        kw.layer(
            "BatchNormalization", "bn", _bn(4), axis=-1, epsilon=1e-3, center=True, scale=True
        ),
        kw.layer("ReLU", "relu", max_value=None, negative_slope=0.0, threshold=0.0),
        kw.layer("ZeroPadding2D", "pad", padding=[[1, 1], [1, 1]]),  # 10x10
        kw.pool("pool"),  # 5x5
        kw.pool("avg", kind="Average", size=2, strides=1, padding="valid"),  # 4x4
        kw.layer("ELU", "elu", alpha=1.0),
        kw.layer("LeakyReLU", "leaky", negative_slope=0.1),
        kw.layer("GlobalAveragePooling2D", "gap", keepdims=False),
        kw.dense("dense", _w(4, 3), _w(3)),
        kw.layer("Dropout", "drop", rate=0.5),
        kw.layer("Activation", "act", activation="tanh"),
        kw.layer("Softmax", "softmax", axis=-1),
    ]


def test_zoo_loads(tmp_path):
    model = load_keras(kw.write_legacy_h5(tmp_path / "m.h5", _zoo(), (8, 8, 2)))
    assert isinstance(model, nn.Sequential) and len(model) == 14


BAD_FIELDS = [
    ("conv", "strides", 0),
    ("conv", "strides", [1, -1]),
    ("conv", "kernel_size", 0),
    ("conv", "kernel_size", [3, 3.5]),
    ("conv", "dilation_rate", 0),
    ("conv", "filters", -4),
    ("conv", "groups", 0),
    ("conv", "padding", "full"),
    ("conv", "use_bias", "false"),
    ("bn", "epsilon", math.nan),
    ("bn", "epsilon", "0.001"),
    ("bn", "axis", "last"),
    ("bn", "center", 1),
    ("relu", "max_value", -1.0),
    ("relu", "threshold", math.inf),
    ("pad", "padding", -1),
    ("pad", "padding", [[1, 1], [1, "x"]]),
    ("pad", "padding", 10**6),
    ("pool", "pool_size", 0),
    ("pool", "pool_size", 11),  # larger than the 10x10 input
    ("pool", "strides", [2]),
    ("avg", "padding", 3),
    ("elu", "alpha", math.inf),
    ("leaky", "negative_slope", math.nan),
    ("gap", "keepdims", "yes"),
    ("dense", "units", "3"),
    ("dense", "units", 0),
    ("dense", "activation", [1]),
    ("drop", "rate", 1.5),
    ("softmax", "axis", "x"),
]


@pytest.mark.parametrize(("name", "key", "value"), BAD_FIELDS, ids=lambda v: str(v))
def test_invalid_layer_config_field(tmp_path, name, key, value):
    layers = _zoo()
    next(lay for lay in layers if lay.name == name).config[key] = value
    path = kw.write_legacy_h5(tmp_path / "m.h5", layers, (8, 8, 2))
    what = "the window" if (name, value) == ("pool", 11) else f"{key}[= ]"
    _refused(path, rf"m\.h5: layer '{name}' \(\w+\): {what}")


# ------------------------------------------------------------- malformed files and configs


@pytest.mark.parametrize(
    ("name", "data", "pattern"),
    [
        ("empty.h5", b"", "neither a .keras zip archive nor"),
        ("empty.keras", b"", r"not a valid \.keras file"),
        ("noise.h5", bytes(RNG.integers(0, 256, 4096, dtype=np.uint8)), "neither"),
        ("other.keras", None, r"\.keras archive has no 'config\.json'"),
    ],
)
def test_not_a_keras_file(tmp_path, name, data, pattern):
    path = tmp_path / name
    if data is None:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "not a model")
    else:
        path.write_bytes(data)
    _refused(path, pattern)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
@pytest.mark.parametrize("suffix", ["h5", "keras"])
def test_truncated_file(tmp_path, suffix, keep):
    layers = [kw.dense("dense", _w(40, 30), _w(30))]
    write = kw.write_legacy_h5 if suffix == "h5" else kw.write_keras3
    path = write(tmp_path / f"m.{suffix}", layers, (40,))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    _refused(path, rf"m\.{suffix}: ")


def _functional_h5(tmp_path, mutate):
    """A functional model's legacy .h5 whose model_config is ``mutate(config)``."""
    layers = [kw.dense("hidden", _w(4, 3), _w(3)), kw.dense("out", _w(3, 2), _w(2))]
    path = kw.write_legacy_h5(tmp_path / "m.h5", layers, (4,), functional=True, keras2=False)
    config = kw.model_config(layers, (4,), functional=True)
    with h5py.File(path, "a") as f:
        f.attrs["model_config"] = mutate(config)
    return path


def _set(path: str, value):
    def mutate(config):
        *keys, last = path.split(".")
        obj = config
        for k in keys:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        obj[last] = value
        return json.dumps(config)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda c: "{" * 10 + "not json", "'model_config' is not valid JSON"),
        (lambda c: "[" * 100_000 + "]" * 100_000, "'model_config' is not valid JSON: nested"),
        (lambda c: json.dumps([c]), "model config has no 'class_name'"),
        (_set("class_name", ["Functional"]), r"model class \['Functional'\] is not supported"),
        (_set("config", [1, 2]), "model config has no list of layers"),
        (_set("config.layers", {"a": 1}), "model config has no list of layers"),
        (_set("config.layers.1.config", [1]), "malformed layer entry"),
        (_set("config.layers.1.inbound_nodes", 5), r"'hidden' has malformed 'inbound_nodes'"),
        (_set("config.layers.0.config.batch_shape", [None, "4"]), "input shape .* positive"),
        (_set("config.layers.0.config.batch_shape", [None, -4]), "input shape .* positive"),
        (_set("config.layers.0.config.batch_shape", [None, 10**6]), r"expected \(1000000, 3\)"),
    ],
)
def test_malformed_model_config(tmp_path, mutate, pattern):
    path = _functional_h5(tmp_path, mutate)
    _refused(path, rf"m\.h5: .*{pattern}")


def test_keras_config_json_of_wrong_types(tmp_path):
    path = _mlp_keras(tmp_path)
    with zipfile.ZipFile(path) as z:
        weights = z.read("model.weights.h5")
    cases = [
        (b"\xff\xfe", "config.json is not valid JSON"),
        (b'{"class_name": "Sequential", "config": 7}', "no list of layers"),
    ]
    for config, pattern in cases:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", config)
            z.writestr("model.weights.h5", weights)
        _refused(path, pattern)


def test_weight_that_is_a_group_or_of_strings(tmp_path):
    path = kw.write_legacy_h5(tmp_path / "m.h5", [kw.dense("dense_7", _w(4, 3), _w(3))], (4,))
    with h5py.File(path, "a") as f:
        del f["model_weights/dense_7/dense_7/bias:0"]
        f.create_dataset("model_weights/dense_7/dense_7/bias:0", data=np.array([b"a", b"b", b"c"]))
    _refused(path, r"'dense_7'.*weight 'bias' has non-numeric dtype")
    with h5py.File(path, "a") as f:
        del f["model_weights/dense_7"]
        f["model_weights/dense_7"] = np.zeros(3)
    _refused(path, r"'dense_7'.*is not an HDF5 group")


def test_build_config_of_another_type_is_ignored(tmp_path):
    path = _functional_h5(tmp_path, _set("build_config", [1]))  # the InputLayer gives the shape
    assert [type(m) for m in load_keras(path)] == [nn.Linear, nn.Linear]


def test_layer_named_like_a_module_attribute(tmp_path):
    """A layer called "forward" must not clash with nn.Sequential's own attributes."""
    layers = [kw.dense("forward", _w(4, 3), _w(3)), kw.dense("training", _w(3, 2), _w(2))]
    model = load_keras(kw.write_legacy_h5(tmp_path / "m.h5", layers, (4,)))
    assert [type(m) for m in model] == [nn.Linear, nn.Linear]
    assert callable(model.forward) and model.training is False
