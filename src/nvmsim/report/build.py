"""Tables (markdown), figures (matplotlib) and a self-contained HTML page for a study.

Figures put the first numeric sweep axis on x, draw one line per combination of the other
axes, and shade a 95 % confidence band of the mean over repeats (t interval).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

PERCENT = {"accuracy", "accuracy_before", "improvement"}
REPORTED = ("accuracy", "accuracy_before", "improvement", "loss")


def metrics_of(rows: list[dict[str, Any]]) -> list[str]:
    """Reported metrics that every run has (with a ``_std``), in a fixed order."""
    return [
        m for m in REPORTED if all(m in r["metrics"] and f"{m}_std" in r["metrics"] for r in rows)
    ]


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def ci95(std: float, n: int) -> float:
    """Half-width of the 95 % t confidence interval of a mean of ``n`` values."""
    return 0.0 if n < 2 else float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)


def axis_names(rows: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in rows:
        for k in r["axes"]:
            if k not in names:
                names.append(k)
    return names


def _order(values) -> list[tuple[int, Any]]:
    """Sort key of axis values: numbers numerically, others as text."""
    return [(0, v) if isinstance(v, int | float) else (1, str(v)) for v in values]


def sorted_rows(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Runs ordered by their axis values (numbers numerically, others as text)."""
    return sorted(rows, key=lambda r: _order(r["axes"].get(n) for n in names))


def runs_table(
    rows: list[dict[str, Any]], metric: str = "accuracy", mean_label: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and lines of a table with one line per run: axes, mean ± std (over repeats)
    and the 95 % CI of the mean."""
    names = axis_names(rows)
    scale = 100 if metric in PERCENT else 1
    head = [*names, mean_label or f"{metric} (mean)", "std", "95 % CI ±", "repeats"]
    body = []
    for r in sorted_rows(rows, names):
        m = r["metrics"]
        mean, std, n = m[metric] * scale, m[f"{metric}_std"] * scale, m["repeats"]
        cells = [_fmt(r["axes"].get(n, "")) for n in names]
        body.append([*cells, f"{mean:.2f}", f"{std:.2f}", f"{ci95(std, n):.2f}", str(n)])
    return head, body


def markdown_table(rows: list[dict[str, Any]], metric: str = "accuracy") -> str:
    """:func:`runs_table` in markdown."""
    return _markdown(*runs_table(rows, metric))


def pooled(
    rows: list[dict[str, Any]], pool: list[str], metric: str = "accuracy"
) -> tuple[list[str], list[list[str]]]:
    """Header and lines of a table with one line per combination of the axes not in ``pool``:
    the mean, std, min and max over the pooled runs of each run's mean (e.g. over training
    seeds), and how many runs were pooled."""
    names = [n for n in axis_names(rows) if n not in pool]
    scale = 100 if metric in PERCENT else 1
    head = [*names, f"{metric} (mean of runs)", "std over runs", "min", "max", "runs"]
    body = []
    for key, group in _group(rows, names):
        values = np.array([r["metrics"][metric] for r in group]) * scale
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        stats_ = (values.mean(), std, values.min(), values.max())
        body.append([*(_fmt(v) for v in key), *(f"{v:.2f}" for v in stats_), str(len(values))])
    return head, body


def _markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def _numeric_axis(rows: list[dict[str, Any]], names: list[str]) -> str | None:
    for n in names:
        values = {r["axes"].get(n) for r in rows}
        if len(values) > 1 and all(isinstance(v, int | float) for v in values):
            return n
    return None


LINESTYLES = ("-", "--", ":", "-.")


def _group(rows: list[dict[str, Any]], names: list[str]) -> list[tuple[tuple, list]]:
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[tuple(r["axes"].get(n) for n in names)].append(r)
    return sorted(groups.items(), key=lambda kv: _order(kv[0]))


def _label(names: list[str], key: tuple) -> str:
    return ", ".join(f"{n}={_fmt(v)}" for n, v in zip(names, key, strict=True))


def figure_png(
    rows: list[dict[str, Any]],
    title: str,
    metric: str = "accuracy",
    x: str | None = None,
    panels: list[str] | None = None,
    log_x: bool = False,
) -> bytes | None:
    """:func:`build_figure` as PNG bytes (None when no axis is numeric)."""
    fig = build_figure(rows, title, metric, x, panels, log_x)
    if fig is None:
        return None
    from nvmsim.figures import pyplot

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    pyplot().close(fig)
    return buf.getvalue()


def build_figure(
    rows: list[dict[str, Any]],
    title: str,
    metric: str = "accuracy",
    x: str | None = None,
    panels: list[str] | None = None,
    log_x: bool = False,
):
    """Metric vs ``x`` (default: the first numeric axis; ``log_x`` for a log scale), one line
    per combination of the other axes, with a 95 % confidence band; one panel per
    combination of ``panels`` axes. A matplotlib figure, or None when no axis is numeric."""
    from nvmsim.figures import pyplot

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    names = axis_names(rows)
    xaxis = x if x in names else _numeric_axis(rows, names)
    if xaxis is None:
        return None
    panel_axes = [n for n in (panels or []) if n in names and n != xaxis]
    line_axes = [n for n in names if n != xaxis and n not in panel_axes]
    panel_groups = _group(rows, panel_axes)
    ncols = min(2, len(panel_groups))
    nrows = -(-len(panel_groups) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(7 if ncols == 1 else 11, 4.2 * nrows if nrows == 1 else 3.6 * nrows),
        squeeze=False, sharey=True,
    )  # fmt: skip
    scale = 100 if metric in PERCENT else 1
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (pkey, prows) in zip(axes.flat, panel_groups, strict=False):
        lines = _group(prows, line_axes)
        for i, (key, rs) in enumerate(lines):
            rs.sort(key=lambda r: r["axes"][xaxis])
            xs = [r["axes"][xaxis] for r in rs]
            ms = [r["metrics"][metric] * scale for r in rs]
            hw = [ci95(r["metrics"][f"{metric}_std"] * scale, r["metrics"]["repeats"]) for r in rs]
            colour = colours[i % len(colours)]
            style = LINESTYLES[(i // len(colours)) % len(LINESTYLES)]
            ax.plot(xs, ms, marker="o", ms=3, color=colour, ls=style,
                    label=_label(line_axes, key) or metric)  # fmt: skip
            ax.fill_between(xs, [m - h for m, h in zip(ms, hw, strict=True)],
                            [m + h for m, h in zip(ms, hw, strict=True)],
                            color=colour, alpha=0.2, lw=0)  # fmt: skip
        ax.set_xlabel(xaxis)
        if log_x:
            ax.set_xscale("log")
        elif all(isinstance(r["axes"][xaxis], int) for r in prows):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # seeds, bits, steps
        ax.grid(alpha=0.3)
        if panel_axes:
            ax.set_title(_label(panel_axes, pkey), fontsize=9)
        if len(lines) > 1:
            ax.legend(fontsize=7 if len(lines) <= 8 else 6, loc="best")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric} (%)" if metric in PERCENT else metric)
    for ax in list(axes.flat)[len(panel_groups) :]:
        ax.axis("off")
    fig.suptitle(title if metric == "accuracy" else f"{title}: {metric}", fontsize=11)
    fig.tight_layout()
    return fig


def _write(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    tmp.replace(path)


def write_report(
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    title: str,
    description: str = "",
    x: str | None = None,
    panels: list[str] | None = None,
    log_x: bool = False,
    pool: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``results.md``, one ``<metric>.png`` per metric and ``report.html`` (figures
    embedded, so the page is one self-contained file). ``x`` and ``panels`` choose the
    figures' x axis and the axes that split them into panels (see :func:`build_figure`);
    ``pool`` adds a table per metric that pools runs over those axes (:func:`pooled`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = metrics_of(rows)
    paths = {"markdown": out / "results.md", "html": out / "report.html"}
    parts, sections = [f"# {title}\n\n{description}\n"], []
    for metric in metrics:
        parts.append(f"## {metric}\n\n{markdown_table(rows, metric)}")
        table = pooled(rows, pool, metric) if pool else None
        if table is not None:
            parts.append(f"## {metric}, pooled over {', '.join(pool)}\n\n{_markdown(*table)}")
        png = figure_png(rows, title, metric, x=x, panels=panels, log_x=log_x)
        if png is not None:
            key = "figure" if metric == "accuracy" else f"figure_{metric}"
            paths[key] = out / f"{metric}.png"
            _write(paths[key], png)
        sections.append((metric, png, table))
    _write(paths["markdown"], "\n".join(parts))
    _write(paths["html"], render_html(rows, title, description, sections, pool))
    return paths


def _html_table(head: list[str], body: list[list[str]], cls: str) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body
    )
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead>\n<tbody>\n{trs}\n</tbody></table>'


def render_html(
    rows: list[dict[str, Any]],
    title: str,
    description: str,
    sections: list[tuple[str, bytes | None, tuple[list[str], list[list[str]]] | None]],
    pool: list[str] | None = None,
) -> str:
    blocks = []
    for i, (metric, png, pooled_) in enumerate(sections):
        img = ""
        if png is not None:
            b64 = base64.b64encode(png).decode()
            ident = ' id="figure"' if i == 0 else ""
            img = (
                f'<img{ident} alt="{html.escape(metric)} figure" src="data:image/png;base64,{b64}">'
            )
        unit = " %" if metric in PERCENT else ""
        runs = _html_table(*runs_table(rows, metric, f"{metric}{unit}"), "results")
        blocks.append(f"<h2>{html.escape(metric)}</h2>\n{img}\n{runs}")
        if pooled_ is not None:
            over = html.escape(", ".join(pool or []))
            blocks.append(
                f"<h3>{html.escape(metric)}, pooled over {over}</h3>\n"
                + _html_table(*pooled_, "pooled")
            )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(description)}</p>
{"".join(blocks)}
<p>{len(rows)} runs. Generated by nvmsim.</p>
<script>
// Lets a headless check see that the embedded figure decoded.
const fig = document.getElementById("figure");
function mark() {{ document.body.dataset.figureWidth = fig ? fig.naturalWidth : 0; }}
if (!fig || fig.complete) mark(); else fig.addEventListener("load", mark);
</script>
</body></html>
"""
