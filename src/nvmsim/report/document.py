"""A report as plain typed parts, so that the markdown and HTML renderers say the same thing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nvmsim.report.rows import Table


@dataclass(frozen=True)
class Text:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class TableBlock:
    """A titled table (``css`` names its kind for styling and tests)."""

    title: str
    table: Table
    css: str = "results"


@dataclass(frozen=True)
class Figure:
    """A figure saved as files (by format: svg, pdf, png) and what it shows."""

    files: dict[str, Path]
    caption: str
    alt: str


Block = Text | TableBlock | Figure


@dataclass(frozen=True)
class Section:
    """A titled part of the report; ``ident`` is its HTML id."""

    ident: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    """The whole report: a title, a lead paragraph and sections in order."""

    title: str
    lead: str
    sections: list[Section]
