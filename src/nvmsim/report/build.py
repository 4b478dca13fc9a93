"""A study's report: ``results.md``, ``report.html`` and each figure as SVG, PDF and PNG.

Sections: the software baselines, one per reported metric (figure, caption, per-run table,
optional pooled table), the setup that produced the runs, and their provenance.
"""

from __future__ import annotations

from pathlib import Path

from nvmsim.files import atomic_write
from nvmsim.report.document import Block, Document, Figure, Section, TableBlock, Text
from nvmsim.report.figures import band_caption, build_figure, save_figure
from nvmsim.report.html import render_html
from nvmsim.report.labels import label, text
from nvmsim.report.markdown import markdown_table, render_markdown
from nvmsim.report.provenance import provenance_table
from nvmsim.report.rows import Row
from nvmsim.report.setup import config_tables, data_table, models_table
from nvmsim.report.tables import baseline_table, ci95, metrics_of, pooled, runs_table

__all__ = ["build_figure", "ci95", "markdown_table", "pooled", "write_report"]


def _baseline(rows: list[Row]) -> Section:
    table = baseline_table(rows)
    if table is None:
        blocks: list[Block] = [Text("These runs store no software (digital) accuracy.")]
    else:
        blocks = [
            Text("Each model in software (the trained network, digital, on the same test "
                 "images) beside the worst and best mean accuracy of its analog points."),
            TableBlock("", table, "baseline"),
        ]  # fmt: skip
    return Section("baseline", "Software baseline", blocks)


def _metric(rows: list[Row], metric: str, out: Path, heading: str, opts: dict) -> Section:
    blocks: list[Block] = []
    fig = build_figure(rows, heading, metric, opts["x"], opts["panels"], opts["log_x"])
    if fig is not None:
        files = save_figure(fig, out / metric)
        blocks.append(Figure(files, band_caption(rows, metric), f"{text(metric)} figure"))
    blocks.append(TableBlock(f"{text(metric)}, per run", runs_table(rows, metric)))
    if opts["pool"]:
        over = ", ".join(text(p) for p in opts["pool"])
        table = pooled(rows, opts["pool"], metric)
        blocks.append(TableBlock(f"{text(metric)}, pooled over {over}", table, "pooled"))
    return Section(metric, label(metric), blocks)


def _setup(rows: list[Row]) -> Section:
    constant, varying = config_tables(rows)
    tables = [
        ("Models, training recipe and software accuracy", models_table(rows)),
        ("Data", data_table(rows)),
        ("Analog and scenario settings shared by every run", constant),
        ("Analog and scenario settings per point group", varying),
    ]
    blocks: list[Block] = [TableBlock(t, tab, "setup") for t, tab in tables if tab is not None]
    if not blocks:
        blocks = [Text("These runs store no resolved configuration.")]
    return Section("setup", "Setup", blocks)


def write_report(
    rows: list[Row],
    out_dir: str | Path,
    title: str,
    description: str = "",
    x: str | None = None,
    panels: list[str] | None = None,
    log_x: bool = False,
    pool: list[str] | None = None,
    store_path: str | Path | None = None,
) -> dict[str, Path]:
    """Write the report of study ``title`` (its name) into ``out_dir``; the ``description``,
    when given, is the report's title. ``x``, ``panels`` and ``log_x`` shape the figures
    (:func:`~.figures.build_figure`); ``pool`` adds tables pooled over those axes
    (:func:`~.tables.pooled`). Returns the written paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    heading = description or title
    opts = {"x": x, "panels": panels, "log_x": log_x, "pool": pool or []}
    metric_sections = [_metric(rows, m, out, heading, opts) for m in metrics_of(rows)]
    sections = [_baseline(rows), *metric_sections, _setup(rows)]
    sections.append(Section("provenance", "Provenance", [
        TableBlock("Versions, seeds, dates and wall time", provenance_table(rows, store_path),
                   "provenance"),
    ]))  # fmt: skip
    lead = f"Study {title}: {len(rows)} runs. Accuracies are in percent."
    doc = Document(heading, lead, sections)
    paths = {
        "markdown": atomic_write(out / "results.md", render_markdown(doc, out)),
        "html": atomic_write(out / "report.html", render_html(doc, out)),
    }
    for section in metric_sections:
        for block in section.blocks:
            if isinstance(block, Figure):
                name = "figure" if section.ident == "accuracy" else f"figure_{section.ident}"
                paths.update({f"{name}_{e}" if e != "png" else name: p
                              for e, p in block.files.items()})  # fmt: skip
    return paths
