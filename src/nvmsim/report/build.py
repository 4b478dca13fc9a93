"""A study's report: ``results.md``, ``report.html`` and each figure as SVG, PDF and PNG.

Sections: the software baselines, one per reported metric (figure, caption, per-run table,
optional pooled table), the setup that produced the runs, and their provenance.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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
from nvmsim.studies.store import metric_problem

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


def check_rows(rows: list[Row], store_path: str | Path | None = None) -> list[str]:
    """The metrics the report shows, after checking that the runs can be reported: every
    metric the report reads a finite number in range, with ``repeats`` beside it (runs of a
    scenario that stores none of them get a report without result sections). Raises
    ValueError naming the store (``store_path``) and the run."""
    where = f"{store_path}: " if store_path is not None else ""
    metrics = metrics_of(rows)
    needed = [*metrics, *(f"{m}_std" for m in metrics), "repeats"]
    for r in rows:
        run = f"{where}run {r.get('run_id', '?')}"
        m = r["metrics"]
        for key in needed + [k for k in ("software_accuracy", "test_images") if k in m]:
            if key not in m:
                raise ValueError(f"{run}: no {key!r} metric (the report needs it)")
            problem = metric_problem(key, m[key])
            if problem:
                raise ValueError(f"{run}: {problem}")
    return metrics


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
    metrics = check_rows(rows, store_path)  # before anything is written
    created = _missing_ancestor(out.parent)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
        try:
            paths = _render(rows, work, title, description, metrics, x, panels, log_x, pool,
                            store_path)  # fmt: skip
            out.mkdir(exist_ok=True)
            for p in sorted(work.iterdir()):
                os.replace(p, out / p.name)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        if created is not None:  # folders made for this report: a failure leaves none
            shutil.rmtree(created, ignore_errors=True)
        raise
    return {kind: out / p.name for kind, p in paths.items()}


def _missing_ancestor(folder: Path) -> Path | None:
    """The outermost folder of ``folder`` (itself included) that does not exist yet."""
    missing = None
    for f in [folder, *folder.parents]:
        if f.exists():
            break
        missing = f
    return missing


def _render(
    rows: list[Row],
    out: Path,
    title: str,
    description: str,
    metrics: list[str],
    x: str | None,
    panels: list[str] | None,
    log_x: bool,
    pool: list[str] | None,
    store_path: str | Path | None,
) -> dict[str, Path]:
    """Write the report's files into the (new, empty) folder ``out``."""
    heading = description or title
    opts = {"x": x, "panels": panels, "log_x": log_x, "pool": pool or []}
    metric_sections = [_metric(rows, m, out, heading, opts) for m in metrics]
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
