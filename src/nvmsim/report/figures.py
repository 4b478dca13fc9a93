"""The report's figures: a metric against a numeric sweep axis, one line per combination of
the other axes, a 95 % confidence band of the mean over device instances, and the software
baseline as a dashed line; saved as SVG, PDF and a 300-dpi PNG.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

from nvmsim.figures import pyplot
from nvmsim.files import atomic_write
from nvmsim.report.labels import group_label, label, text
from nvmsim.report.rows import Row, axis_names, configs_of, distinct, fmt, group
from nvmsim.report.tables import ci95, has_baseline, scale

LINESTYLES = ("-", "-.", ":")
FORMATS = ("svg", "pdf", "png")
PNG_DPI = 300


def numeric_axis(rows: list[Row], names: list[str]) -> str | None:
    """The first swept axis whose values are all numbers."""
    for n in names:
        values = distinct(r["axes"].get(n) for r in rows)
        if len(values) > 1 and all(isinstance(v, int | float) for v in values):
            return n
    return None


def band_caption(rows: list[Row], metric: str = "accuracy") -> str:
    """What the figure shows: the band, how many device instances, and the dashed line."""
    ns = sorted({int(r["metrics"]["repeats"]) for r in rows})
    n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    test = sorted({int(r["metrics"]["test_images"]) for r in rows if "test_images" in r["metrics"]})
    on = f" on {test[0]:,} test images" if len(test) == 1 else ""
    what = (
        f"Points: mean {label(metric)} over {n} device instances (repeats){on}. Shaded band: "
        f"95 % confidence interval of that mean (t interval over the {n} instances; "
        "narrower than the line where it is not visible)."
    )
    if has_baseline(rows, metric):
        what += " Dashed: the same network in software (digital), per line."
    return what


def build_figure(
    rows: list[Row],
    title: str,
    metric: str = "accuracy",
    x: str | None = None,
    panels: list[str] | None = None,
    log_x: bool = False,
):
    """``metric`` vs ``x`` (default: the first numeric axis; ``log_x`` for a log scale), one
    line per combination of the other axes; one panel per combination of ``panels`` axes.
    A matplotlib figure, or None when no axis is numeric."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    names = axis_names(rows)
    xaxis = x if x in names and _plottable(rows, x) else numeric_axis(rows, names)
    if xaxis is None:
        return None
    configs = configs_of(rows)
    panel_axes = [n for n in (panels or []) if n in names and n != xaxis]
    line_axes = [n for n in names if n != xaxis and n not in panel_axes]
    panel_groups = group(rows, panel_axes)
    ncols = min(2, len(panel_groups))
    nrows = -(-len(panel_groups) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(7 if ncols == 1 else 11, 4.2 * nrows if nrows == 1 else 3.6 * nrows),
        squeeze=False, sharey=True,
    )  # fmt: skip
    k = scale(metric)
    baseline = has_baseline(rows, metric)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (pkey, prows) in zip(axes.flat, panel_groups, strict=False):
        lines = group(prows, line_axes)
        for i, (key, rs) in enumerate(lines):
            rs.sort(key=lambda r: r["axes"][xaxis])
            xs = [r["axes"][xaxis] for r in rs]
            ms = [r["metrics"][metric] * k for r in rs]
            hw = [ci95(r["metrics"][f"{metric}_std"] * k, r["metrics"]["repeats"]) for r in rs]
            colour = colours[i % len(colours)]
            style = LINESTYLES[(i // len(colours)) % len(LINESTYLES)]
            ax.plot(xs, ms, marker="o", ms=3, color=colour, ls=style,
                    label=group_label(line_axes, key, fmt) or label(metric))  # fmt: skip
            ax.fill_between(xs, [m - h for m, h in zip(ms, hw, strict=True)],
                            [m + h for m, h in zip(ms, hw, strict=True)],
                            color=colour, alpha=0.25, lw=0)  # fmt: skip
            if baseline:
                soft = [100 * r["metrics"]["software_accuracy"] for r in rs]
                ax.plot(xs, soft, color=colour, ls="--", lw=1, label="_software")
        ax.set_xlabel(label(xaxis, configs))
        if log_x:
            ax.set_xscale("log")
        elif all(isinstance(r["axes"][xaxis], int) for r in prows):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # seeds, bits, steps
        ax.grid(alpha=0.3)
        if panel_axes:
            ax.set_title(group_label(panel_axes, pkey, fmt), fontsize=9)
        if baseline:
            ax.plot([], [], color="grey", ls="--", lw=1, label=text("software_accuracy"))
        if len(lines) > 1 or baseline:
            ax.legend(fontsize=7 if len(lines) <= 8 else 6, loc="best")
    for ax in axes[:, 0]:
        ax.set_ylabel(label(metric))
    for ax in list(axes.flat)[len(panel_groups) :]:
        ax.axis("off")
    heading = title if metric == "accuracy" else f"{title} ({label(metric)})"
    fig.suptitle("\n".join(textwrap.wrap(heading, 90)), fontsize=10)
    fig.tight_layout()
    return fig


def _plottable(rows: list[Row], x: str) -> bool:
    """Whether every run has a value of axis ``x`` that can be an x coordinate: all numbers,
    or all text (then one category each)."""
    values = [r["axes"].get(x) for r in rows]
    return all(isinstance(v, int | float) for v in values) or all(
        isinstance(v, str) for v in values
    )


def save_figure(fig, base: Path) -> dict[str, Path]:
    """Write ``fig`` as ``base.svg``, ``base.pdf`` and a 300-dpi ``base.png`` (each
    atomically) and close it; returns the paths by format."""
    paths = {}
    for ext in FORMATS:
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=PNG_DPI if ext == "png" else None, metadata=_meta(ext))
        paths[ext] = atomic_write(base.with_suffix(f".{ext}"), buf.getvalue())
    pyplot().close(fig)
    return paths


def _meta(ext: str) -> dict[str, str | None]:
    """Reproducible files: no creation date in SVG/PDF (the PNG carries none by default)."""
    if ext == "svg":
        return {"Date": None}
    if ext == "pdf":
        return {"CreationDate": None}
    return {}
