"""Write a report document as one self-contained HTML page and as Markdown, tables as CSV.

A document is a title, a line of context and a list of Sections; each section has
paragraphs, figures (PNG files already in the output folder) and tables. The HTML embeds
every image as base64, so the single file can be mailed or opened anywhere; the Markdown
links the PNGs and CSVs beside it.

A table holds raw values (numbers in SI units, text, None for blank): its CSV writes them as
they are under snake_case headers that name the unit (`csv_columns`), and the pages show them
through per-column `formats` under people's headers (`columns`).

Example:
    >>> table = Table("points", ("model", "ms"), [("resnet50", 1.2e-3)], "points.csv",
    ...               csv_columns=("model", "time_s"), formats=(None, lambda s: f"{s * 1e3:,.3f}"))
    >>> write_pages("My study", "fp32", [Section("Results", ["text"], [], [table])], Path("out"))
    (PosixPath('out/report.html'), PosixPath('out/report.md'))
"""
from __future__ import annotations

import base64
import csv
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from .output_paths import write_text

FOLD_ROWS = 30  # HTML: longer tables start closed


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]  # the pages' headers, for people
    rows: list[tuple]  # raw values: numbers in SI units, text, or None (blank)
    csv_name: str  # file name under tables/, written with the raw rows
    csv_columns: tuple[str, ...] = ()  # the CSV's headers: snake_case with the unit (default: `columns`)
    formats: tuple = ()  # per column, how the pages show a value: a callable, or None for str()

    def shown_rows(self) -> list[tuple[str, ...]]:
        """The rows as the pages show them."""
        formats = self.formats or (None,) * len(self.columns)
        return [tuple("" if _missing(v) else (f or str)(v) for v, f in zip(row, formats)) for row in self.rows]


def _missing(value) -> bool:
    """None or a non-finite number (a ratio over zero): a blank cell, in the CSV and on the pages."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the output folder, e.g. "figures/chips.png"
    caption: str


@dataclass(frozen=True)
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    folded: bool = False  # HTML: inside <details>, closed (long lists of figures)


def write_table_csv(table: Table, out_dir: Path) -> Path:
    path = out_dir / "tables" / table.csv_name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(table.csv_columns or table.columns)
    writer.writerows(["" if _missing(v) else v for v in row] for row in table.rows)
    write_text(path, text.getvalue())
    return path


def write_pages(title: str, context: str, sections: list[Section], out_dir: Path) -> tuple[Path, Path]:
    """report.html (self-contained) and report.md in `out_dir`, plus tables/*.csv."""
    for section in sections:
        for table in section.tables:
            write_table_csv(table, out_dir)
    html_path = out_dir / "report.html"
    write_text(html_path, _html(title, context, sections, out_dir))  # each file whole or not at all
    md_path = out_dir / "report.md"
    write_text(md_path, _markdown(title, context, sections))
    return html_path, md_path


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.context { color: #555; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; white-space: normal; } td:first-child, th:first-child { text-align: left; }
td:last-child { white-space: normal; text-align: left; }
summary { cursor: pointer; color: #0645ad; margin: 0.5em 0; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
nav a { margin-right: 1em; }
"""


def _html(title: str, context: str, sections: list[Section], out_dir: Path) -> str:
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_STYLE}</style></head><body>", f"<h1>{esc(title)}</h1>", f"<p class='context'>{esc(context)}</p>",
             "<nav>" + "".join(f"<a href='#s{i}'>{esc(s.title)}</a>" for i, s in enumerate(sections)) + "</nav>"]
    for i, section in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{esc(section.title)}</h2>")
        parts += [f"<p>{esc(p)}</p>" for p in section.paragraphs]
        figures = []
        for figure in section.figures:
            data = base64.b64encode((out_dir / figure.path).read_bytes()).decode("ascii")
            figures.append(f"<figure><img alt='{esc(figure.caption)}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{esc(figure.caption)}</figcaption></figure>")
        if section.folded:
            figures = [f"<details><summary>{len(section.figures)} figures (click to open)</summary>"] + figures + \
                ["</details>"]
        parts += figures + [_html_table(table) for table in section.tables]
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(table: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    rows = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in table.shown_rows())
    html_table = (f"<table><caption>{esc(table.title)} (<a href='tables/{esc(table.csv_name)}'>CSV</a>)</caption>"
                  f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    if len(table.rows) > FOLD_ROWS:
        return f"<details><summary>{esc(table.title)}: {len(table.rows)} rows (click to open)</summary>{html_table}</details>"
    return html_table


def _markdown(title: str, context: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", context, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        for figure in section.figures:
            lines += [f"![{figure.caption}]({figure.path})", "", f"*{figure.caption}*", ""]
        for table in section.tables:
            lines += [f"**{table.title}** ([CSV](tables/{table.csv_name}))", "",
                      "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
            lines += ["| " + " | ".join(row) + " |" for row in table.shown_rows()]
            lines.append("")
    return "\n".join(lines)
