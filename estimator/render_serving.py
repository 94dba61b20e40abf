"""Rich renderables and the throughput-latency figure for `roofline serve` (estimator.serving).
Units: ms, tokens/s, GB (1e9 bytes).
"""
from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from .render_fit import FitTable
from .serving import ServingResult


def serving_table(result: ServingResult) -> Table:
    r = result
    formats = f"weights {r.weights}, KV cache {r.kv}" if (r.weights, r.kv) != ("auto", "auto") else ""
    title = (f"{r.model} · {r.chip}" + (f" x {r.gpus} (tensor parallel)" if r.gpus > 1 else "")
             + f" · {r.precision}{' · ' + formats if formats else ''} · {r.execution} · prompt {r.prompt:,}, "
             f"generate {r.generate:,}")
    table = FitTable(title=title, box=box.SIMPLE_HEAD, title_justify="left",
                     caption=f"weights {r.weights_bytes / 1e9:,.1f} GB; KV cache "
                             f"{r.kv_bytes_per_sequence / 1e9:,.3f} GB per sequence of {r.prompt + r.generate:,} "
                             f"tokens; largest batch that fits: {r.max_batch:,} (of {r.capacity_bytes / 1e9:,.0f} "
                             "GB, before an engine's reserve). TPOT: time per output token, mean over the generation",
                     caption_justify="left")
    priority = {"TPOT first ms": 4, "TPOT last ms": 4, "request s": 3, "memory GB": 2}  # first to go when narrow
    for col in ("batch", "TTFT ms", "TPOT first ms", "TPOT last ms", "TPOT mean ms", "tokens/s/user",
                "tokens/s/GPU", "request s", "memory GB", "fits"):
        table.add_column(col, justify="left" if col == "fits" else "right", priority=priority.get(col, 0))
    for p in r.points:
        fits = r.fits(p.batch)
        table.add_row(f"{p.batch:,}", f"{p.prefill.time_s * 1e3:,.1f}", f"{p.decode[0].time_s * 1e3:,.2f}",
                      f"{p.decode[2].time_s * 1e3:,.2f}", f"{p.time_per_token_s * 1e3:,.2f}",
                      f"{p.tokens_per_s_per_user:,.1f}", f"{p.tokens_per_s_per_gpu:,.0f}",
                      f"{p.prefill.time_s + (r.generate - 1) * p.time_per_token_s:,.2f}",
                      f"{r.memory_bytes(p.batch) / 1e9:,.1f}",
                      Text("yes", style="green") if fits else Text("NO", style="bold red"))
    return table


def throughput_latency(results: list[ServingResult]):
    """Tokens/s per GPU against time per output token: one point per batch, one line per chip."""
    from .plot_style import styled  # matplotlib only when a plot is asked for

    return styled(_throughput_latency)(results)


def _throughput_latency(results: list[ServingResult]):
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from .plot_style import new_figure, place_labels, series_colour

    fig = new_figure(7.0, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    points = []  # (xs, ys, labels) of each chip, labelled once the axes are final
    for i, r in enumerate(results):
        xs = [p.time_per_token_s * 1e3 for p in r.points]
        ys = [p.tokens_per_s_per_gpu for p in r.points]
        ax.plot(xs, ys, marker="o", color=series_colour(i), label=f"{r.chip} ({r.precision}, {r.execution})")
        misses = [(x, y) for x, y, p in zip(xs, ys, r.points) if not r.fits(p.batch)]
        if misses:  # batches whose KV cache does not fit: crossed out
            ax.scatter(*zip(*misses), marker="x", s=80, color="#c62828", zorder=5)
        points.append((xs, ys, [f"b={p.batch}" + ("" if r.fits(p.batch) else " (does not fit)") for p in r.points]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        low, high = axis.get_view_interval()
        axis.set_minor_formatter(ScalarFormatter() if high < 10 * low else NullFormatter())  # label 20, 30 ... within a decade
    ax.set_xlabel("time per output token (ms, mean over the generation)")
    ax.set_ylabel("output tokens/s per GPU")
    first = results[0]
    ax.set_title(f"{first.model}: prompt {first.prompt:,}, generate {first.generate:,} tokens", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center",
               ncols=min(len(results), 3))  # below the axes, clear of every point
    for xs, ys, labels in points:  # after the scales, limits and legend (place_labels reads their places)
        place_labels(ax, xs, ys, labels, fontsize=7)
    return fig
