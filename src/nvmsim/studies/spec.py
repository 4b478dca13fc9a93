"""The typed specification of one run, built at plan time.

Everything below the schema works on a :class:`RunSpec`; it becomes JSON (:meth:`RunSpec.tree`)
only at the store and executor boundaries, and is rebuilt from that JSON in a worker
(:meth:`RunSpec.from_tree`). The JSON layout is the one run ids and seeds are hashed from, so
it must not change.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from nvmsim.config import AdcModelConfig, AnalogConfig
from nvmsim.studies.schema import DataSpec, ScenarioSpec, TrainSpec


def train_tree(train: TrainSpec) -> dict[str, Any]:
    """The training part of a run's tree: hardware-aware settings only where they are used,
    and then without their defaults, so that options added later (at defaults that change
    nothing) keep every run's seeds."""
    tree = train.model_dump(mode="json", exclude={"mode", "analog", "hwa"})
    if train.mode != "standard":
        tree["mode"] = train.mode
        for key in ("analog", "hwa"):
            tree[key] = getattr(train, key).model_dump(mode="json", exclude_defaults=True)
    return tree


#: Analog options added after results were stored, with the default that changes nothing:
#: left out of a run's tree at that default, so the seeds hashed from the tree stay put.
LATER_ANALOG_OPTIONS: dict[tuple[str, str], Any] = {
    ("converter", "attention_products"): "digital",
    ("crossbar", "weight_slices"): 1,
    ("converter", "adc_range_percentile"): None,
    ("converter", "adc_range_per"): "array",
    ("converter", "adc_model"): AdcModelConfig().model_dump(mode="json"),
    ("converter", "output_noise"): 0.0,
    ("converter", "noise_management"): "none",
    ("converter", "bound_management"): "none",
    ("converter", "max_bound_factor"): 16.0,
    ("converter", "input_bits_per_read"): None,
    ("converter", "input_encoding"): "twos_complement",
    ("crossbar", "recurrent"): "split",
}


def analog_tree(config: AnalogConfig) -> dict[str, Any]:
    """The analog part of a run's tree."""
    tree = config.model_dump(mode="json")
    for (part, key), default in LATER_ANALOG_OPTIONS.items():
        if tree[part].get(key) == default:
            del tree[part][key]
    return tree


class SourceSpec(BaseModel):
    """Where a run's network comes from: a registry arch (trained here), or a file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str | None = None
    checkpoint: str | None = None
    keras: str | None = None


class RunSpec(BaseModel):
    """One point of a study: model, data, training, analog config, scenario, repeats, seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    source: SourceSpec
    kwargs: dict[str, Any]
    train: TrainSpec
    data: DataSpec
    analog: AnalogConfig
    scenario: ScenarioSpec
    repeats: int
    seed: int

    def tree(self) -> dict[str, Any]:
        """The run as plain JSON, in the layout its id and seeds are hashed from."""
        return {
            "model": self.model,
            "source": self.source.model_dump(),
            "kwargs": dict(self.kwargs),
            "train": train_tree(self.train),
            "data": self.data.model_dump(),
            "analog": analog_tree(self.analog),
            "scenario": self.scenario.model_dump(),
            "repeats": self.repeats,
            "seed": self.seed,
        }

    def train_config(self) -> dict[str, Any]:
        """The part of the run that decides the trained weights (hashed: the cache key)."""
        tree = self.tree()
        return {
            "source": tree["source"],
            "kwargs": tree["kwargs"],
            "train": tree["train"],
            "data": {k: tree["data"][k] for k in ("dataset", "preprocess", "crop")},
            "seed": tree["seed"],
        }

    @classmethod
    def from_tree(cls, tree: dict[str, Any]) -> RunSpec:
        return cls.model_validate(tree)
