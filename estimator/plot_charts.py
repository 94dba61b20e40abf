"""Charts of a Report and of a Study: per-layer-type breakdowns, the models side by side,
latency against size, and the rank correlation of latency with FLOPs and parameters.

Each function returns a matplotlib Figure (from `plot_style.new_figure`) and writes nothing;
the CLI saves it with `plot_style.save_figure`. Conventions: values in SI units with a
readable prefix in the axis label ("time (ms)", "GFLOP", "GB"); log axes where the data span
decades; one colour per batch size or per layer type (`plot_style.series_colour`), forward
blue and backward red; legends outside the data. Empty inputs raise RooflineError.

Example:
    >>> report = evaluate(capture(model, inputs, mode="train", model_name="resnet50"),
    ...                   load_hardware("a100-80gb-sxm"), "fp32")
    >>> save_figure(breakdown(report, style="pie"), "resnet50_types.png")
    >>> points = Study(["resnet18", "vit_b_16"], [load_hardware("a100-80gb-sxm")], batches=[1, 64]).points()
    >>> save_figure(latency_scatter(points, "a100-80gb-sxm"), "latency.png")
    >>> save_figure(correlation_heatmap(rank_correlations(points, ["a100-80gb-sxm"])), "rho.png")
"""
from __future__ import annotations

import math
import textwrap

from matplotlib import colormaps
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullLocator

from .errors import RooflineError
from .plot_style import (BACKWARD_COLOUR, FORWARD_COLOUR, lay_out_for_labels, new_figure, place_labels,
                         series_colour, styled)
from .report import Report, Row
from .study import RankCorrelation, StudyPoint

STYLES = ("bar", "pie")
OTHER = "other"
OTHER_COLOUR = "#c7c7c7"
# after the ten series colours: tab20's light shades, so up to 20 layer types stay distinct
_EXTRA_COLOURS = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
                  "#9edae5", "#525252")
_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))
_SUBSECOND = ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))
# panel name, the Row attribute of each pass (forward, backward), unit, prefixes to choose from
_QUANTITIES = (("time", ("forward_time_s", "backward_time_s"), "s", _SUBSECOND),
               ("FLOPs", ("forward_flops", "backward_flops"), "FLOP", _SI),
               ("bytes moved", ("forward_bytes", "backward_bytes"), "B", _SI))
_PIE_LABEL_MIN_PCT = 4.0


# ---- units --------------------------------------------------------------------------------------
def _prefix(max_value: float, unit: str, scales=_SI) -> tuple[float, str]:
    """(factor, prefixed unit) that shows `max_value` as at least 1: (1e-3, "ms") for 0.02 s."""
    for factor, prefix in scales:
        if max_value >= factor:
            return factor, prefix + unit
    return scales[-1][0], scales[-1][1] + unit


def _amount(value: float, unit: str, scales=_SI) -> str:
    factor, label = _prefix(value, unit, scales)
    return f"{value / factor:.3g} {label}"


def _spans_decades(values, decades: float) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > 10 ** decades


def _batch_axis(ax, batches: list[int]) -> None:
    """Log2 x axis with one tick per batch size."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(batches))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch size (samples)")


# ---- 1. breakdown by layer type -----------------------------------------------------------------
@styled
def breakdown(report: Report, style: str = "bar", top: int = 8) -> Figure:
    """Time, FLOPs and bytes moved per layer type, forward and backward (seed 002, 5.2)."""
    if style not in STYLES:
        raise RooflineError(f"unknown breakdown style {style!r}; expected one of {', '.join(STYLES)}")
    if top < 1:
        raise RooflineError(f"top must be a positive number of layer types, got {top}")
    rows = report.rows("type")
    if not rows:
        raise RooflineError(f"{report.step.model_name}: the report has no costed ops to break down")
    passes = _passes(report)
    fig = _breakdown_pies(rows, passes, top) if style == "pie" else _breakdown_bars(rows, passes, top)
    step = report.step
    title = (f"{step.model_name} · {report.hardware.id} · {report.precision.name} · {step.mode} · "
             f"batch {step.batch}: by layer type")
    fig.suptitle(title + ("\n(inference: forward only)" if len(passes) == 1 else ""))
    return fig


def _passes(report: Report) -> list[str]:
    """Legend names of the passes shown: the optimizer's update sits in the backward columns."""
    if report.step.mode != "train":
        return ["forward"]
    update = f" + {report.step.optimizer} update" if report.step.optimizer else ""
    return ["forward", "backward" + update]


def _grouped(rows: list[Row], keep: list[str]) -> dict[str, dict[str, float]]:
    """The values of each kept type (in `keep` order) and the rest summed as "other"."""
    attributes = [a for _, pair, _, _ in _QUANTITIES for a in pair]
    groups = {name: dict.fromkeys(attributes, 0.0) for name in keep}
    for row in rows:
        group = groups.setdefault(row.name if row.name in groups else OTHER, dict.fromkeys(attributes, 0.0))
        for a in attributes:
            group[a] += getattr(row, a)
    return groups


def _breakdown_bars(rows: list[Row], passes: list[str], top: int) -> Figure:
    groups = _grouped(rows, [r.name for r in rows[:top]])  # rows come largest step time first
    fig = new_figure(13, 1.6 + 0.42 * len(groups) * len(passes) ** 0.5)
    axes = fig.subplots(1, len(_QUANTITIES), sharey=True)
    height = 0.8 / len(passes)
    for ax, (name, attributes, unit, scales) in zip(axes, _QUANTITIES):
        factor, label = _prefix(max(g[a] for g in groups.values() for a in attributes), unit, scales)
        for i, (pass_name, attribute) in enumerate(zip(passes, attributes)):
            values = [g[attribute] for g in groups.values()]
            total = sum(values) or 1.0
            ys = [k + (i - (len(passes) - 1) / 2) * height for k in range(len(groups))]
            bars = ax.barh(ys, [v / factor for v in values], height, label=pass_name,
                           color=(FORWARD_COLOUR, BACKWARD_COLOUR)[i])
            ax.bar_label(bars, [f"{v / total:.0%}" if v / total >= 0.005 else "" for v in values], padding=2,
                         fontsize=7)
        ax.set_xlabel(f"{name} ({label})")
        ax.set_title(name)
        ax.margins(x=0.14)
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(range(len(groups)), list(groups))
    axes[0].invert_yaxis()  # largest at the top
    axes[0].set_ylabel("layer type")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(passes),
               title="bar labels: share of the pass's total")
    return fig


def _breakdown_pies(rows: list[Row], passes: list[str], top: int) -> Figure:
    """One pie per pass and quantity: its `top` largest types and the rest as "other"."""
    pies = {(p, q): _pie_slices(rows, attributes[p], top)
            for p in range(len(passes)) for q, (_, attributes, _, _) in enumerate(_QUANTITIES)}
    colours = _type_colours(rows, [name for slices in pies.values() for name, _ in slices])
    fig = new_figure(12, 1.2 + 3.4 * len(passes))
    axes = fig.subplots(len(passes), len(_QUANTITIES), squeeze=False)
    for (p, q), slices in pies.items():
        ax = axes[p][q]
        name, _, unit, scales = _QUANTITIES[q]
        total = sum(v for _, v in slices)
        ax.set_title(f"{passes[p]}\n{name}: {_amount(total, unit, scales)}")
        if not slices:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        _, _, percentages = ax.pie(
            [v for _, v in slices], colors=[colours[n] for n, _ in slices], startangle=90, counterclock=False,
            autopct=lambda pct: f"{pct:.0f}%" if pct >= _PIE_LABEL_MIN_PCT else "", pctdistance=0.72,
            wedgeprops={"edgecolor": "white", "linewidth": 0.8}, textprops={"fontsize": 8})
        for text, (name, _) in zip(percentages, slices):
            text.set_color(_text_colour(to_rgba(colours[name])))
    handles = [Patch(facecolor=colours[n], edgecolor="white") for n in colours]
    fig.legend(handles, list(colours), loc="outside right center", title="layer type")
    return fig


def _pie_slices(rows: list[Row], attribute: str, top: int) -> list[tuple[str, float]]:
    ranked = sorted(((r.name, getattr(r, attribute)) for r in rows if getattr(r, attribute) > 0),
                    key=lambda s: -s[1])
    rest = sum(v for _, v in ranked[top:])
    return ranked[:top] + ([(OTHER, rest)] if rest > 0 else [])


def _type_colours(rows: list[Row], shown: list[str]) -> dict[str, str]:
    """One colour per type shown in any pie, in step-time order (largest first), "other" last."""
    palette = [series_colour(i) for i in range(10)] + list(_EXTRA_COLOURS)
    names = [r.name for r in rows if r.name in set(shown)]
    colours = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    if OTHER in shown:
        colours[OTHER] = OTHER_COLOUR
    return colours


# ---- 2. models side by side ---------------------------------------------------------------------
@styled
def models_overview(points: list[StudyPoint]) -> Figure:
    """FLOPs, parameters, memory and arithmetic intensity per model (seed 002, 2.2; seed 003, 2)."""
    if not points:
        raise RooflineError("no study points to plot: the study needs at least one model and batch size")
    chip, batch = points[0].chip, min(p.batch for p in points)
    at_batch = list({p.model: p for p in points if p.chip == chip and p.batch == batch}.values())
    models = [p.model for p in at_batch]
    fig = new_figure(14, 8.5)
    axes = fig.subplot_mosaic([["flops", "parameters", "memory"], ["intensity", "batch", "batch"]])
    flops_factor, flops_unit = _prefix(max(p.flops for p in at_batch), "FLOP")
    _model_bars(axes["flops"], models, [p.flops / flops_factor for p in at_batch], f"forward FLOPs ({flops_unit})",
                f"forward FLOPs at batch {batch}")
    _model_bars(axes["parameters"], models, [p.parameters / 1e6 for p in at_batch], "parameters (M)", "parameters")
    _memory_bars(axes["memory"], at_batch, batch)
    _model_bars(axes["intensity"], models, [p.intensity for p in at_batch], "arithmetic intensity (FLOP/byte)",
                f"arithmetic intensity at batch {batch}")
    _intensity_vs_batch(axes["batch"], [p for p in points if p.chip == chip], models)
    fig.suptitle(f"Chip-independent quantities of each model's inference forward pass · {points[0].precision}")
    return fig


def _model_bars(ax, models: list[str], values: list[float], ylabel: str, title: str, **bar) -> None:
    ax.bar(range(len(models)), values, color=FORWARD_COLOUR, **bar)
    ax.set_xticks(range(len(models)), models, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="x", visible=False)
    if _spans_decades(values, 2):
        ax.set_yscale("log")


def _memory_bars(ax, at_batch: list[StudyPoint], batch: int) -> None:
    """Predicted peak memory, stacked: the parameters, then activations, inputs and the rest."""
    factor, unit = _prefix(max(p.memory_bytes for p in at_batch), "B")
    models = [p.model for p in at_batch]
    weights = [p.parameters_bytes / factor for p in at_batch]
    rest = [max(p.memory_bytes - p.parameters_bytes, 0) / factor for p in at_batch]
    _model_bars(ax, models, weights, f"peak memory ({unit})", f"predicted peak memory at batch {batch}",
                label="parameters")
    ax.bar(range(len(models)), rest, bottom=weights, color="#ff7f0e", label="activations,\ninputs, rest")
    if _spans_decades([w + r for w, r in zip(weights, rest)], 2):
        ax.set_yscale("log")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _intensity_vs_batch(ax, points: list[StudyPoint], models: list[str]) -> None:
    for i, model in enumerate(models):
        mine = sorted((p for p in points if p.model == model), key=lambda p: p.batch)
        ax.plot([p.batch for p in mine], [p.intensity for p in mine], "o-", color=series_colour(i), label=model,
                markersize=4)
    _batch_axis(ax, sorted({p.batch for p in points}))
    if _spans_decades([p.intensity for p in points], 1):
        ax.set_yscale("log")
    ax.set_ylabel("arithmetic intensity (FLOP/byte)")
    ax.set_title("arithmetic intensity vs batch size")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="model")


# ---- 3. latency against size --------------------------------------------------------------------
@styled
def latency_scatter(points: list[StudyPoint], chip: str, measured: bool = False) -> Figure:
    """Latency vs FLOPs and vs parameters, throughput vs batch, on one chip (seed 002, 3.1, 3.2, 3.5)."""
    on_chip = [p for p in points if p.chip == chip]
    if not on_chip:
        chips = ", ".join(dict.fromkeys(p.chip for p in points)) or "none"
        raise RooflineError(f"no study points for chip {chip!r}; the points are for: {chips}")
    shown = [p for p in on_chip if p.measured_s is not None] if measured else on_chip
    if not shown:
        raise RooflineError(f"no measured latency for chip {chip!r}: measure the points first "
                            "(measured times exist for the calibrated 'local' chip)")
    kind = "measured" if measured else "predicted"
    latency_s = [p.measured_s if measured else p.predicted_s for p in shown]
    latency_ms = [1e3 * t for t in latency_s]
    fig = new_figure(16, 6.5)
    ax_flops, ax_params, ax_throughput = fig.subplots(1, 3)
    batches = sorted({p.batch for p in shown})
    _scatter_by_batch(ax_flops, shown, [p.flops / 1e9 for p in shown], latency_ms, batches)
    ax_flops.set_xlabel("forward FLOPs (GFLOP)")
    _scatter_by_batch(ax_params, shown, [p.parameters / 1e6 for p in shown], latency_ms, batches)
    ax_params.set_xlabel("parameters (M)")
    for ax, what in ((ax_flops, "FLOPs"), (ax_params, "parameters")):
        ax.set_ylabel(f"{kind} latency (ms)")
        ax.set_title(f"latency vs {what}")
    _throughput_lines(ax_throughput, shown, [p.batch / t for p, t in zip(shown, latency_s)], batches)
    ax_throughput.set_ylabel(f"{kind} throughput (samples/s)")
    fig.legend(*ax_flops.get_legend_handles_labels(), loc="outside lower center", ncols=len(batches),
               title="point and label colour in the latency panels")
    skipped = len(on_chip) - len(shown)
    note = f" ({skipped} point{'s' * (skipped != 1)} without a measurement skipped)" if skipped else ""
    fig.suptitle(f"{chip} · {shown[0].precision} · inference forward pass: {kind} latency and throughput{note}")
    lay_out_for_labels(fig)  # one layout for both panels' labels
    for ax, xs in ((ax_flops, [p.flops / 1e9 for p in shown]), (ax_params, [p.parameters / 1e6 for p in shown])):
        for label, p in zip(place_labels(ax, xs, latency_ms, [p.model for p in shown], fontsize=6, laid_out=True),
                            shown):
            label.set_color(series_colour(batches.index(p.batch)))
    return fig


def _scatter_by_batch(ax, points: list[StudyPoint], xs: list[float], ys: list[float], batches: list[int]) -> None:
    for i, batch in enumerate(batches):
        mine = [k for k, p in enumerate(points) if p.batch == batch]
        ax.scatter([xs[k] for k in mine], [ys[k] for k in mine], s=22, color=series_colour(i), label=f"batch {batch}",
                   zorder=3, edgecolor="white", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(0.08)


def _throughput_lines(ax, points: list[StudyPoint], samples_per_s: list[float], batches: list[int]) -> None:
    """One line per model across batch sizes, in the model's colour."""
    models = list(dict.fromkeys(p.model for p in points))
    for i, model in enumerate(models):
        mine = sorted((p.batch, v) for p, v in zip(points, samples_per_s) if p.model == model)
        ax.plot([b for b, _ in mine], [v for _, v in mine], "o-", color=series_colour(i), label=model, markersize=4)
    _batch_axis(ax, batches)
    ax.set_yscale("log")
    ax.set_title("throughput vs batch size")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="model")


# ---- 4. rank correlation ------------------------------------------------------------------------
@styled
def correlation_heatmap(correlation: RankCorrelation) -> Figure:
    """The Spearman matrix as an annotated heatmap, -1 (blue) to 1 (red), undefined rho (a constant
    variable) grey and "n/a" (seed 002, 3.3)."""
    n = len(correlation.labels)
    if n == 0:
        raise RooflineError("the rank correlation has no variables to plot")
    fig = new_figure(2.2 + 1.25 * n, 1.2 + 1.1 * n)
    ax = fig.subplots()
    cmap, norm = colormaps["RdBu_r"].with_extremes(bad="#e0e0e0"), Normalize(-1.0, 1.0)
    image = ax.imshow(correlation.matrix, cmap=cmap, norm=norm)
    for i, row in enumerate(correlation.matrix):
        for j, rho in enumerate(row):
            ax.text(j, i, "n/a" if math.isnan(rho) else f"{rho:.2f}", ha="center", va="center", fontsize=10,
                    color=_text_colour(cmap(norm(rho))))
    labels = [textwrap.fill(label, 18) for label in correlation.labels]
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="Spearman ρ", shrink=0.8)
    ax.set_title(f"Spearman rank correlation over {correlation.samples} (model, batch) pairs")
    return fig


def _text_colour(rgba) -> str:
    """Black on light cells, white on dark ones (relative luminance, sRGB weights)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"
