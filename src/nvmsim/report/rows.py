"""Helpers on stored runs (``Store.rows`` dicts) shared by the report's tables and figures."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

Row = dict[str, Any]
Table = tuple[list[str], list[list[str]]]  # header, lines of cells


def fmt(v: Any) -> str:
    """A value as a table cell: floats compactly (``inf`` too), lists and tables as JSON-like
    text, None as an em dash (not set)."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | dict):
        return json.dumps(v, separators=(", ", ": ")).replace("Infinity", "inf")
    return str(v)


def axis_names(rows: list[Row]) -> list[str]:
    """Swept axes of the runs, in the order they first appear."""
    names: list[str] = []
    for r in rows:
        for k in r["axes"]:
            if k not in names:
                names.append(k)
    return names


def order(values: Iterable[Any]) -> list[tuple[int, Any]]:
    """Sort key of axis values: numbers numerically, others as text."""
    return [(0, v) if isinstance(v, int | float) else (1, str(v)) for v in values]


def sorted_rows(rows: list[Row], names: list[str]) -> list[Row]:
    """Runs ordered by their axis values (numbers numerically, others as text)."""
    return sorted(rows, key=lambda r: order(r["axes"].get(n) for n in names))


def _hashable(v: Any) -> Any:
    """An axis value as a dict key: lists and tables (a swept ``kwargs.sizes``) as JSON."""
    return json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v


def group(rows: list[Row], names: list[str]) -> list[tuple[tuple, list[Row]]]:
    """Runs grouped by their values of the axes ``names``, groups in axis order."""
    groups: dict[tuple, tuple[tuple, list[Row]]] = {}
    for r in rows:
        key = tuple(r["axes"].get(n) for n in names)
        groups.setdefault(tuple(map(_hashable, key)), (key, []))[1].append(r)
    return sorted(groups.values(), key=lambda kv: order(kv[0]))


def key_label(names: list[str], key: tuple) -> str:
    """``name=value, ...`` of one group."""
    return ", ".join(f"{n}={fmt(v)}" for n, v in zip(names, key, strict=True))


def configs_of(rows: list[Row]) -> list[dict[str, Any]]:
    """The resolved configs of the runs that carry one (test rows may not)."""
    return [r["config"] for r in rows if isinstance(r.get("config"), dict)]


def distinct(values: Iterable[Any]) -> list[Any]:
    """Values without repeats, in first-seen order (compared as cells, so lists work)."""
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(fmt(v), v)
    return list(seen.values())


def compact(values: list[Any], most: int = 4) -> str:
    """Distinct values as one cell: all of them, or ``first … last (n values)`` if many."""
    vals = distinct(values)
    if len(vals) > most and all(isinstance(v, int | float) for v in vals):
        vals = sorted(vals)
        return f"{fmt(vals[0])} … {fmt(vals[-1])} ({len(vals)} values)"
    return ", ".join(fmt(v) for v in vals)
