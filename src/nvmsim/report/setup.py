"""The report's "setup" section: what was simulated, resolved from the runs' stored configs.

Per model: its source, kwargs, training recipe and achieved software (digital) accuracy; the
dataset and preprocessing; the analog and scenario settings, split into those shared by
every run and those that vary, one line per point group (a distinct combination).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from nvmsim.report.labels import label
from nvmsim.report.rows import Row, Table, compact, configs_of, distinct, fmt, order
from nvmsim.training.hwa import Injection

_INJECTION = Injection().model_dump()

RECIPE = ("mode", "epochs", "batch_size", "lr", "optimizer", "momentum", "sigma_neu", "init",
          "train_subset", "seed")  # fmt: skip
DATA = ("dataset", "preprocess", "test_subset", "crop", "data_dir")
SIMULATED = ("analog", "scenario")
SKIP = frozenset({"analog.seed"})  # per device instance, derived from the run seed


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as ``dotted.path -> leaf`` (lists stay leaves)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{path}."))
        else:
            out[path] = v
    return out


def _source(config: Mapping[str, Any]) -> str:
    src = config.get("source") or {}
    for kind in ("checkpoint", "keras"):
        if src.get(kind):
            return f"{kind} {src[kind]}"
    return f"arch {src.get('arch') or config.get('model')}"


def models_table(rows: list[Row]) -> Table | None:
    """One line per model: source, kwargs, training recipe (values over its runs) and the
    software accuracy it reached (mean, and range over training seeds)."""
    by_model: dict[str, list[Row]] = {}
    for r in rows:
        if isinstance(r.get("config"), dict) and "model" in r["config"]:
            by_model.setdefault(str(r["config"]["model"]), []).append(r)
    if not by_model:
        return None
    head = ["model", "source", "kwargs", *(label(f"train.{k}") for k in RECIPE)]
    head += [label("train.device"), label("software_accuracy")]
    body = []
    for model, members in sorted(by_model.items()):
        configs = [r["config"] for r in members]
        cells = [model, compact([_source(c) for c in configs]),
                 compact([c.get("kwargs", {}) for c in configs])]  # fmt: skip
        cells += [compact([c.get("train", {}).get(k) for c in configs]) for k in RECIPE]
        cells.append(compact([_train_device(c.get("train", {})) for c in configs]))
        soft = [100 * r["metrics"]["software_accuracy"] for r in members
                if "software_accuracy" in r["metrics"]]  # fmt: skip
        cells.append(_spread(soft))
        body.append(cells)
    return head, body


def _train_device(train: Mapping[str, Any]) -> str:
    """The device a hardware-aware model was trained on, with its injection if not default."""
    analog = train.get("analog")
    if train.get("mode") != "hwa" or not analog:
        return "—"
    name = str(analog.get("device", {}).get("name", "custom"))
    hwa = {k: v for k, v in (train.get("hwa") or {}).items() if v != _INJECTION.get(k)}
    return name + (f" {hwa}" if hwa else "")


def _spread(values: list[float]) -> str:
    vals = distinct(values)
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ({min(vals):.2f} – {max(vals):.2f})"


def data_table(rows: list[Row]) -> Table | None:
    """Dataset, preprocessing and test-set settings (their values over the runs)."""
    configs = configs_of(rows)
    if not configs:
        return None
    body = [[label(f"data.{k}"), compact([c.get("data", {}).get(k) for c in configs])]
            for k in DATA]  # fmt: skip
    test = distinct(r["metrics"]["test_images"] for r in rows if "test_images" in r["metrics"])
    if test:
        body.append(["test images", compact(test)])
    return ["setting", "value"], body


def _meaning(key: str, configs: list[dict[str, Any]]) -> str:
    """The label-table wording of a setting, or "" where the table has none."""
    words = label(key, configs)
    return "" if words == key else words


def config_tables(rows: list[Row]) -> tuple[Table | None, Table | None]:
    """The resolved analog and scenario settings: those equal in every run (setting, value),
    and those that vary (one column each, one line per distinct combination)."""
    flats = [
        {k: v for k, v in flatten({s: c.get(s, {}) for s in SIMULATED}).items() if k not in SKIP}
        for c in configs_of(rows)
    ]
    if not flats:
        return None, None
    keys = list(dict.fromkeys(k for f in flats for k in f))
    varying = [k for k in keys if len(distinct(f.get(k) for f in flats)) > 1]
    configs = configs_of(rows)
    fixed = [[k, _meaning(k, configs), fmt(flats[0].get(k))] for k in keys
             if k not in varying and flats[0].get(k) not in ([], None)]  # fmt: skip
    constant = (["setting", "meaning", "value"], fixed)
    if not varying:
        return constant, None
    combos = sorted(distinct([f.get(k) for k in varying] for f in flats), key=order)
    lines = [[fmt(v) for v in combo] for combo in combos]
    return constant, ([label(k, configs) for k in varying], lines)
