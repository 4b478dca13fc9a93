"""Sweep expansion: a study becomes a list of fully resolved, hashable runs."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from nvmsim.config import AnalogConfig, ConfigError, validate
from nvmsim.data.registry import DATASETS
from nvmsim.studies.scenarios import scenario_for
from nvmsim.studies.schema import DataSpec, ScenarioSpec, StudySpec, TrainSpec, axis_paths
from nvmsim.studies.spec import RunSpec, analog_tree, hashed_tree, train_tree


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:n]


@dataclass(frozen=True)
class Run:
    """One point of a study: a model, its data, a device config and a scenario, ``repeats``
    times. ``spec`` is the typed run; ``config`` its JSON (what the store and executors
    carry); ``run_id`` is its hash, ``train_key`` the hash of the part that decides training."""

    run_id: str
    train_key: str
    axes: dict[str, Any]
    config: dict[str, Any]
    spec: RunSpec


def _set(tree: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {path!r}: {k!r} is not a table")
    node[keys[-1]] = value


MAX_POINTS = 100_000  # a study past this is almost surely a mistake; split it


def count_points(spec: StudySpec) -> int:
    """How many points the sweep has, counted without expanding it."""
    n = 1
    for values in spec.sweep.axes().values():
        n *= len(values)
    for group in spec.sweep.zip:
        n *= len(next(iter(group.values()), [None]))
    return n


def _points(spec: StudySpec) -> list[dict[str, Any]]:
    """Cartesian product of the plain axes with each zipped group (walked in lockstep)."""
    factors: list[list[dict[str, Any]]] = [
        [{name: v} for v in values] for name, values in spec.sweep.axes().items()
    ]
    for group in spec.sweep.zip:
        names = list(group)
        factors.append(
            [dict(zip(names, vals, strict=True)) for vals in zip(*group.values(), strict=True)]
        )
    points = []
    for combo in itertools.product(*factors):
        point: dict[str, Any] = {}
        for part in combo:
            point.update(part)
        points.append(point)
    return points


def _cap(current: int | None, cap: int, size: int | None) -> int | None:
    """A subset of at most ``cap`` (and of the ``current`` one); None when that is all
    ``size`` items of the split anyway."""
    n = min(current, cap) if current else cap
    return None if size is not None and n >= size else n


def resolve(
    spec: StudySpec, point: dict[str, Any], quick: bool = False, source: str = "study"
) -> dict[str, Any]:
    """The full JSON config of one run: base settings with the point's axis values applied;
    errors name ``source`` (the study file) and the point."""
    labels = list(spec.models)
    label = point.get("model", labels[0] if len(labels) == 1 else None)
    if label is None:
        raise ValueError("several models are defined: sweep over them with model = [...]")
    if label not in spec.models:
        raise ValueError(f"axis model = {label!r} names no [models.{label}] table")
    m = spec.models[label]
    tree: dict[str, Any] = {
        "model": label,
        "source": {"arch": m.arch, "checkpoint": m.checkpoint, "keras": m.keras},
        "kwargs": dict(m.kwargs),
        "train": m.train.model_dump(mode="json"),
        "data": spec.data.model_dump(),
        "analog": copy.deepcopy(spec.analog),
        "scenario": spec.scenario.model_dump(),
        "repeats": spec.repeats,
        "seed": spec.seed,
    }
    if isinstance(tree["analog"].get("device"), str):
        tree["analog"]["device"] = {"preset": tree["analog"]["device"]}
    for name, value in point.items():
        if name == "model":
            continue
        for path in axis_paths(name):
            _set(tree, path, value)
        if name == "alpha":
            _set(tree, "analog.device.programming_error.kind", "weight")
    if quick:
        q = spec.quick
        info = DATASETS.get(tree["data"]["dataset"])  # caps never exceed a known split's size
        n_train, n_test = (info.num_train, info.num_test) if info else (None, None)
        tree["train"]["train_subset"] = _cap(tree["train"]["train_subset"], q.train_subset, n_train)
        tree["train"]["epochs"] = min(tree["train"]["epochs"], q.epochs)
        tree["data"]["test_subset"] = _cap(tree["data"]["test_subset"], q.test_subset, n_test)
        tree["repeats"] = min(tree["repeats"], q.repeats)
    if "sigma_neu" in point and m.arch is None:
        raise ValueError(f"sigma_neu needs training, but model {label!r} is loaded from a file")
    # Validate every part now, so that a bad value fails before anything runs.
    where = f"{source}: sweep point {point}"
    tree["analog"] = analog_tree(validate(AnalogConfig, tree["analog"], f"{where}: analog"))
    tree["scenario"] = validate(ScenarioSpec, tree["scenario"], f"{where}: scenario").model_dump()
    tree["train"] = train_tree(validate(TrainSpec, tree["train"], f"{where}: train"))
    tree["data"] = validate(DataSpec, tree["data"], f"{where}: data").model_dump()
    return tree


_PARTS = {"analog": AnalogConfig, "scenario": ScenarioSpec, "train": TrainSpec, "data": DataSpec}


def identity(tree: dict[str, Any]) -> dict[str, Any]:
    """What identifies a run: its config with every setting at its default left out, so a
    new option (at a default that changes nothing) keeps the ids of stored results."""
    out = dict(tree)
    for key, model in _PARTS.items():
        if key in out:
            out[key] = model.model_validate(out[key]).model_dump(mode="json", exclude_defaults=True)
    return out


def expand(spec: StudySpec, quick: bool = False, source: str | None = None) -> list[Run]:
    """All runs of a study, validated; raises ConfigError naming the study file (``source``)
    and the bad point. The points are counted first: past MAX_POINTS nothing is expanded."""
    where = source or f"study {spec.name!r}"
    n = count_points(spec)
    if n > MAX_POINTS:
        raise ConfigError(
            f"{where}: the sweep has {n:,} points, more than the limit of {MAX_POINTS:,}; "
            "split it into several studies"
        )
    runs, seen = [], set()
    for point in _points(spec):
        try:
            tree = resolve(spec, point, quick, where)
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        run = RunSpec.from_tree(tree)
        try:
            scenario_for(run.scenario).check(run)
        except ValueError as err:
            raise ConfigError(f"{where}: sweep point {point}: {err}") from None
        run_id = digest(identity(hashed_tree(tree)))
        if run_id in seen:
            continue
        seen.add(run_id)
        runs.append(Run(run_id, digest(identity(run.train_config())), point, tree, run))
    return runs
