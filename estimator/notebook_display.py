"""At home in a notebook: HTML tables for Jupyter (`_repr_html_`), pandas DataFrames
(`to_pandas()`), and matplotlib Figures shown inline.

Mechanism only: a result class (Report, SideBySide, Study, ClusterResult, ServingResult) picks
its records, one dict per row with units in the keys (`step_time_s`, `forward_flops`,
`memory_bytes`, `throughput_samples_per_s`), and hands them here.

- `dataframe(records)`: a DataFrame of the raw numbers, never formatted; a column of numbers
  and Nones becomes float with NaN. pandas is imported only here and only when asked for; without
  it, one MissingDependencyError says how to install it.
- `html_table(records, title=...)`: the same columns as an HTML table, every string escaped;
  numbers formatted for reading by the unit in the column's name (1.23 ms, 4.1 GFLOP, 25.6 MB,
  12.3%), so a column name reads the same in the table and in the DataFrame; `html_fields`
  shows one result's scalars, a name and a value a line.
- `show_figures_inline()`: in a Jupyter kernel, a returned Figure is displayed as a PNG
  (the plot modules' figures are not registered with pyplot, so nothing else shows them).

Example:
    >>> html_table([{"name": "conv<1>", "time_s": 0.00123}], title="resnet18")
    '<div><p><b>resnet18</b></p><table>...<td>conv&lt;1&gt;</td><td ...>1.23 ms</td>...'
"""
from __future__ import annotations

import html
import io
import math
import sys
from numbers import Integral, Real

from .errors import MissingDependencyError

PANDAS_HINT = "to_pandas() needs pandas: pip install 'torch-roofline[notebook]'"
PERCENT_COLUMNS = ("utilization", "mfu", "hfu")
FIGURE_DPI = 100  # inline PNGs: a 7.5-inch panel is 750 pixels wide
# (suffix, unit, SI prefixes from largest): the first suffix a column name ends with sets its format
_SI = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))
_UNITS = (("flops_per_s", "FLOP/s"), ("bytes_per_s", "B/s"), ("_flops", "FLOP"), ("_bytes", "B"))


def dataframe(records: list[dict], columns: list[str] | None = None):
    """A pandas DataFrame of `records` (raw values); columns of numbers and Nones are float (NaN)."""
    pd = _pandas()
    frame = pd.DataFrame.from_records(records, columns=columns)
    for name in frame.columns:
        values = [v for v in frame[name] if v is not None]
        if frame[name].dtype == object and all(_is_number(v) for v in values):
            frame[name] = frame[name].astype(float)  # None -> NaN; a column of Nones alone is a float column
    return frame


def _pandas():
    try:
        import pandas
    except ImportError as e:
        raise MissingDependencyError(PANDAS_HINT) from e
    return pandas


def html_table(records: list[dict], title: str = "", lines: tuple[str, ...] = (), limit: int | None = None,
               columns: list[str] | None = None) -> str:
    """An HTML table of `records` (the first `limit` of them), under a bold `title` and plain
    `lines`; a note says how many rows were left out."""
    columns = columns or list(dict.fromkeys(k for r in records for k in r))
    shown = records if limit is None else records[:limit]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(c, r.get(c)) for c in columns) + "</tr>" for r in shown)
    parts = [f"<p><b>{html.escape(title)}</b></p>"] if title else []
    parts += [f"<p>{html.escape(line)}</p>" for line in lines]
    parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if len(shown) < len(records):
        parts.append(f"<p><i>{len(shown)} of {len(records)} rows; to_pandas() has them all</i></p>")
    return "<div>" + "".join(parts) + "</div>"


def html_fields(values: dict, title: str = "") -> str:
    """A two-column HTML table of one result's scalars, each formatted by its own name."""
    body = "".join(f"<tr><th style=\"text-align:left\">{html.escape(k)}</th>{_cell(k, v)}</tr>"
                   for k, v in values.items())
    heading = f"<p><b>{html.escape(title)}</b></p>" if title else ""
    return f"<div>{heading}<table><tbody>{body}</tbody></table></div>"


def _cell(column: str, value) -> str:
    text = format_value(column, value)
    align = ' style="text-align:right"' if _is_number(value) else ""
    return f"<td{align}>{html.escape(text)}</td>"


def format_value(column: str, value) -> str:
    """`value` for reading, by the unit its column's name ends with."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not _is_number(value):
        return str(value)
    if column in PERCENT_COLUMNS or column.endswith("_share"):
        return f"{value:.1%}"
    for suffix, unit in _UNITS:
        if column.endswith(suffix) or column == suffix.lstrip("_"):
            return si(value, unit)
    if column.endswith("_s") and not column.endswith("per_s"):
        return seconds(value)
    if isinstance(value, Integral):
        return f"{value:,}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"


def si(value: float, unit: str) -> str:
    """3 significant digits with an SI prefix: 4.11 GFLOP, 25.6 MB (the tables' and the figures'
    labels: plot_style.si_label is this)."""
    for factor, prefix in _SI:
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def seconds(value: float) -> str:
    """3 significant digits in s, ms, µs or ns."""
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns" if value else "0 s"


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def show_figures_inline() -> None:
    """In a Jupyter kernel, display a matplotlib Figure returned by a cell as a PNG (a no-op
    elsewhere; a backend's own formatter, such as `%matplotlib inline`'s, may replace it)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    from matplotlib.figure import Figure

    shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


def figure_png(fig) -> bytes:
    """The figure as PNG bytes at FIGURE_DPI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    return buffer.getvalue()
