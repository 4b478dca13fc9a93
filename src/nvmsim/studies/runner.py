"""What every scenario of a run needs: its data, its network (trained once, cached) and the
loss and accuracy of a network on a test set.

Everything here is a pure function of the run's specification and the cache folder, so a run
gives the same numbers in any process, in any order, under any executor.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nvmsim.data import load, preprocess
from nvmsim.seeds import derive_seed
from nvmsim.studies.spec import RunSpec


def run_data(run: RunSpec, split: str, subset: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of ``split`` for ``run`` (its dataset, crop and subset seed)."""
    d = run.data
    crop = tuple(d.crop) if d.crop else None
    return load(d.dataset, split, d.data_dir, crop=crop, subset=subset, seed=run.seed)


def build_model(run: RunSpec) -> nn.Module:
    """The run's network: built from the registry, or read from its checkpoint or Keras file."""
    src, kwargs = run.source, dict(run.kwargs)
    if src.arch:
        from nvmsim.models import build

        if run.train.sigma_neu > 0:
            kwargs["sigma_neu"] = run.train.sigma_neu
        return build(src.arch, **kwargs)
    if src.checkpoint:
        from nvmsim.io.checkpoint import load_checkpoint

        return load_checkpoint(src.checkpoint)[0]
    from nvmsim.io.keras import load_keras

    return load_keras(src.keras).reshaped_input()  # dataset images -> the declared input


def trained_model(run: RunSpec, train_key: str, cache_dir: Path) -> nn.Module:
    """The run's model with trained weights: from the cache, or trained now and cached."""
    model = build_model(run)
    if not run.source.arch:
        return model.eval()
    from nvmsim.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = cache_dir / f"{train_key}.safetensors"
    if path.is_file():
        try:
            return load_checkpoint(path, build=model)[0]
        except CheckpointError:
            pass  # unreadable cache entry (older format, damage): train again and replace it
    from nvmsim.training import hwa
    from nvmsim.training.software import keras_init, train

    t = run.train
    x, y = run_data(run, "train", t.train_subset)
    x = preprocess.fit(run.data.preprocess, x)(x)
    seed = derive_seed("train", train_key)
    torch.manual_seed(seed)
    model = build_model(run)  # initial weights from the seed
    if t.init == "keras":
        keras_init(model)
    recipe = {
        "epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr, "optimizer": t.optimizer,
        "momentum": t.momentum, "seed": seed,
    }  # fmt: skip
    if t.mode == "hwa":
        hwa.train(model, t.analog, (x, y), hwa.Recipe(**recipe, **t.hwa.model_dump()))
    else:
        train(model, x, y, **recipe)
    arch = {"name": run.source.arch, "kwargs": dict(run.kwargs)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, path, arch=arch, training=run.train_config())
    return model.eval()


def loss_acc(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 5000
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (a fraction); non-finite outputs are an error."""
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(x[i : i + batch])
            if not bool(torch.isfinite(out).all()):
                raise FloatingPointError(
                    "the network's outputs are not finite (NaN or inf); check the device "
                    "config (a huge noise sigma?) and the model's parameters"
                )
            loss += float(F.cross_entropy(out, y[i : i + batch], reduction="sum"))
            correct += int((out.argmax(1) == y[i : i + batch]).sum())
    return loss / len(x), correct / len(x)


def summary(name: str, values: list[float]) -> dict[str, Any]:
    """``name`` (mean), ``name_std`` and ``name_all`` of per-repeat values."""
    n = len(values)
    return {
        name: statistics.fmean(values),
        f"{name}_std": statistics.stdev(values) if n > 1 else 0.0,
        f"{name}_all": values,
    }
