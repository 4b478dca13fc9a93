"""A report :class:`~.document.Document` as markdown (``results.md``)."""

from __future__ import annotations

from pathlib import Path

from nvmsim.report.document import Document, Figure, TableBlock, Text
from nvmsim.report.rows import Row, Table
from nvmsim.report.tables import runs_table


def markdown(table: Table) -> str:
    """A table in markdown."""
    head, body = table
    lines = ["| " + " | ".join(map(_cell, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(_cell, cells)) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def markdown_table(rows: list[Row], metric: str = "accuracy") -> str:
    """:func:`~.tables.runs_table` in markdown."""
    return markdown(runs_table(rows, metric))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(doc: Document, folder: Path) -> str:
    """The document in markdown; figure files are linked relative to ``folder``."""
    parts = [f"# {doc.title}\n", f"{doc.lead}\n"]
    for section in doc.sections:
        parts.append(f"## {section.title}\n")
        for block in section.blocks:
            if isinstance(block, Text):
                parts.append(f"{block.text}\n")
            elif isinstance(block, TableBlock):
                title = f"### {block.title}\n\n" if block.title else ""
                parts.append(f"{title}{markdown(block.table)}")
            elif isinstance(block, Figure):
                png = block.files["png"].relative_to(folder)
                others = ", ".join(f"[{e.upper()}]({p.relative_to(folder)})"
                                   for e, p in block.files.items())  # fmt: skip
                parts.append(f"![{block.alt}]({png})\n\n{block.caption} ({others})\n")
    return "\n".join(parts)
