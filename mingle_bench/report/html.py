"""``report.html``: a results folder's tables and figures in one self-contained page.

The page is the folder's ``table.md`` rendered as HTML (headings, bullet lists, tables,
paragraphs, inline code, bold) followed by its figures (``curves.png``, ``learning_curves.png``)
inlined as base64 PNG, with a small inline style sheet: no script, no external link, stylesheet,
font or image, so it can be mailed or attached as it is. Links of ``table.md`` to a figure of the
folder become links within the page; other links become their text.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Sequence

from mingle_bench.io import atomic_write_text

REPORT_FILE = "report.html"
#: the figures of a run folder, in page order, with their captions
FIGURES: tuple[tuple[str, str], ...] = (
    ("curves.png", "ROC and precision-recall curves on the test set (mean over seeds, ± std band)"),
    ("learning_curves.png", "Validation metric by optimiser step (mean over the seeds still running, ± std band)"),
)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; } tr:nth-child(even) td { background: #fafafa; }
code { background: #f4f4f4; padding: 0 0.2em; border-radius: 3px; font-size: 0.92em; }
figure { margin: 1.5em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.wide { overflow-x: auto; }
blockquote { margin: 1em 0; padding: 0.5em 1em; border-left: 4px solid #d9822b; background: #fdf6ec; }
"""


def _inline(text: str, anchors: dict[str, str]) -> str:
    """Escape ``text`` and render inline code, bold and links (to page anchors, or plain text)."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if len(part) >= 2 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        s = html.escape(part, quote=False)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)

        def link(m: re.Match) -> str:
            label, target = m.group(1), m.group(2)
            return f'<a href="#{anchors[target]}">{label}</a>' if target in anchors else label
        out.append(re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, s))
    return "".join(out)


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def markdown_to_html(md: str, anchors: dict[str, str] | None = None) -> str:
    """The subset of Markdown our tables use (``#`` headings, ``-`` lists, ``>`` notes, pipe tables,
    paragraphs, inline code, bold, links) as HTML. ``anchors`` maps link targets (file names)
    to ids of this page; other links are shown as their text."""
    anchors = anchors or {}
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"^(#{1,6})\s+(.*)$", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2), anchors)}</h{level}>")
            i += 1
        elif line.startswith(">"):
            quote = []
            while i < len(lines) and lines[i].startswith(">"):
                quote.append(lines[i].lstrip("> ").strip())
                i += 1
            out.append(f"<blockquote>{_inline(' '.join(quote), anchors)}</blockquote>")
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(lines[i])
                i += 1
            body = [r for r in rows if not re.fullmatch(r"[\s|:\-]+", r)]
            head, rest = body[0], body[1:]
            out.append('<div class="wide"><table><thead><tr>' + "".join(f"<th>{_inline(c, anchors)}</th>" for c in _cells(head))
                       + "</tr></thead><tbody>")
            for r in rest:
                out.append("<tr>" + "".join(f"<td>{_inline(c, anchors)}</td>" for c in _cells(r)) + "</tr>")
            out.append("</tbody></table></div>")
        elif re.match(r"^\s*[-*]\s+", line):
            out.append("<ul>")
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i])
                out.append(f"<li>{_inline(item, anchors)}</li>")
                i += 1
            out.append("</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#{1,6}\s|\s*\||\s*[-*]\s|>)", lines[i]):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para), anchors)}</p>")
    return "\n".join(out)


def write_report(folder: str | Path, figures: Sequence[tuple[str, str]] = FIGURES) -> Path:
    """Write ``<folder>/report.html`` from its ``table.md`` and the figures of ``figures`` that
    exist (file name, caption); returns the path."""
    folder = Path(folder)
    md_path = folder / "table.md"
    md = md_path.read_text(encoding="utf-8") if md_path.exists() else f"# {folder.name}\n\nNo finished cells yet.\n"
    present = [(name, caption) for name, caption in figures if (folder / name).is_file()]
    anchors = {name: "fig-" + Path(name).stem.replace("_", "-") for name, _ in present}
    title = next((ln.lstrip("# ").strip() for ln in md.splitlines() if ln.startswith("# ")), folder.name)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             markdown_to_html(md, anchors)]
    if present:
        parts.append("<h2>Figures</h2>")
    for name, caption in present:
        data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
        parts.append(f'<figure id="{anchors[name]}"><img alt="{html.escape(caption)}" '
                     f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)} '
                     f"({html.escape(name)})</figcaption></figure>")
    parts.append("</body></html>\n")
    return atomic_write_text(folder / REPORT_FILE, "\n".join(parts))
