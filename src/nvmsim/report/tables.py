"""The report's tables: one line per run, pooled over axes, and the software baselines.

Every header comes from the label table (:mod:`.labels`) and fractions are in percent.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
from scipy import stats

from nvmsim.report.labels import is_percent, label
from nvmsim.report.rows import Row, Table, axis_names, configs_of, fmt, group, sorted_rows

REPORTED = ("accuracy", "accuracy_before", "improvement", "loss")


def metrics_of(rows: list[Row]) -> list[str]:
    """Reported metrics that every run has (with a ``_std``), in a fixed order."""
    return [
        m for m in REPORTED if all(m in r["metrics"] and f"{m}_std" in r["metrics"] for r in rows)
    ]


def scale(metric: str) -> float:
    """100 for a fraction reported in percent, else 1."""
    return 100.0 if is_percent(metric) else 1.0


def ci95(std: float, n: int) -> float:
    """Half-width of the 95 % t confidence interval of a mean of ``n`` values."""
    return 0.0 if n < 2 else float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)


def has_baseline(rows: list[Row], metric: str = "accuracy") -> bool:
    """Whether every run carries the software (digital) accuracy beside ``metric``."""
    return metric == "accuracy" and all("software_accuracy" in r["metrics"] for r in rows)


def runs_table(rows: list[Row], metric: str = "accuracy") -> Table:
    """One line per run: axes, mean, std over repeats, 95 % CI of the mean, repeats, and the
    software baseline where the runs have one."""
    names, configs = axis_names(rows), configs_of(rows)
    k = scale(metric)
    base = has_baseline(rows, metric)
    head = [label(n, configs) for n in names]
    head += [f"{label(metric)} mean", "std", "95 % CI ±", "repeats"]
    head += [label("software_accuracy")] if base else []
    body = []
    for r in sorted_rows(rows, names):
        m = r["metrics"]
        mean, std, n = m[metric] * k, m[f"{metric}_std"] * k, int(m["repeats"])
        cells = [fmt(r["axes"].get(a, "")) for a in names]
        cells += [f"{mean:.2f}", f"{std:.2f}", f"{ci95(std, n):.2f}", str(n)]
        cells += [f"{100 * m['software_accuracy']:.2f}"] if base else []
        body.append(cells)
    return head, body


def pooled(rows: list[Row], pool: list[str], metric: str = "accuracy") -> Table:
    """One line per combination of the axes not in ``pool``: the mean, std, min and max over
    the pooled runs of each run's mean (e.g. over training seeds), and how many were pooled."""
    names = [n for n in axis_names(rows) if n not in pool]
    configs = configs_of(rows)
    head = [label(n, configs) for n in names]
    head += [f"{label(metric)} mean of runs", "std over runs", "min", "max", "runs"]
    body = []
    for key, members in group(rows, names):
        values = np.array([r["metrics"][metric] for r in members]) * scale(metric)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        cells = (values.mean(), std, values.min(), values.max())
        body.append([*(fmt(v) for v in key), *(f"{v:.2f}" for v in cells), str(len(values))])
    return head, body


def baseline_table(rows: list[Row]) -> Table | None:
    """Per model: its software (digital) test accuracy beside the range of its analog mean
    accuracies over the study's points (None when the runs carry no baseline)."""
    if not rows or not has_baseline(rows):
        return None
    by_model: dict[str, list[Row]] = {}
    for r in rows:
        by_model.setdefault(_model(r), []).append(r)
    head = ["model", label("software_accuracy"), "analog accuracy (%): worst", "best", "runs"]
    body = []
    for model, members in sorted(by_model.items()):
        soft = statistics.fmean(r["metrics"]["software_accuracy"] for r in members)
        accs = [100 * r["metrics"]["accuracy"] for r in members]
        cells = [f"{100 * soft:.2f}", f"{min(accs):.2f}", f"{max(accs):.2f}", str(len(members))]
        body.append([model, *cells])
    return head, body


def _model(r: Row) -> str:
    config = r.get("config")
    if isinstance(config, dict) and "model" in config:
        return str(config["model"])
    return str(r["axes"].get("model", "model"))
