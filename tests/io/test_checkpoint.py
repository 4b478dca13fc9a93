"""Checkpoints: round trip, refusal of mismatched / damaged files, atomic writes."""

from __future__ import annotations

import json
import math
import os
import time

import pytest
import torch
from safetensors.torch import save as st_save
from safetensors.torch import save_file
from torch import nn

import nvmsim
from nvmsim.config import AnalogConfig
from nvmsim.io import CheckpointError, load_checkpoint, read_checkpoint_info, save_checkpoint
from nvmsim.io.checkpoint import _digest
from nvmsim.models import build


def _mlp(seed=0):
    torch.manual_seed(seed)
    return build("mlp128")


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip(tmp_path):
    model = _mlp()
    path = tmp_path / "mlp.safetensors"
    training = {"epochs": 3, "lr": 1e-3, "sigma_neu": 0.0}
    save_checkpoint(model, path, arch={"name": "mlp128"}, training=training, metrics=[0.97])
    assert sorted(os.listdir(tmp_path)) == ["mlp.safetensors"]  # no temp or sidecar files

    loaded, info = load_checkpoint(path)
    assert _same_weights(model, loaded) and not loaded.training
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model.eval()(x), loaded(x))
    assert info["arch"] == {"name": "mlp128"}
    assert info["training"] == training and info["metrics"] == [0.97]
    assert info["nvmsim_version"] == nvmsim.__version__
    assert read_checkpoint_info(path) == info


def test_kwargs_custom_builder_and_module_target(tmp_path):
    model = build("mlp128", sigma_neu=0.1)
    path = tmp_path / "c.st"
    save_checkpoint(model, path, arch={"name": "mlp128", "kwargs": {"sigma_neu": 0.1}})
    loaded, _ = load_checkpoint(path)
    assert _same_weights(model, loaded)
    assert loaded[2].sigma == 0.1  # the NoisyActivation got its kwargs back

    calls = []

    def builder(name, **kwargs):
        calls.append((name, kwargs))
        return build(name, **kwargs)

    loaded, _ = load_checkpoint(path, build=builder)
    # called twice: on the meta device to check the shapes, then for real
    assert calls == [("mlp128", {"sigma_neu": 0.1})] * 2 and _same_weights(model, loaded)

    target = build("mlp128")
    loaded, _ = load_checkpoint(path, build=target)
    assert loaded is target and _same_weights(model, target)


def test_pydantic_training_config_is_stored_as_json(tmp_path):
    path = tmp_path / "c.st"
    save_checkpoint(_mlp(), path, arch={"name": "mlp128"}, training=AnalogConfig())
    info = read_checkpoint_info(path)
    assert info["training"] == AnalogConfig().model_dump(mode="json")
    assert AnalogConfig.model_validate(info["training"]) == AnalogConfig()


def test_tied_weights_can_be_saved(tmp_path):
    a = nn.Linear(3, 3)
    model = nn.Sequential(a, nn.ReLU(), nn.Linear(3, 3))
    model[2].weight = a.weight  # shared storage: safetensors alone would refuse
    path = tmp_path / "tied.st"
    save_checkpoint(model, path, arch={"name": "tied"})
    fresh = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3))
    loaded, _ = load_checkpoint(path, build=fresh)
    assert torch.equal(loaded[2].weight, a.weight)


def test_mismatched_shapes_refused(tmp_path):
    path = tmp_path / "mlp.st"
    save_checkpoint(_mlp(), path, arch={"name": "mlp128"})
    with pytest.raises(CheckpointError, match=r"mlp\.st.*1\.weight: file \(128, 784\)"):
        load_checkpoint(path, build=lambda name, **kw: build("mlp300"))


def test_missing_and_extra_tensors_refused(tmp_path):
    path = tmp_path / "small.st"
    save_checkpoint(nn.Sequential(nn.Linear(2, 2)), path, arch={"name": "x"})
    bigger = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match=r"small\.st.*missing tensors \['1\.weight'"):
        load_checkpoint(path, build=bigger)
    save_checkpoint(bigger, path, arch={"name": "x"})
    with pytest.raises(CheckpointError, match=r"small\.st.*unexpected tensors \[.*'1\.weight'"):
        load_checkpoint(path, build=nn.Sequential(nn.Linear(2, 2)))


def test_unknown_model_name(tmp_path):
    path = tmp_path / "c.st"
    save_checkpoint(_mlp(), path, arch={"name": "no_such_net"})
    with pytest.raises(CheckpointError, match=r"c\.st.*cannot build model 'no_such_net'"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0.5, 0.99, 20, 4])
def test_truncated_file_refused(tmp_path, keep):
    path = tmp_path / "mlp.st"
    save_checkpoint(_mlp(), path, arch={"name": "mlp128"})
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(CheckpointError, match=r"mlp\.st.*truncated or corrupted"):
        load_checkpoint(path)


def test_corrupted_data_refused(tmp_path):
    path = tmp_path / "mlp.st"
    save_checkpoint(_mlp(), path, arch={"name": "mlp128"})
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x40  # a flipped bit inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"mlp\.st.*checksum mismatch"):
        load_checkpoint(path)


def test_plain_safetensors_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.st"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match=r"plain\.st.*not an nvmsim checkpoint"):
        load_checkpoint(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nothing_here.st"):
        load_checkpoint("nothing_here.st")


def test_bad_arch_and_unserialisable_config(tmp_path):
    path = tmp_path / "c.st"
    with pytest.raises(CheckpointError, match="arch must be a dict"):
        save_checkpoint(_mlp(), path, arch={"kwargs": {}})
    with pytest.raises(CheckpointError, match=r"c\.st: training is not JSON-serialisable"):
        save_checkpoint(_mlp(), path, arch={"name": "mlp128"}, training={"f": object()})
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_old_checkpoint_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "mlp.st"
    old = _mlp(seed=1)
    save_checkpoint(old, path, arch={"name": "mlp128"})
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(_mlp(seed=2), path, arch={"name": "mlp128"})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["mlp.st"] and path.read_bytes() == before
    loaded, _ = load_checkpoint(path)
    assert _same_weights(old, loaded)

    save_checkpoint(_mlp(seed=2), path, arch={"name": "mlp128"})  # overwrite works
    assert _same_weights(_mlp(seed=2), load_checkpoint(path)[0])
    assert os.listdir(tmp_path) == ["mlp.st"]


# ---------------------------------------------------------------- hostile checkpoint files


def _refused(path, pattern: str, quick: bool = False, **kw) -> None:
    """``load_checkpoint``: a one-line CheckpointError naming the file and matching ``pattern``
    (``quick``: in well under a second)."""
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path, **kw)
    assert not quick or time.perf_counter() - start < 1.0
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def _forge(path, tensors: dict, info) -> None:
    """A checkpoint with any tensors and ``info`` (a string: written as is), checksum valid."""
    meta = {
        "format": "nvmsim-checkpoint",
        "format_version": "1",
        "sha256": _digest(tensors),
        "info": info if isinstance(info, str) else json.dumps(info),
    }
    path.write_bytes(st_save(tensors, metadata=meta))


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.BatchNorm1d(4))


@pytest.mark.parametrize(
    ("key", "bad"), [("1.bias", math.nan), ("2.running_var", math.inf), ("0.weight", -math.inf)]
)
def test_non_finite_tensor_refused_naming_it(tmp_path, key, bad):
    model = _net()
    model.state_dict()[key].view(-1)[1] = bad  # digital parts too: a bias, a running variance
    path = tmp_path / "c.st"
    with pytest.raises(CheckpointError, match=rf"not saved: tensor\(s\) \['{key}'\] contain"):
        save_checkpoint(model, path, arch={"name": "x"})  # nobody could load it again
    assert not path.exists()
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    _forge(path, tensors, {"arch": {"name": "x"}})  # written by something else
    _refused(path, rf"c\.st: tensor\(s\) \['{key}'\] contain NaN or inf", build=_net())


@pytest.mark.parametrize(
    ("dtype", "value", "match"),
    [
        (torch.float64, 1e300, r"\['0\.weight'\] contain NaN or inf values \(in the model's"),
        (torch.float8_e4m3fn, 0.5, r"'0\.weight' has dtype torch\.float8_e4m3fn, which nvmsim"),
    ],
)
def test_values_the_model_cannot_hold_are_refused(tmp_path, dtype, value, match):
    """A float64 value past float32's range would load as inf; float8 cannot be checked."""
    tensors = {k: v.contiguous() for k, v in _net().state_dict().items()}
    tensors["0.weight"] = torch.full((4, 3), value, dtype=torch.float64).to(dtype)
    path = tmp_path / "c.st"
    _forge(path, tensors, {"arch": {"name": "x"}})
    _refused(path, rf"c\.st: tensor.*{match}", build=_net())


def test_huge_model_in_metadata_is_refused_before_it_is_built(tmp_path):
    path = tmp_path / "huge.st"
    sizes = [784, 200_000, 200_000, 10]  # 160 GB of float32
    save_checkpoint(_mlp(), path, arch={"name": "mlp", "kwargs": {"sizes": sizes}})
    missing = r"missing tensors \['5\.weight', '5\.bias'\]"
    wrong = r"1\.weight: file \(128, 784\), model \(200000, 784\)"
    _refused(
        path, rf"huge\.st: checkpoint does not fit model 'mlp': {missing}.*{wrong}", quick=True
    )


def test_arch_too_large_to_build_is_refused(tmp_path):
    path = tmp_path / "deep.st"
    save_checkpoint(_mlp(), path, arch={"name": "mlp", "kwargs": {"sizes": [2] * 5000}})
    _refused(path, r"deep\.st: arch is \d+ bytes of JSON, more than the 4096", quick=True)
    assert read_checkpoint_info(path)["arch"]["name"] == "mlp"  # the info can still be read


def test_builder_error_of_any_type_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "c.st"
    save_checkpoint(_mlp(), path, arch={"name": "mlp", "kwargs": {"sizes": [784, -5, 10]}})
    _refused(path, r"c\.st: cannot build model 'mlp' .*RuntimeError: .*negative dimension")


@pytest.mark.parametrize(
    ("info", "pattern"),
    [
        ("[" * 100_000, "nested too deeply"),
        ({"arch": {"name": 3}}, "arch 'name' is 3, not a string"),
        ({"arch": {"name": "mlp128", "kwargs": [1]}}, r"arch 'kwargs' is \[1\], not an object"),
        ({"arch": ["mlp128"]}, "no 'arch' object"),
    ],
)
def test_malformed_info_refused(tmp_path, info, pattern):
    path = tmp_path / "c.st"
    _forge(path, _mlp().state_dict(), info)
    _refused(path, rf"c\.st: checkpoint metadata 'info' is malformed: {pattern}")
    with pytest.raises(CheckpointError, match="malformed"):
        read_checkpoint_info(path)


def test_tensor_of_another_dtype_kind_refused(tmp_path):
    path = tmp_path / "c.st"
    tensors = {k: v.clone() for k, v in _mlp().state_dict().items()}
    tensors["1.bias"] = tensors["1.bias"].to(torch.int64)
    _forge(path, tensors, {"arch": {"name": "mlp128"}})
    _refused(path, r"c\.st: tensor '1\.bias' has dtype torch\.int64, the model's is torch\.float32")


@pytest.mark.parametrize("data", [b"", b"\xff" * 64, os.urandom(1000)])
def test_not_a_safetensors_file(tmp_path, data):
    path = tmp_path / "c.st"
    path.write_bytes(data)
    _refused(path, r"c\.st: not a readable checkpoint \(truncated or corrupted\?\)")
