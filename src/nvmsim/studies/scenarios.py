"""Scenarios: how a run's network is evaluated. One class each, one registration.

A scenario says whether a run's ``[scenario]`` table selects it, checks its own options at
plan time (so a typo fails before the store exists, naming the study file), says whether
its network is trained in software first, and evaluates a run into its metrics. To add one,
subclass :class:`Scenario` and decorate it with :func:`register`; see docs/architecture.md.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ValidationError

from nvmsim.config import format_validation_error
from nvmsim.data import perturb, preprocess
from nvmsim.nn.convert import convert, drift_to
from nvmsim.seeds import derive_seed, onchip_seed
from nvmsim.studies.runner import loss_acc, run_data, summary, trained_model
from nvmsim.studies.schema import ScenarioSpec
from nvmsim.studies.spec import RunSpec


@dataclass(frozen=True)
class Context:
    """Where a run finds what it does not compute itself: the trained-model cache."""

    cache_dir: Path
    train_key: str


class Scenario:
    """Base class of scenarios. A subclass sets ``name`` (the ``[scenario]`` key that holds
    its options and selects it), ``Options`` (a pydantic model of those options, or None)
    and implements :meth:`evaluate`."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel] | None] = None
    trains_in_software: ClassVar[bool] = True  # train the network before evaluate()

    @classmethod
    def raw_options(cls, scenario: ScenarioSpec) -> Any:
        """The ``[scenario] <name>`` value, or None when absent."""
        return (scenario.model_extra or {}).get(cls.name)

    @classmethod
    def selected(cls, scenario: ScenarioSpec) -> bool:
        """Whether a run's ``[scenario]`` table asks for this scenario."""
        return cls.raw_options(scenario) is not None

    @classmethod
    def options(cls, run: RunSpec) -> BaseModel | None:
        """The validated options; a ValueError names ``scenario.<name>.<field>``."""
        if cls.Options is None:
            return None
        raw = cls.raw_options(run.scenario)
        try:
            return cls.Options.model_validate(raw if raw is not None else {})
        except ValidationError as err:
            msg = format_validation_error(err, "", prefix=f"scenario.{cls.name}")
            raise ValueError(msg) from None

    @classmethod
    def check(cls, run: RunSpec) -> None:
        """Validate this scenario's options for ``run`` at plan time (raise ValueError)."""
        cls.options(run)

    def evaluate(self, run: RunSpec, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError


SCENARIOS: dict[str, type[Scenario]] = {}
DEFAULT = "inference"


def register(cls: type[Scenario]) -> type[Scenario]:
    """Add a scenario to the registry (a class decorator)."""
    if cls.name in SCENARIOS:
        raise ValueError(f"scenario {cls.name!r} is registered already")
    SCENARIOS[cls.name] = cls
    return cls


def scenario_for(scenario: ScenarioSpec) -> type[Scenario]:
    """The scenario a ``[scenario]`` table selects: the one other than inference that asks
    for it, else inference. A key that names no scenario is an error."""
    unknown = sorted(set(scenario.model_extra or {}) - set(SCENARIOS))
    if unknown:
        known = ", ".join(n for n in SCENARIOS if n != DEFAULT)
        raise ValueError(f"scenario.{unknown[0]}: unknown key (scenarios with options: {known})")
    chosen = [c for n, c in SCENARIOS.items() if n != DEFAULT and c.selected(scenario)]
    if len(chosen) > 1:
        names = " and ".join(c.name for c in chosen)
        raise ValueError(f"scenario: {names} cannot be combined in one run")
    return chosen[0] if chosen else SCENARIOS[DEFAULT]


def evaluate(tree: dict[str, Any], train_key: str, cache_dir: Path) -> dict[str, Any]:
    """The executor's entry point: a run's JSON (from the store or a task) into metrics."""
    run = RunSpec.from_tree(tree)
    return scenario_for(run.scenario)().evaluate(run, Context(Path(cache_dir), train_key))


def _prepared_test(run: RunSpec) -> tuple[preprocess.Transform, torch.Tensor, torch.Tensor]:
    """The preprocessing fitted on the run's training split, and its raw test split."""
    xtr, _ = run_data(run, "train", run.train.train_subset)
    prep = preprocess.fit(run.data.preprocess, xtr)
    x, y = run_data(run, "test", run.data.test_subset)
    return prep, x, y


@register
class Inference(Scenario):
    """Program the trained network ``repeats`` times (device instances, noise draws) and test
    it, with optional test-set noise, drift and energy per inference (paper 000)."""

    name = "inference"

    @classmethod
    def selected(cls, scenario: ScenarioSpec) -> bool:
        return True

    def evaluate(self, run: RunSpec, ctx: Context) -> dict[str, Any]:
        model = trained_model(run, ctx.train_key, ctx.cache_dir)
        prep, x, y = _prepared_test(run)
        sc, cfg = run.scenario, run.analog
        base_seed = derive_seed("eval", run.hashed())
        clean_loss, clean_acc = loss_acc(model, prep(x), y)
        analog = None
        accs, losses = [], []
        for r in range(run.repeats):
            seed = derive_seed(base_seed, r)
            if analog is None or sc.reprogram_each_repeat:
                analog = convert(model, cfg.model_copy(update={"seed": seed % (2**62)})).eval()
                if sc.drift_time > 0:
                    drift_to(analog, sc.drift_time)
            xr = x
            if sc.sigma_te > 0:
                clip = (0.0, 1.0) if sc.clip_inputs else None
                g = torch.Generator().manual_seed(seed)
                xr = perturb(x, sc.test_noise, sc.sigma_te, generator=g, clip=clip)
            loss, acc = loss_acc(analog, prep(xr), y)
            accs.append(acc)
            losses.append(loss)
        return {
            **summary("accuracy", accs),
            **summary("loss", losses),
            "software_accuracy": clean_acc,
            "software_loss": clean_loss,
            "repeats": len(accs),
            "test_images": len(y),
            **self._energy(model, run, tuple(x.shape[1:])),
        }

    @staticmethod
    def _energy(model, run: RunSpec, shape: tuple[int, ...]) -> dict[str, float]:
        """Energy per inference on ``scenario.energy`` (nothing if unset)."""
        sc = run.scenario
        if sc.energy is None:
            return {}
        from nvmsim.energy.model import estimate

        rep = estimate(model, sc.energy, shape, sc.conv_mapping, config=run.analog)
        return {
            "energy_nj": rep.total_nj,
            "vmm_nj": rep.vmm_pj / 1e3,
            "neuron_pj": rep.neuron_pj,
            "pj_per_mac": rep.pj_per_mac,
        }


@register
class DetectorRetraining(Scenario):
    """Paper 003: per repeat, one programmed feature extractor; accuracy of the original
    digital detector on its features (before) and of the detector retrained on them (after).
    Repeats are processed ``repeat_chunk`` at a time: their detectors train together."""

    name = "retrain_detector"

    @classmethod
    def selected(cls, scenario: ScenarioSpec) -> bool:
        return scenario.retrain_detector  # its options are the retrain_* fields

    def evaluate(self, run: RunSpec, ctx: Context) -> dict[str, Any]:
        from nvmsim.training.detector import (
            BatchedDetector,
            batched_accuracy,
            describe_detector,
            retrain,
            split_model,
        )

        model = trained_model(run, ctx.train_key, ctx.cache_dir)
        prep, x, y = _prepared_test(run)
        sc, cfg = run.scenario, run.analog
        base_seed = derive_seed("eval", run.hashed())
        extractor, detector = split_model(model, sc.split_at)
        sizes, act = describe_detector(detector)
        xtr, ytr = run_data(run, "train", sc.retrain_subset or run.train.train_subset)
        xtr, xte, yte = prep(xtr), prep(x), y
        clean_acc = loss_acc(model, xte, yte)[1]
        before, after = [], []
        for start in range(0, run.repeats, sc.repeat_chunk):
            chunk = range(start, min(run.repeats, start + sc.repeat_chunk))
            ftr, fte = [], []
            with torch.no_grad():
                for r in chunk:
                    seed = derive_seed(base_seed, r) % (2**62)
                    analog = convert(extractor, cfg.model_copy(update={"seed": seed})).eval()
                    ftr.append(_features(analog, xtr))
                    fte.append(_features(analog, xte))
            ftr, fte = torch.stack(ftr), torch.stack(fte)
            gen = torch.Generator().manual_seed(derive_seed(base_seed, "detector", start))
            if sc.detector_hidden:
                widths = [sizes[0], sc.detector_hidden, sizes[-1]]
                det = BatchedDetector(len(chunk), widths, act, gen)
            else:
                det = BatchedDetector.from_detector(detector, len(chunk))
            original = BatchedDetector.from_detector(detector, len(chunk))
            before += batched_accuracy(original, fte, yte).tolist()
            retrain(
                det, ftr, ytr, epochs=sc.retrain_epochs, batch_size=sc.retrain_batch,
                lr=sc.retrain_lr, generator=gen,
            )  # fmt: skip
            after += batched_accuracy(det, fte, yte).tolist()
        gain = [a - b for a, b in zip(after, before, strict=True)]
        return {
            **summary("accuracy", after),
            **summary("accuracy_before", before),
            **summary("improvement", gain),
            "software_accuracy": clean_acc,
            "repeats": run.repeats,
            "test_images": len(yte),
        }


def _features(extractor, x: torch.Tensor, batch: int = 5000) -> torch.Tensor:
    return torch.cat([extractor(x[i : i + batch]).flatten(1) for i in range(0, len(x), batch)])


@register
class OnChip(Scenario):
    """Paper 004: train the network on chip ``repeats`` times (pulse updates on the devices'
    jump-tables) and test each; options are ``[scenario] onchip = {...}``."""

    name = "onchip"
    trains_in_software = False

    @classmethod
    def raw_options(cls, scenario: ScenarioSpec) -> Any:
        return scenario.onchip  # a declared field (it predates the registry)

    @classmethod
    def options(cls, run: RunSpec) -> BaseModel:
        from nvmsim.training.onchip import parse_config

        return parse_config(run.scenario.onchip)

    @classmethod
    def check(cls, run: RunSpec) -> None:
        cls.options(run)
        if not run.source.arch:
            raise ValueError(
                "scenario.onchip: on-chip training needs a registry arch (models.*.arch)"
            )

    def evaluate(self, run: RunSpec, ctx: Context) -> dict[str, Any]:
        from nvmsim.training.onchip import train_onchip

        self.check(run)
        cfg = self.options(run)
        seed = derive_seed("onchip", run.hashed())
        epochs = cfg.epochs if cfg.epochs is not None else run.train.epochs
        xtr, ytr = run_data(run, "train", cfg.train_subset or run.train.train_subset)
        xte, yte = run_data(run, "test", run.data.test_subset)
        prep = preprocess.fit(run.data.preprocess, xtr)
        xtr, xte = prep(xtr), prep(xte)
        results = []
        for r in range(run.repeats):
            # Initial weights depend on the study seed and repeat only: every point of a
            # sweep starts from the same networks (common random numbers across the sweep).
            init_seed = onchip_seed(run.seed, r, "init")
            res = train_onchip(
                cfg, (xtr, ytr), (xte, yte), arch=run.source.arch, kwargs=dict(run.kwargs),
                epochs=epochs, seed=onchip_seed(seed, r), init_seed=init_seed,
            )  # fmt: skip
            results.append(res)
        return _onchip_metrics(results, epochs, len(ytr), len(yte))


def _onchip_metrics(results: list, epochs: int, n_train: int, n_test: int) -> dict[str, Any]:
    """Accuracies, pulse counts and saturation of the on-chip repeats."""
    ex = sum(r.stats.examples for r in results) or 1
    secs = [t for r in results for t in r.stats.epoch_seconds]
    curves = [r.curve for r in results]

    def mean(values) -> float:
        return statistics.fmean(values)

    out: dict[str, Any] = {
        **summary("accuracy", [r.test_accuracy for r in results]),
        **summary("train_accuracy", [r.train_accuracy for r in results]),
        "repeats": len(results),
        "epochs": epochs,
        "train_images": n_train,
        "test_images": n_test,
        "saturated_fraction": mean(r.diamond["saturated_fraction"] for r in results),
        "collapsed_fraction": mean(r.diamond["collapsed_fraction"] for r in results),
        "pulses_per_example": sum(r.stats.pulses for r in results) / ex,
        "set_pulses_per_example": sum(r.stats.set_pulses for r in results) / ex,
        "reset_pulses_per_example": sum(r.stats.reset_pulses for r in results) / ex,
        "refreshes": mean(r.stats.refreshes for r in results),
        "refresh_pulses": mean(r.stats.refresh_pulses for r in results),
        "compensation_factor": results[0].network.c if results else 1.0,
        "seconds_per_epoch": mean(secs) if secs else 0.0,
    }
    if curves and all(curves):
        out["test_accuracy_curve"] = [mean(v) for v in zip(*curves, strict=True)]
    return out
