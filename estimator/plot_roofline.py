"""Roofline figures: a model's layers on chips, many chips' rooflines, a study's models on one chip.

Conventions: both axes are log-scaled; x is arithmetic intensity in FLOP per byte moved, y is
performance in TFLOP/s (GFLOP/s when the chip's peak is under 10 TFLOP/s). A chip's roofline
is min(bandwidth x intensity, matrix peak at the precision); the ridge point (FLOP/B) is where
the two meet. Predicted points use the estimator's achievable times, so they sit under the
datasheet roof; measured points are hollow markers of the same colour, joined to their
prediction by a thin line. Roofs are labelled just right of the axes, never over points; legends
sit outside the axes. Every function returns a Figure (plot_style.new_figure) and writes
nothing; plot_style.save_figure saves it. Artists carry gids ("forward", "backward", "step",
"measured-forward", "roof", a chip id, ...) so tests and SVG readers can find them.

Example:
    >>> step = capture(*load_model("resnet50", batch=32)[:2], mode="train", model_name="resnet50")
    >>> reports = [evaluate(step, load_hardware(c), "amp-bf16") for c in ("a100-80gb-sxm", "h100-sxm")]
    >>> save_figure(layer_roofline(reports), "layers.png")
    >>> save_figure(chips_roofline([load_hardware(c) for c in catalog_ids()]), "chips.svg")
"""
from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from typing import NamedTuple

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.text import Text
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

from .errors import RooflineError
from .hardware import Hardware
from .plot_style import (BACKWARD_COLOUR, FORWARD_COLOUR, MARKER_HALF_PT, MEASURED_COLOUR, lay_out_for_labels,
                         new_figure, place_labels, series_colour, si_label, styled)
from .precision import PRECISIONS, Precision, get_precision
from .report import Report, Row
from .study import StudyPoint

PANEL_WIDTH_IN, PANEL_HEIGHT_IN = 7.5, 6.0
MAX_AREA_PT2, MIN_AREA_PT2 = 200.0, 6.0  # point area of the slowest layer, and the floor
STEP_COLOUR = "#ffbf00"
ROOF_COLOUR = "#333333"
LINK_COLOUR = "#9a9a9a"
# a chip is "datacenter" (HBM-class) from this bandwidth on; the rest share the second panel
DATACENTER_BANDWIDTH_BYTES_PER_S = 1.2e12
LINE_STYLES = ("-", "--", "-.", ":")  # with 10 colours: 20 distinct lines
RIDGE_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
BATCH_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
LABELLED_POINTS = 6  # the layers that take most of the time are named, at this many points at most
LABEL_PAD_PX = 5  # clear space around a point's label
LABEL_WIDTH = 24  # characters of a layer's path in its label; longer paths lose leading components


# ---- 1. a model's layers on one or more chips ------------------------------------------------
@styled
def layer_roofline(reports: list[Report], measured_layers: dict[str, tuple[float, float]] | None = None,
                   measured_step_s: float | None = None) -> Figure:
    """One panel per report: the chip's roofline at the report's precision, each layer's forward
    and backward as points (area by predicted time), the whole step as a star. Measured layer
    times (name -> (forward s, backward s)) and step time belong to the first report's chip.
    The panels share the y axis when their chips read in the same unit."""
    if not reports:
        raise RooflineError("layer_roofline needs at least one report (the model costed on a chip)")
    units = [_perf_unit(r.hardware.matrix_peak(r.precision)) for r in reports]
    share_y = len(set(units)) == 1
    fig = new_figure(PANEL_WIDTH_IN * len(reports), PANEL_HEIGHT_IN)
    axes = fig.subplots(1, len(reports), sharey=share_y, squeeze=False)[0]
    measured = [(measured_layers or {}, measured_step_s)] + [({}, None)] * (len(reports) - 1)
    limits = [_layer_limits(r, scale, *m) for r, (scale, _), m in zip(reports, units, measured)]
    if share_y:
        y_range = (min(y[0] for _, y in limits), max(y[1] for _, y in limits))
        limits = [(x_range, y_range) for x_range, _ in limits]
    for i, (ax, report, (x_range, y_range), (scale, unit)) in enumerate(zip(axes, reports, limits, units)):
        _setup_axes(ax, x_range, y_range, unit)
        _draw_chip_roofline(ax, report.hardware, report.precision, scale)
        _draw_layers(ax, report, scale, *measured[i])
        if share_y and i:
            ax.set_ylabel("")
    lay_out_for_labels(fig)  # one layout for every panel's labels
    for ax, report, (scale, _) in zip(axes, reports, units):
        _label_points(ax, report, scale)
    return fig


def _sides(report: Report) -> tuple[str, ...]:
    return ("forward",) if report.step.mode == "inference" else ("forward", "backward")


class _LayerPoint(NamedTuple):
    row: Row
    flops: int
    time_s: float  # predicted
    intensity: float  # FLOP/byte
    flops_per_s: float  # predicted


def _layer_points(rows: list[Row], side: str) -> list[_LayerPoint]:
    """The rows with FLOPs, bytes and time on `side` ("forward" or "backward"), as points."""
    points = []
    for row in rows:
        flops, nbytes, time_s = (getattr(row, f"{side}_{what}") for what in ("flops", "bytes", "time_s"))
        if flops > 0 and nbytes > 0 and time_s > 0:
            points.append(_LayerPoint(row, flops, time_s, flops / nbytes, flops / time_s))
    return points


def _measured_s(measured_layers: dict[str, tuple[float, float]], row: Row, side: str) -> float:
    """The layer's measured seconds on `side`, 0 when not measured."""
    return measured_layers.get(row.name, (0.0, 0.0))[side == "backward"] or 0.0


def _layer_limits(report: Report, scale: float, measured_layers: dict, measured_step_s: float | None):
    """Axis ranges that hold every layer point, measured ones, the step and the chip's roofs."""
    rows = report.rows("layer")
    xs, ys = [], []
    for side in _sides(report):
        for p in _layer_points(rows, side):
            xs.append(p.intensity)
            ys.append(p.flops_per_s)
            if _measured_s(measured_layers, p.row, side):
                ys.append(p.flops / _measured_s(measured_layers, p.row, side))
    if measured_step_s:
        ys.append(report.totals()["step_flops"] / measured_step_s)
    return _limits(xs, [y / scale for y in ys], report.hardware, report.precision, scale)


def _draw_layers(ax: Axes, report: Report, scale: float, measured_layers: dict, measured_step_s: float | None) -> None:
    """Each layer's sides as points sized by predicted time, measured ones hollow; the step; legend, title."""
    rows = report.rows("layer")
    points = {side: _layer_points(rows, side) for side in _sides(report)}
    slowest_s = max((p.time_s for pts in points.values() for p in pts), default=1.0)
    handles = []
    for (side, pts), colour in zip(points.items(), (FORWARD_COLOUR, BACKWARD_COLOUR)):
        areas = [max(MIN_AREA_PT2, MAX_AREA_PT2 * p.time_s / slowest_s) for p in pts]
        ax.scatter([p.intensity for p in pts], [p.flops_per_s / scale for p in pts], s=areas, color=colour,
                   alpha=0.75, edgecolors="white", linewidths=0.4, zorder=4, gid=side)
        handles.append(_marker(colour, _layer_legend_label(side, report, len(pts))))
        measured = [(p, area, _measured_s(measured_layers, p.row, side)) for p, area in zip(pts, areas)]
        measured = [(p, area, seconds) for p, area, seconds in measured if seconds]
        if measured:
            _draw_measured(ax, [p.intensity for p, _, _ in measured], [p.flops_per_s / scale for p, _, _ in measured],
                           [p.flops / seconds / scale for p, _, seconds in measured], colour,
                           [area for _, area, _ in measured], f"measured-{side}")
    if measured_layers:
        handles.append(_marker("#555555", "layer measured on this machine (hollow)", hollow=True))
    handles += _draw_step(ax, report, scale, measured_step_s)
    skipped = [f"{len(rows) - len(pts)} {side}" for side, pts in points.items() if len(pts) < len(rows)]
    note = f"not drawn (no FLOPs or no time on that side): {', '.join(skipped)}" if skipped else "all drawn"
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncols=2, frameon=False,
              title=f"{len(rows)} layers; {note}", title_fontsize=8)
    hw, step = report.hardware, report.step
    ax.set_title(f"{step.model_name} · {hw.name} · {report.precision.name} · {step.mode} · batch {step.batch}")


class _Label(NamedTuple):
    point: _LayerPoint  # where the label sits: the labelled layers' slower side
    names: list[str]  # the layers it stands for, slowest first (several when their points coincide)
    time_s: float  # their time, forward and backward
    key: tuple  # (side, log10 x, log10 y) to 2 decimals: points with one key coincide on the figure


def top_layer_labels(report: Report, count: int = LABELLED_POINTS) -> list[_Label]:
    """Labels for the layers that take most of the step's time: layers in order of predicted time
    (forward and backward), each at the point of its slower side, until `count` distinct points
    are labelled; a layer whose point coincides with a labelled one (the same x and y to 1%, as
    repeated blocks do) joins that label instead of hiding under a second one."""
    labels: list[_Label] = []
    sides = _sides(report)
    for row in sorted(report.rows("layer"), key=lambda r: -r.time_s):
        side = max(sides, key=lambda s: getattr(row, f"{s}_time_s"))
        point = next(iter(_layer_points([row], side)), None)
        if point is None:
            continue  # no FLOPs on that side: not drawn
        key = (side, round(math.log10(point.intensity), 2), round(math.log10(point.flops_per_s), 2))
        same = next((i for i, label in enumerate(labels) if label.key == key), None)
        if same is not None:
            labels[same] = labels[same]._replace(names=labels[same].names + [row.name],
                                                 time_s=labels[same].time_s + row.time_s)
        elif len(labels) < count:
            labels.append(_Label(point, [row.name], row.time_s, key))
        else:
            break
    return labels


def short_path(name: str, width: int = LABEL_WIDTH) -> str:
    """A module path shortened from the left to whole components: "…h.11.mlp.c_fc"."""
    if len(name) <= width:
        return name
    parts = name.split(".")
    while len(parts) > 1 and len("…" + ".".join(parts)) > width:
        parts.pop(0)
    tail = "…" + ".".join(parts)
    return tail if len(tail) <= width else tail[:width - 1] + "…"


def _label_text(label: _Label, step_s: float) -> str:
    alike = f" +{len(label.names) - 1} alike" if len(label.names) > 1 else ""
    return f"{short_path(label.names[0])}{alike} · {label.time_s / step_s:.1%}"


def _label_points(ax: Axes, report: Report, scale: float) -> None:
    """Name the whole step and the layers that take most of the time beside their points, clear of
    one another, of every point drawn, of the roofs and of the texts already on the axes. The
    figure is laid out already (layer_roofline does it once for all panels)."""
    centres, halves = [], []
    for collection in ax.collections:  # every marker drawn, at its own size
        offsets, sizes = collection.get_offsets(), collection.get_sizes()
        for i, (x, y) in enumerate(offsets):
            centres.append((x, y))
            halves.append(math.sqrt(sizes[i % len(sizes)]) / 2 if len(sizes) else MARKER_HALF_PT)
    obstacles = list(ax.lines)
    step = next(c for c in ax.collections if c.get_gid() == "step").get_offsets()[0]
    place_labels(ax, [step[0]], [step[1]], ["whole step"], fontsize=8, fontweight="bold", colour="black",
                 avoid=centres, marker_half_pt=[0.0] + halves, avoid_artists=obstacles + list(ax.texts),
                 pad_px=LABEL_PAD_PX, laid_out=True)[0].set(zorder=7, gid="step-label")
    labels = top_layer_labels(report)
    xs = [label.point.intensity for label in labels]
    ys = [label.point.flops_per_s / scale for label in labels]
    own = [0.0] * len(labels)  # the labelled points are among the markers drawn
    texts = [_label_text(label, report.totals()["step_time_s"]) for label in labels]
    placed = place_labels(ax, xs, ys, texts, fontsize=7, avoid=centres, marker_half_pt=own + halves,
                          avoid_artists=obstacles + list(ax.texts), pad_px=LABEL_PAD_PX, laid_out=True)
    for annotation, label in zip(placed, labels):  # readable over grid lines, under no marker
        annotation.set(zorder=7, gid="layer-label", bbox={"boxstyle": "round,pad=0.15", "facecolor": "white",
                                                           "edgecolor": "none", "alpha": 0.8})


def _layer_legend_label(side: str, report: Report, count: int) -> str:
    if side == "backward":
        return f"backward of a layer, incl. the optimizer ({count})"
    if report.step.mode == "inference":
        return f"forward of a layer, area ∝ predicted time ({count}; inference step: no backward)"
    return f"forward of a layer, area ∝ predicted time ({count})"


def _draw_step(ax: Axes, report: Report, scale: float, measured_step_s: float | None) -> list[Line2D]:
    """The whole step as a star (and a hollow star when it was measured); its legend handles."""
    totals = report.totals()
    x = totals["step_flops"] / totals["step_bytes"]
    y = totals["step_flops"] / totals["step_time_s"] / scale
    ax.scatter([x], [y], s=260, marker="*", color=STEP_COLOUR, edgecolors=MEASURED_COLOUR, linewidths=0.8,
               zorder=5, gid="step")
    handles = [_marker(STEP_COLOUR, "whole step (predicted)", marker="*", size=13)]
    if measured_step_s:
        my = totals["step_flops"] / measured_step_s / scale
        _draw_measured(ax, [x], [y], [my], MEASURED_COLOUR, [260], "measured-step", marker="*")
        handles.append(_marker(MEASURED_COLOUR, "whole step (measured)", marker="*", size=13, hollow=True))
    return handles


def _draw_measured(ax: Axes, xs, predicted_ys, measured_ys, colour: str, areas, gid: str, marker: str = "o") -> None:
    """Hollow markers at the measured performance, each joined to its prediction by a thin line."""
    for x, y0, y1 in zip(xs, predicted_ys, measured_ys):
        ax.plot([x, x], [y0, y1], color=LINK_COLOUR, lw=0.7, zorder=3, gid=f"{gid}-link")
    ax.scatter(xs, measured_ys, s=areas, marker=marker, facecolors="none", edgecolors=colour, linewidths=1.1,
               zorder=6, gid=gid)


def _marker(colour: str, label: str, marker: str = "o", size: float = 7, hollow: bool = False) -> Line2D:
    """A legend handle: one marker, filled or hollow."""
    return Line2D([], [], ls="", marker=marker, markersize=size, color=colour, label=label,
                  markerfacecolor="none" if hollow else colour, markeredgecolor=colour)


# ---- 2. many chips' rooflines ----------------------------------------------------------------
@styled
def chips_roofline(chips: list[Hardware], precision: str | None = None) -> Figure:
    """Every chip's roofline, HBM-class datacenter chips and the rest in two panels (one if all
    are in one class). `precision` None: each chip's 16-bit matrix peak (bf16, else fp16, else
    fp32); a precision name: that peak, leaving out the chips that lack it (named in a note)."""
    if not chips:
        raise RooflineError("chips_roofline needs at least one chip")
    chosen = [(chip, chip_precision(chip, precision)) for chip in chips]
    missing = [chip.id for chip, p in chosen if p is None]
    chosen = [(chip, p) for chip, p in chosen if p is not None]
    if not chosen:
        raise RooflineError(f"none of {', '.join(missing)} has a {precision} matrix peak; pick another precision")
    big = [(c, p) for c, p in chosen if c.memory_bytes_per_s >= DATACENTER_BANDWIDTH_BYTES_PER_S]
    rest = [(c, p) for c, p in chosen if c.memory_bytes_per_s < DATACENTER_BANDWIDTH_BYTES_PER_S]
    panels = [(group, title) for group, title in (
        (big, f"datacenter (memory ≥ {DATACENTER_BANDWIDTH_BYTES_PER_S / 1e12:g} TB/s)"),
        (rest, f"CPUs, consumer, edge and inference cards (memory < {DATACENTER_BANDWIDTH_BYTES_PER_S / 1e12:g} TB/s)"),
    ) if group]
    fig = new_figure(7.5 * len(panels), 7.0)
    for ax, (group, title) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        _draw_chips_panel(ax, group, title)
    what = f"{precision} dense matrix peak" if precision else "16-bit dense matrix peak (bf16, else fp16, else fp32)"
    note = textwrap.fill(f"not shown (no {precision} peak): {', '.join(missing)}", 160) if missing else ""
    fig.suptitle(f"Rooflines of {len(chosen)} chips at the {what}" + (f"\n{note}" if note else ""), fontsize=11)
    return fig


def chip_precision(chip: Hardware, precision: str | None = None) -> Precision | None:
    """The precision a chip's roofline is drawn at, None when it lacks the one asked for."""
    if precision is None:
        return PRECISIONS[chip.half_matrix_key or "fp32"]
    wanted = get_precision(precision)
    has_peak = wanted.matrix_key in chip.matrix_flops_per_s or wanted.matrix_key == "fp32"
    return wanted if has_peak else None


def _draw_chips_panel(ax: Axes, group: list[tuple[Hardware, Precision]], title: str) -> None:
    peaks = [c.matrix_peak(p) for c, p in group]
    ridges = [peak / c.memory_bytes_per_s for (c, _), peak in zip(group, peaks)]
    scale, unit = _perf_unit(max(peaks))
    x_lo = 10 ** math.floor(math.log10(min(ridges) / 30))
    x_hi = 10 ** math.ceil(math.log10(max(ridges) * 10))
    y_lo = 10 ** math.floor(math.log10(min(c.memory_bytes_per_s for c, _ in group) * x_lo / scale))
    _setup_axes(ax, (x_lo, x_hi), (y_lo, max(peaks) / scale * 2.5), unit)
    order = sorted(range(len(group)), key=lambda i: -peaks[i])  # the highest roof first
    for n, i in enumerate(order):
        chip, p = group[i]
        ax.plot([x_lo, ridges[i], x_hi], [chip.memory_bytes_per_s * x_lo / scale, peaks[i] / scale, peaks[i] / scale],
                color=series_colour(n), ls=LINE_STYLES[n % len(LINE_STYLES)], lw=1.6, gid=chip.id,
                marker=RIDGE_MARKERS[n % len(RIDGE_MARKERS)], markevery=[1], markersize=5,
                label=_chip_row(chip.id, p.matrix_key, f"{peaks[i] / 1e12:.4g}",
                                f"{chip.memory_bytes_per_s / 1e9:,.0f}", f"{ridges[i]:.0f}"))
    ax.set_title(title)
    _chips_legend(ax)


def _chip_row(*cells: str) -> str:
    """A line of the chips legend's table (monospace): chip, precision, TFLOP/s, GB/s, ridge."""
    return "{:<16}{:<5}{:>8} {:>6} {:>5}".format(*cells)


def _chips_legend(ax: Axes) -> None:
    """A table below the axes, in up to two columns, each headed by a bold row."""
    handles, labels = ax.get_legend_handles_labels()
    ncols = 2 if len(handles) > 6 else 1
    per_column = math.ceil(len(handles) / ncols)
    header_indices = [column * (per_column + 1) for column in range(ncols)]
    for at in header_indices:
        handles.insert(at, Line2D([], [], ls="", marker=""))
        labels.insert(at, _chip_row("chip", "prec", "TFLOP/s", "GB/s", "ridge"))
    legend = ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=ncols, frameon=False,
                       prop={"family": "monospace", "size": 7.5}, handlelength=3.2, columnspacing=1.5,
                       title="TFLOP/s: dense matrix peak · GB/s: memory bandwidth · ridge: FLOP/B (the line's marker)",
                       title_fontsize=8)
    for i in header_indices:
        legend.get_texts()[i].set_fontweight("bold")


# ---- 3. a study's models on one chip ---------------------------------------------------------
@styled
def models_roofline(points: list[StudyPoint], chip: Hardware, precision: str) -> Figure:
    """Each model at each batch on `chip`'s roofline: colour per model, marker per batch, the
    prediction filled and, where measured, a hollow marker joined to it."""
    points = [p for p in points if p.chip == chip.id and p.bytes and p.predicted_s]
    if not points:
        raise RooflineError(f"no study points for chip {chip.id!r}; add it to the study's chips")
    prec = get_precision(precision)
    scale, unit = _perf_unit(chip.matrix_peak(prec))
    models = list(dict.fromkeys(p.model for p in points))
    batches = sorted({p.batch for p in points})
    measured_ys = [p.measured_flops_per_s / scale for p in points if p.measured_s]
    fig = new_figure(PANEL_WIDTH_IN + 3.0, PANEL_HEIGHT_IN)  # room for the roof labels and the legend
    ax = fig.subplots()
    _setup_axes(ax, *_limits([p.intensity for p in points],
                             [p.predicted_flops_per_s / scale for p in points] + measured_ys, chip, prec, scale), unit)
    roof_labels = _draw_chip_roofline(ax, chip, prec, scale)
    for m, model in enumerate(models):
        _draw_model(ax, sorted((p for p in points if p.model == model), key=lambda p: p.batch), series_colour(m),
                    batches, scale)
    tips = [min((p for p in points if p.model == model), key=lambda p: p.batch) for model in models]
    drawn = [(p.intensity, flops / scale) for p in points for flops in (p.predicted_flops_per_s, p.measured_flops_per_s)
             if flops]
    labels = place_labels(ax, [p.intensity for p in tips], [p.predicted_flops_per_s / scale for p in tips], models,
                          fontsize=7.5, avoid=drawn)
    for label in labels:  # readable over lines, under the markers
        label.set(zorder=4, bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                                  "alpha": 0.8})
    _models_legends(ax, models, batches, bool(measured_ys), roof_labels)
    ax.set_title(f"{chip.name}: models on the roofline ({precision}, inference)")
    return fig


def _draw_model(ax: Axes, points: list[StudyPoint], colour: str, batches: list[int], scale: float) -> None:
    """One model's batches: joined by a faint line in batch order, marker shape by batch."""
    xs = [p.intensity for p in points]
    ys = [p.predicted_flops_per_s / scale for p in points]
    ax.plot(xs, ys, color=colour, lw=0.8, alpha=0.5, zorder=3)
    for p, x, y in zip(points, xs, ys):
        marker = BATCH_MARKERS[batches.index(p.batch) % len(BATCH_MARKERS)]
        ax.scatter([x], [y], s=42, marker=marker, color=colour, edgecolors="white", linewidths=0.5, zorder=5,
                   gid=f"predicted-{p.model}-{p.batch}")
        if p.measured_s:
            _draw_measured(ax, [x], [y], [p.measured_flops_per_s / scale], colour, [42],
                           f"measured-{p.model}-{p.batch}", marker=marker)


def _models_legends(ax: Axes, models: list[str], batches: list[int], measured: bool, roof_labels: list[Text]) -> None:
    """One legend right of the axes and of the roof labels, in three parts: colour = model,
    marker = batch, fill = predicted or measured."""
    sections = [("model", [_marker(series_colour(m), model, marker="s") for m, model in enumerate(models)]),
                ("batch", [_marker("#555555", f"{b}", marker=BATCH_MARKERS[i % len(BATCH_MARKERS)])
                           for i, b in enumerate(batches)]),
                ("time", [_marker("#555555", "predicted", marker="p")] +
                 ([_marker("#555555", "measured (this machine)", marker="p", hollow=True)] if measured else []))]
    handles, header_indices = [], []
    for title, entries in sections:
        header_indices.append(len(handles))
        handles += [Line2D([], [], ls="", marker="", label=title)] + entries
    renderer = ax.figure.canvas.get_renderer()
    labels_width_in = max(label.get_window_extent(renderer).width for label in roof_labels) / ax.figure.dpi
    legend = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                       handletextpad=0.4, bbox_transform=ax.transAxes + ScaledTranslation(
                           labels_width_in, 0, ax.figure.dpi_scale_trans))
    for i in header_indices:
        legend.get_texts()[i].set_fontweight("bold")


# ---- shared: units, ranges, axes and a chip's roofs ------------------------------------------
def _perf_unit(peak_flops_per_s: float) -> tuple[float, str]:
    """(FLOP/s per unit, unit name) so that tick labels stay short."""
    return (1e12, "TFLOP/s") if peak_flops_per_s >= 1e13 else (1e9, "GFLOP/s")


def _limits(xs: list[float], ys: list[float], chip: Hardware, precision: Precision, scale: float):
    """Decade-rounded x and y ranges holding the points (y in units of `scale`), every ridge point
    of the chip's roofs and room above the highest roof for its label."""
    peak = chip.matrix_peak(precision)
    roofs = [peak, *_roofs(chip, peak)]
    ridges = [roof / chip.memory_bytes_per_s for roof in roofs]
    x_lo = 10 ** math.floor(math.log10(min(xs + ridges) / 3))
    x_hi = 10 ** math.ceil(math.log10(max(xs + ridges) * 3))
    y_lo = 10 ** math.floor(math.log10(min(ys) / 2))
    return (x_lo, x_hi), (y_lo, max(roofs) / scale * 3)


def _roofs(chip: Hardware, peak_flops_per_s: float) -> dict[float, list[str]]:
    """The chip's matrix peaks above `peak_flops_per_s`: value -> the precisions that have it."""
    roofs: dict[float, list[str]] = defaultdict(list)
    for key, value in chip.matrix_flops_per_s.items():
        if value > peak_flops_per_s * 1.001:
            roofs[value].append(key)
    return dict(sorted(roofs.items()))


def _setup_axes(ax: Axes, x_range, y_range, unit: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10))
        axis.set_major_formatter(FuncFormatter(_tick_text))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel(f"performance ({unit})")


def _tick_text(value: float, _position=None) -> str:
    """Plain numbers (0.01, 100) where short, else a power of ten."""
    if 1e-3 <= value < 1e5:
        return f"{value:g}"
    return f"$10^{{{round(math.log10(value))}}}$"


def _draw_chip_roofline(ax: Axes, chip: Hardware, precision: Precision, scale: float) -> list[Text]:
    """The memory slope, the roof at `precision` (solid), the chip's higher roofs (dashed, with
    the slope continued thin to them), each labelled right of the axes, clear of the points; the
    ridge point as a dotted vertical line. Call after the axes' limits are set. Returns the roof labels."""
    bandwidth, peak = chip.memory_bytes_per_s, chip.matrix_peak(precision)
    ridge = peak / bandwidth
    (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
    ax.plot([x_lo, ridge, x_hi], [bandwidth * x_lo / scale, peak / scale, peak / scale], color=ROOF_COLOUR, lw=2,
            zorder=2, gid="roof")
    labels = [_roof_label(ax, peak / scale, f"{precision.matrix_key} {si_label(peak, 'FLOP/s')}", bold=True)]
    higher = _roofs(chip, peak)
    if higher:
        top_ridge = max(higher) / bandwidth
        ax.plot([ridge, top_ridge], [peak / scale, max(higher) / scale], color=ROOF_COLOUR, lw=0.8, ls="--", zorder=2)
    for value, keys in higher.items():
        ax.plot([value / bandwidth, x_hi], [value / scale] * 2, color=ROOF_COLOUR, lw=0.8, ls="--", zorder=2,
                gid="roof-" + "-".join(keys))
        labels.append(_roof_label(ax, value / scale, f"{'/'.join(keys)} {si_label(value, 'FLOP/s')}", bold=False))
    ax.plot([ridge, ridge], [y_lo, peak / scale], color=ROOF_COLOUR, lw=0.9, ls=":", zorder=2, gid="ridge")
    ax.text(ridge, 0.02, f"ridge {ridge:.3g} FLOP/B ", rotation=90, ha="right", va="bottom", fontsize=7.5,
            color=ROOF_COLOUR, transform=blended_transform_factory(ax.transData, ax.transAxes))
    # the memory label runs along a parallel a little above the slope (clear of the points on it),
    # near where the slope enters; its angle is that parallel's, taken in data space at draw time
    slope_x = min(max(x_lo, y_lo * scale / bandwidth) * 2.5, ridge / 4)
    parallel = bandwidth / scale * (y_hi / y_lo) ** 0.05  # FLOP/s per FLOP/B in units, lifted 5% of the height
    ax.text(slope_x, parallel * slope_x, f"memory {si_label(bandwidth, 'B/s')}", rotation=math.degrees(
        math.atan(parallel)), transform_rotates_text=True, rotation_mode="anchor", ha="left", va="bottom",
        fontsize=7.5, color=ROOF_COLOUR)
    return labels


def _roof_label(ax: Axes, y: float, text: str, bold: bool) -> Text:
    """`text` just right of the axes, level with the roof at `y`."""
    return ax.text(1.01, y, text, ha="left", va="center", fontsize=7.5, color=ROOF_COLOUR, clip_on=False,
                   fontweight="bold" if bold else "normal",
                   transform=blended_transform_factory(ax.transAxes, ax.transData))
