"""Executing one run: get the trained model (train once, cached), program it, evaluate.

Everything here is a pure function of the run's JSON config and the cache folder, so a run
gives the same numbers in any process, in any order, under any executor.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.data import load, perturb, preprocess
from nvmsim.nn.convert import convert, drift_to


def sub_seed(*parts: Any) -> int:
    """A 63-bit seed derived from any JSON-able parts (stable across processes)."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def _data(
    tree: dict[str, Any], split: str, subset: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    d = tree["data"]
    crop = tuple(d["crop"]) if d.get("crop") else None
    return load(d["dataset"], split, d.get("data_dir"), crop=crop, subset=subset, seed=tree["seed"])


def build_model(tree: dict[str, Any]) -> nn.Module:
    src, kwargs = tree["source"], dict(tree["kwargs"])
    if src["arch"]:
        from nvmsim.models import build

        if tree["train"]["sigma_neu"] > 0:
            kwargs["sigma_neu"] = tree["train"]["sigma_neu"]
        return build(src["arch"], **kwargs)
    if src["checkpoint"]:
        from nvmsim.io.checkpoint import load_checkpoint

        return load_checkpoint(src["checkpoint"])[0]
    from nvmsim.io.keras import load_keras

    return load_keras(src["keras"])


def trained_model(tree: dict[str, Any], train_key: str, cache_dir: Path) -> nn.Module:
    """The run's model with trained weights: from the cache, or trained now and cached."""
    model = build_model(tree)
    if not tree["source"]["arch"]:
        return model.eval()
    from nvmsim.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = cache_dir / f"{train_key}.safetensors"
    if path.is_file():
        try:
            return load_checkpoint(path, build=model)[0]
        except CheckpointError:
            pass  # unreadable cache entry (older format, damage): train again and replace it
    from nvmsim.studies.sweep import train_config
    from nvmsim.training.software import train

    t = tree["train"]
    x, y = _data(tree, "train", t["train_subset"])
    x = preprocess.fit(tree["data"]["preprocess"], x)(x)
    seed = sub_seed("train", train_key)
    torch.manual_seed(seed)
    model = build_model(tree)  # initial weights from the seed
    if t["init"] == "keras":
        from nvmsim.training.software import keras_init

        keras_init(model)
    train(
        model,
        x,
        y,
        epochs=t["epochs"],
        batch_size=t["batch_size"],
        lr=t["lr"],
        optimizer=t["optimizer"],
        momentum=t["momentum"],
        seed=seed,
    )
    arch = {"name": tree["source"]["arch"], "kwargs": tree["kwargs"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, path, arch=arch, training=train_config(tree))
    return model.eval()


def _loss_acc(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 5000
) -> tuple[float, float]:
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


def evaluate(tree: dict[str, Any], train_key: str, cache_dir: Path) -> dict[str, Any]:
    """Metrics of one run over its repeats (device instances and noise draws)."""
    if tree["scenario"].get("onchip") is not None:
        from nvmsim.training.onchip import evaluate_onchip

        return evaluate_onchip(
            tree, lambda split, n: _data(tree, split, n), sub_seed("onchip", tree)
        )
    model = trained_model(tree, train_key, cache_dir)
    xtr, _ = _data(tree, "train", tree["train"]["train_subset"])
    prep = preprocess.fit(tree["data"]["preprocess"], xtr)
    x, y = _data(tree, "test", tree["data"]["test_subset"])
    sc = tree["scenario"]
    cfg = AnalogConfig.model_validate(tree["analog"])
    base_seed = sub_seed("eval", tree)
    if sc["retrain_detector"]:
        return evaluate_retrained(tree, model, cfg, prep, (x, y), base_seed)
    clean_loss, clean_acc = _loss_acc(model, prep(x), y)
    analog = None
    accs, losses = [], []
    for r in range(tree["repeats"]):
        seed = sub_seed(base_seed, r)
        if analog is None or sc["reprogram_each_repeat"]:
            analog = convert(model, cfg.model_copy(update={"seed": seed % (2**62)})).eval()
            if sc["drift_time"] > 0:
                drift_to(analog, sc["drift_time"])
        xr = x
        if sc["sigma_te"] > 0:
            clip = (0.0, 1.0) if sc["clip_inputs"] else None
            g = torch.Generator().manual_seed(seed)
            xr = perturb(x, sc["test_noise"], sc["sigma_te"], generator=g, clip=clip)
        loss, acc = _loss_acc(analog, prep(xr), y)
        accs.append(acc)
        losses.append(loss)
    return {
        **_summary("accuracy", accs),
        **_summary("loss", losses),
        "software_accuracy": clean_acc,
        "software_loss": clean_loss,
        "repeats": len(accs),
        "test_images": len(y),
        **_energy(model, cfg, sc, tuple(x.shape[1:])),
    }


def _energy(model, cfg: AnalogConfig, sc: dict[str, Any], shape: tuple[int, ...]) -> dict:
    """Energy per inference of the run's network on ``scenario.energy`` (none if unset)."""
    if sc.get("energy") is None:
        return {}
    from nvmsim.energy.model import estimate

    rep = estimate(model, sc["energy"], shape, sc["conv_mapping"], config=cfg)
    return {
        "energy_nj": rep.total_nj,
        "vmm_nj": rep.vmm_pj / 1e3,
        "neuron_pj": rep.neuron_pj,
        "pj_per_mac": rep.pj_per_mac,
    }


def _summary(name: str, values: list[float]) -> dict[str, Any]:
    n = len(values)
    return {
        name: statistics.fmean(values),
        f"{name}_std": statistics.stdev(values) if n > 1 else 0.0,
        f"{name}_all": values,
    }


def evaluate_retrained(tree, model, cfg, prep, test, base_seed) -> dict[str, Any]:
    """Paper 003: per repeat, one programmed extractor; accuracy of the original digital
    detector on its features (before) and of the detector retrained on them (after).

    Repeats are processed ``repeat_chunk`` at a time: their detectors train together.
    """
    from nvmsim.training.detector import (
        BatchedDetector,
        batched_accuracy,
        describe_detector,
        retrain,
        split_model,
    )

    sc = tree["scenario"]
    extractor, detector = split_model(model, sc["split_at"])
    sizes, act = describe_detector(detector)
    xtr, ytr = _data(tree, "train", sc["retrain_subset"] or tree["train"]["train_subset"])
    xtr, (xte, yte) = prep(xtr), (prep(test[0]), test[1])
    clean_acc = _loss_acc(model, xte, yte)[1]
    before, after = [], []
    repeats = tree["repeats"]
    for start in range(0, repeats, sc["repeat_chunk"]):
        chunk = range(start, min(repeats, start + sc["repeat_chunk"]))
        ftr, fte = [], []
        with torch.no_grad():
            for r in chunk:
                seed = sub_seed(base_seed, r) % (2**62)
                analog = convert(extractor, cfg.model_copy(update={"seed": seed})).eval()
                ftr.append(
                    torch.cat(
                        [analog(xtr[i : i + 5000]).flatten(1) for i in range(0, len(xtr), 5000)]
                    )
                )
                fte.append(
                    torch.cat(
                        [analog(xte[i : i + 5000]).flatten(1) for i in range(0, len(xte), 5000)]
                    )
                )
        ftr, fte = torch.stack(ftr), torch.stack(fte)
        gen = torch.Generator().manual_seed(sub_seed(base_seed, "detector", start))
        if sc["detector_hidden"]:
            det = BatchedDetector(
                len(chunk), [sizes[0], sc["detector_hidden"], sizes[-1]], act, gen
            )
        else:
            det = BatchedDetector.from_detector(detector, len(chunk))
        before += batched_accuracy(
            BatchedDetector.from_detector(detector, len(chunk)), fte, yte
        ).tolist()
        retrain(
            det,
            ftr,
            ytr,
            epochs=sc["retrain_epochs"],
            batch_size=sc["retrain_batch"],
            lr=sc["retrain_lr"],
            generator=gen,
        )
        after += batched_accuracy(det, fte, yte).tolist()
    gain = [a - b for a, b in zip(after, before, strict=True)]
    return {
        **_summary("accuracy", after),
        **_summary("accuracy_before", before),
        **_summary("improvement", gain),
        "software_accuracy": clean_acc,
        "repeats": repeats,
        "test_images": len(yte),
    }
