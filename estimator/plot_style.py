"""Shared figure conventions: headless backend, colours, unit formatters, saving PNG/SVG.

Every plot module builds a matplotlib Figure and returns it; only `save_figure` writes. Units
on axes are SI with a prefix in the label ("TFLOP/s", "GB"); log axes wherever the data spans
decades. PNGs are written at DPI (150), so a figure of `figsize` inches is figsize x 150 pixels.

Example:
    >>> fig = new_figure(8, 5)
    >>> save_figure(fig, "out.png")   # or "out.svg"
    PosixPath('out.png')
    >>> save_figures(fig, [Path("out.png"), Path("out.svg")])   # one layout for both
"""
from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a Jupyter kernel keeps its inline backend: returned Figures show in the cell
    matplotlib.use("Agg")  # headless: no display is needed, and none is touched

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402  (the backend must be chosen first)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import NullFormatter, NullLocator  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
import numpy as np  # noqa: E402

from .notebook_display import show_figures_inline, si as si_label  # noqa: E402,F401  (si_label: the figures' SI labels)
from .output_paths import check_output_file  # noqa: E402

show_figures_inline()  # in Jupyter, a Figure a cell returns shows as a PNG

DPI = 150
FORMATS = (".png", ".svg")
FORWARD_COLOUR = "#1f77b4"  # blue
BACKWARD_COLOUR = "#d62728"  # red
OPTIMIZER_COLOUR = "#2ca02c"  # green
MEASURED_COLOUR = "#111111"
# one colour per batch size / chip / model, in order (matplotlib's tab10, colour-blind friendlier than rainbow)
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf")

# matplotlib settings of our figures, in effect only while one is made, laid out or saved
# (`styled`): a notebook's own plots keep their settings
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "svg.fonttype": "none",  # SVG text stays text (searchable, editable)
}


def styled(make):
    """`make` (a function that returns a Figure) run with STYLE in effect, the caller's
    matplotlib settings as they were before and after.

    >>> @styled
    ... def empty() -> Figure:
    ...     return new_figure(4, 3)
    """
    @functools.wraps(make)
    def run(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return make(*args, **kwargs)
    return run


def series_colour(index: int) -> str:
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure that is not registered with pyplot's global state (no leaks across many plots),
    on an Agg canvas so text extents can be measured (see `place_labels`)."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_output_path(path: str | Path) -> Path:
    """The path, if it ends in .png or .svg and can be written (estimator.output_paths); else a
    RooflineError."""
    return check_output_file("--out", str(path), FORMATS)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG or SVG (by the suffix) and return the path."""
    path = check_output_path(path)
    with matplotlib.rc_context(STYLE):  # ticks made while drawing take the figure's sizes
        fig.savefig(path, dpi=DPI, format=path.suffix.lower().lstrip("."))
    return path


def save_figures(fig: Figure, paths: list[Path]) -> list[Path]:
    """Write `fig` (from `new_figure`) to each of `paths`, PNG or SVG by the suffix. The layout is
    worked out once, here, and kept: a plain save would lay the figure out again for each file,
    in a draw of every artist before the one that renders (together about half of a save).

    >>> save_figures(new_figure(8, 5), [Path("out.png"), Path("out.svg")])
    [PosixPath('out.png'), PosixPath('out.svg')]
    """
    if fig.get_layout_engine() is not None:  # None: laid out by an earlier call, places kept
        with _layout_pass(fig):
            fig.get_layout_engine().execute(fig)  # constrained layout, measured at DPI as the PNG is drawn
        fig.set_layout_engine(None)  # the axes keep these places; None, unlike "none", also skips the pre-draw
    return [save_figure(fig, path) for path in paths]


def lay_out_for_labels(fig: Figure) -> None:
    """Lay `fig` out once and keep that layout (saving draws with these places, as save_figures
    says): call when every artist that takes part in the layout is drawn, before `place_labels`
    with laid_out=True, whose labels stay out of the layout. Saves a layout pass per labelled panel.

    >>> lay_out_for_labels(fig); place_labels(ax, xs, ys, texts, laid_out=True)
    """
    with _layout_pass(fig):
        fig.draw_without_rendering()
    fig.set_layout_engine(None)


@contextmanager
def _layout_pass(fig: Figure):
    """While `fig` is laid out: STYLE in effect, and no minor ticks on the axes whose minor ticks
    carry no label (a NullFormatter: the roofline figures' log axes). The layout measures tick
    labels, not tick marks, so it comes out the same; but each of its passes placed every minor
    tick (8 a decade on each log axis), most of a layer roofline's layout time."""
    axes = [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
            if isinstance(axis.get_minor_formatter(), NullFormatter)]
    kept = [(axis, axis.get_minor_locator(), axis.isDefault_minloc) for axis in axes]
    for axis in axes:
        axis.set_minor_locator(NullLocator())
    try:
        with matplotlib.rc_context(STYLE):
            yield
    finally:
        for axis, locator, default in kept:
            axis.set_minor_locator(locator)
            axis.isDefault_minloc = default


MARKER_HALF_PT = 3.5  # half the side of the box a marker occupies, in points
LABEL_ON_LABEL_WEIGHT = 20.0  # cost of a pixel of label over label, against one of label over marker
LEADER_FROM_PT = 12  # labels placed this far (points) or farther get a thin line to their point
LEADER_CROSSING_PX = 3.0  # a pixel of leader across another marker or label, in pixels of label over marker
LINE_WIDTH_PX = 20.0  # a pixel of line under a label costs as much as this many pixels of label over marker


def _label_offsets() -> list[tuple[float, float, str, str]]:
    """(dx, dy, ha, va) in points, tried nearest first: 8 directions at growing distances."""
    offsets = []
    for radius in (5, 12, 20, 30, 45, 60):
        for ux, uy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)):
            scale = radius / (2 ** 0.5) if ux and uy else radius
            ha = "left" if ux > 0 else "right" if ux < 0 else "center"
            va = "bottom" if uy > 0 else "top" if uy < 0 else "center"
            offsets.append((ux * scale, uy * scale, ha, va))
    return offsets


_LABEL_OFFSETS = _label_offsets()


def place_labels(ax, xs, ys, texts, fontsize: float = 7, colour: str = "#333333", avoid=(),
                 marker_half_pt=MARKER_HALF_PT, avoid_artists=(), pad_px: float = 2, fontweight: str = "normal",
                 laid_out: bool = False) -> list:
    """Label points (data coordinates) greedily: each label takes the first nearby offset whose
    box overlaps no label placed before it, no marker (the labelled points and the extra (x, y)
    points in `avoid`) and none of `avoid_artists` (lines: their drawn path; texts: their box,
    weighed as labels), else the offset with the least overlap. `marker_half_pt`: half a
    marker's width in points, one for all or one per point of xs then avoid (a scatter of size
    s has sqrt(s) / 2); `pad_px`: clear space kept around each label; `laid_out`: the caller has
    laid the figure out (fig.draw_without_rendering()) since its last change that moves anything
    (labels do not: they are out of the layout), which saves a layout pass per call. Call after the
    axes' limits and scales are final. Returns the annotations.

    A label's box is measured once and moved to each offset by arithmetic (the text's size does
    not depend on where it sits); only the chosen offset becomes an annotation."""
    fig = ax.figure
    if not laid_out:
        with _layout_pass(fig):
            fig.draw_without_rendering()  # lay the figure out so that extents are in their final place
    renderer = fig.canvas.get_renderer()
    pixels_per_pt = fig.dpi / 72
    centres = ax.transData.transform(list(zip(xs, ys)) + list(avoid)) if len(xs) or len(avoid) else []
    halves = [marker_half_pt] * len(centres) if isinstance(marker_half_pt, (int, float)) else list(marker_half_pt)
    markers = [Bbox.from_extents(px - h * pixels_per_pt, py - h * pixels_per_pt, px + h * pixels_per_pt,
                                 py + h * pixels_per_pt) for (px, py), h in zip(centres, halves)]
    marker_extents = np.array([m.extents for m in markers]).reshape(-1, 4)  # x0, y0, x1, y1 rows
    axes_box = ax.get_window_extent(renderer)
    paths, text_boxes = _obstacles(avoid_artists, renderer)
    label_boxes, annotations = [], []
    for x, y, text in zip(xs, ys, texts):
        probe = ax.annotate(text, (x, y), xytext=(0, 0), textcoords="offset points", ha="left", va="bottom",
                            fontsize=fontsize, fontweight=fontweight)
        probe.update_positions(renderer)
        text_box = Text.get_window_extent(probe, renderer)  # the text alone, its left-bottom corner at the point
        probe.remove()
        px, py = ax.transData.transform((x, y))
        own = ((marker_extents[:, 0] <= px) & (px <= marker_extents[:, 2]) & (marker_extents[:, 1] <= py)
               & (py <= marker_extents[:, 3]))  # its own marker (Bbox.contains' closed test), which leaders leave
        others = label_boxes + text_boxes
        crossable = np.concatenate([marker_extents[~own], np.array([b.extents for b in others]).reshape(-1, 4)])
        best = None
        for dx, dy, ha, va in _LABEL_OFFSETS:
            shift_x = dx * pixels_per_pt - {"left": 0.0, "center": 0.5, "right": 1.0}[ha] * text_box.width
            shift_y = dy * pixels_per_pt - {"bottom": 0.0, "center": 0.5, "top": 1.0}[va] * text_box.height
            box = text_box.translated(shift_x, shift_y).padded(pad_px)
            inside = axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1)
            # a label on a label is worse than a label on a marker; outside the axes is worst
            overlap = (LABEL_ON_LABEL_WEIGHT * sum(_overlap_area(box, other) for other in others)
                       + _overlap_sum(box, marker_extents)
                       + LINE_WIDTH_PX * sum(_clipped_length(box, path) for path in paths) + (0 if inside else 1e9))
            if abs(dx) + abs(dy) >= LEADER_FROM_PT:  # its leader, from the point to the label's middle
                leader = (px, py, (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
                overlap += LEADER_CROSSING_PX * _segment_length_inside(leader, crossable)
            if best is None or overlap < best[0]:
                best = (overlap, box, dx, dy, ha, va)
            if overlap == 0:
                break
        _, box, dx, dy, ha, va = best
        leader = {"arrowprops": {"arrowstyle": "-", "color": "#999999", "lw": 0.5, "shrinkA": 0, "shrinkB": 2}} \
            if abs(dx) + abs(dy) >= LEADER_FROM_PT else {}
        annotation = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                                 fontsize=fontsize, fontweight=fontweight, color=colour, annotation_clip=True,
                                 **leader)
        annotation.set_in_layout(False)
        label_boxes.append(box)
        annotations.append(annotation)
    return annotations


def _obstacles(artists, renderer) -> tuple[list, list]:
    """The display-space polylines of the Line2D artists and the boxes of the others (texts)."""
    paths, boxes = [], []
    for artist in artists:
        if isinstance(artist, Line2D):
            paths.append(artist.get_transform().transform(artist.get_xydata()))
        else:
            boxes.append(artist.get_window_extent(renderer))
    return paths, boxes


def _segment_length_inside(segment, extents) -> float:
    """The summed pixels of the segment (x0, y0, x1, y1) inside each box of `extents` (rows x0,
    y0, x1, y1): Liang-Barsky clipping against every box at once, as `_clipped_length` does for one."""
    x0, y0, x1, y1 = segment
    near = ((min(x0, x1) <= extents[:, 2]) & (max(x0, x1) >= extents[:, 0]) & (min(y0, y1) <= extents[:, 3])
            & (max(y0, y1) >= extents[:, 1]))  # bounding boxes meet: the only boxes worth clipping against
    boxes = extents[near]
    if not len(boxes):
        return 0.0
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = np.zeros(len(boxes)), np.ones(len(boxes))
    for p, q in ((-dx, x0 - boxes[:, 0]), (dx, boxes[:, 2] - x0), (-dy, y0 - boxes[:, 1]), (dy, boxes[:, 3] - y0)):
        if p == 0:  # parallel to this edge: wholly outside where q < 0
            t1 = np.where(q < 0, 0.0, t1)
            t0 = np.where(q < 0, 1.0, t0)
        elif p < 0:
            t0 = np.maximum(t0, q / p)
        else:
            t1 = np.minimum(t1, q / p)
    inside = np.where(t1 > t0, t1 - t0, 0.0)
    return float(np.sum(inside)) * (dx * dx + dy * dy) ** 0.5


def _clipped_length(box, path) -> float:
    """Pixels of the polyline `path` (N x 2, display space) inside `box` (Liang-Barsky per segment)."""
    length = 0.0
    for (x0, y0), (x1, y1) in pairwise(path):
        dx, dy = x1 - x0, y1 - y0
        t0, t1 = 0.0, 1.0
        for p, q in ((-dx, x0 - box.x0), (dx, box.x1 - x0), (-dy, y0 - box.y0), (dy, box.y1 - y0)):
            if p == 0:
                if q < 0:
                    t0, t1 = 1.0, 0.0
                continue
            t = q / p
            t0, t1 = (max(t0, t), t1) if p < 0 else (t0, min(t1, t))
        if t1 > t0:
            length += (t1 - t0) * (dx * dx + dy * dy) ** 0.5
    return length


def _overlap_sum(box, extents) -> float:
    """The summed overlap areas of `box` with the boxes of `extents` (rows x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box.extents
    width = np.minimum(extents[:, 2], x1) - np.maximum(extents[:, 0], x0)
    height = np.minimum(extents[:, 3], y1) - np.maximum(extents[:, 1], y0)
    return float(np.sum(np.where((width > 0) & (height > 0), width * height, 0.0)))


def _overlap_area(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0
