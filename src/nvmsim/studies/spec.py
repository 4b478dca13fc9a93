"""The typed specification of one run, built at plan time.

Everything below the schema works on a :class:`RunSpec`; it becomes JSON (:meth:`RunSpec.tree`)
only at the store and executor boundaries, and is rebuilt from that JSON in a worker
(:meth:`RunSpec.from_tree`). The JSON layout is the one run ids and seeds are hashed from, so
it must not change.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
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


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str) -> str:
    """``sha256:<hex>`` of a file's contents (cached while its size and mtime stay)."""
    st = Path(path).stat()
    return "sha256:" + _file_sha256(str(path), st.st_size, st.st_mtime_ns)


#: The read-noise stream of every result stored before ``read_noise_stream`` existed.
LEGACY_STREAM = "serial"


def _without_stream(analog: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """An analog tree without its read-noise stream, and the stream where it can change a
    result: not the legacy one, and reads that draw (absent: the default)."""
    default = AnalogConfig.model_fields["read_noise_stream"].default
    stream = analog.get("read_noise_stream", default)
    rest = {k: v for k, v in analog.items() if k != "read_noise_stream"}
    if stream == LEGACY_STREAM or not AnalogConfig.model_validate(rest).draws_at_read:
        return rest, None
    return rest, stream


def hashed_tree(tree: dict[str, Any]) -> dict[str, Any]:
    """What a run's id and seeds are hashed from: its tree with every location left out.
    A model file counts by its contents (:func:`file_digest`) and the data folder not at
    all, so a study moved to another folder or machine keeps its ids and draws.

    A run on the legacy read-noise stream (``read_noise_stream = "serial"``), or whose reads
    draw nothing, hashes as every run did before that option; any other stream is named
    beside the tree (for the evaluation and for hardware-aware training apart), so its ids
    and seeds are its own."""
    source, data = tree.get("source") or {}, tree.get("data") or {}
    out = dict(tree)
    files = {k: file_digest(v) for k in ("checkpoint", "keras") if (v := source.get(k))}
    if files:
        out["source"] = {**source, **files}
    if data.get("data_dir") is not None:
        out["data"] = {k: v for k, v in data.items() if k != "data_dir"}
    if isinstance(tree.get("analog"), dict):
        out["analog"], stream = _without_stream(tree["analog"])
        if stream:
            out["read_noise_stream"] = stream
    train = tree.get("train")
    if isinstance(train, dict) and isinstance(train.get("analog"), dict):
        analog, stream = _without_stream(train["analog"])
        out["train"] = {**train, "analog": analog}
        if stream:
            out["train_read_noise_stream"] = stream
    return out


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

    def hashed(self) -> dict[str, Any]:
        """The tree that seeds are derived from (:func:`hashed_tree`)."""
        return hashed_tree(self.tree())

    def train_config(self) -> dict[str, Any]:
        """The part of the run that decides the trained weights (hashed: the cache key)."""
        tree = self.hashed()
        return {
            "source": tree["source"],
            "kwargs": tree["kwargs"],
            "train": tree["train"],
            "data": {k: tree["data"][k] for k in ("dataset", "preprocess", "crop")},
            "seed": tree["seed"],
            **({"read_noise_stream": s} if (s := tree.get("train_read_noise_stream")) else {}),
        }

    @classmethod
    def from_tree(cls, tree: dict[str, Any]) -> RunSpec:
        return cls.model_validate(tree)
