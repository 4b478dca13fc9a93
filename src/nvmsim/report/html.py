"""A report :class:`~.document.Document` as one self-contained HTML page (``report.html``):
figures embedded as PNG, with links to their SVG and PDF files beside the page."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from nvmsim.report.document import Block, Document, Figure, TableBlock, Text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 64em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
table.setup td:first-child, table.provenance td:first-child { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #444; }
"""

# Lets a headless check see that the first embedded figure decoded.
SCRIPT = """
const fig = document.getElementById("figure");
function mark() { document.body.dataset.figureWidth = fig ? fig.naturalWidth : 0; }
if (!fig || fig.complete) mark(); else fig.addEventListener("load", mark);
"""


def _table(block: TableBlock) -> str:
    head, body = block.table
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body
    )
    title = f"<h3>{html.escape(block.title)}</h3>\n" if block.title else ""
    return (
        f'{title}<table class="{block.css}"><thead><tr>{th}'
        f"</tr></thead>\n<tbody>\n{trs}\n</tbody></table>"
    )


def _figure(block: Figure, folder: Path, first: bool) -> str:
    b64 = base64.b64encode(block.files["png"].read_bytes()).decode()
    ident = ' id="figure"' if first else ""
    links = " · ".join(
        f'<a href="{html.escape(str(p.relative_to(folder)))}">{e.upper()}</a>'
        for e, p in block.files.items()
    )
    return (
        f'<figure><img{ident} alt="{html.escape(block.alt)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{html.escape(block.caption)} ({links})</figcaption></figure>"
    )


def render_html(doc: Document, folder: Path) -> str:
    """The document as HTML; figure files are read from and linked relative to ``folder``."""
    parts, first = [], True

    def block_html(block: Block) -> str:
        nonlocal first
        if isinstance(block, Text):
            return f"<p>{html.escape(block.text)}</p>"
        if isinstance(block, TableBlock):
            return _table(block)
        out = _figure(block, folder, first)
        first = False
        return out

    for section in doc.sections:
        inner = "\n".join(block_html(b) for b in section.blocks)
        parts.append(
            f'<section id="{section.ident}">\n<h2>{html.escape(section.title)}</h2>\n{inner}\n'
            "</section>"
        )
    title = html.escape(doc.title)
    body = "\n".join(parts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE}</style></head>
<body>
<h1>{title}</h1>
<p>{html.escape(doc.lead)}</p>
{body}
<script>{SCRIPT}</script>
</body></html>
"""
