"""estimator.plot_charts: each chart saves as a PNG of the promised size that is not blank,
and what it draws is the report's or the study's numbers (bar lengths, pie shares, point
counts, the heatmap's diagonal); empty or unknown inputs raise RooflineError."""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from estimator import plot_style
from estimator.capture import capture
from estimator.errors import RooflineError
from estimator.hardware import load_hardware
from estimator.model_source import load_model
from estimator.plot_charts import breakdown, correlation_heatmap, latency_scatter, models_overview
from estimator.report import evaluate
from estimator.study import RankCorrelation, Study, rank_correlations, with_measurements

CHIP = "a100-80gb-sxm"
OTHER_CHIP = "h100-sxm"
MODELS = ["resnet18", "mobilenet_v2", "efficientnet_b0"]
BATCHES = [1, 2, 4]
PREFIXES = {"T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3, "": 1.0, "m": 1e-3, "µ": 1e-6, "n": 1e-9}


@pytest.fixture(scope="module")
def train_report():
    model, inputs, name = load_model("resnet18", batch=2, image=64)
    return evaluate(capture(model, inputs, mode="train", model_name=name), load_hardware(CHIP), "fp32")


@pytest.fixture(scope="module")
def study():
    return Study(MODELS, [load_hardware(CHIP), load_hardware(OTHER_CHIP)], BATCHES, image=64)


@pytest.fixture(scope="module")
def points(study):
    return study.points()


def saved_png(fig, tmp_path) -> Image.Image:
    """Save as PNG and check: the signature, figsize x DPI pixels, more than a few % non-white pixels."""
    path = plot_style.save_figure(fig, tmp_path / "x.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(path).convert("RGB")
    assert image.size == tuple(round(v) for v in fig.get_size_inches() * plot_style.DPI)
    pixels = np.asarray(image)
    assert (pixels.min(axis=2) < 250).mean() > 0.03
    return image


def unit_factor(axis_label: str, unit: str) -> float:
    """The SI factor of the prefixed unit in "time (ms)" -> 1e-3."""
    prefix = re.search(rf"\((\w*){unit}\)", axis_label).group(1)
    return PREFIXES[prefix]


def panel(fig, xlabel_start: str):
    return next(ax for ax in fig.axes if ax.get_xlabel().startswith(xlabel_start))


# ---- breakdown ----------------------------------------------------------------------------------
def test_breakdown_bars_are_the_report_rows(train_report, tmp_path):
    rows = train_report.rows("type")
    fig = breakdown(train_report, style="bar", top=3)
    saved_png(fig, tmp_path)
    for xlabel, unit, attributes in (("time", "s", ("forward_time_s", "backward_time_s")),
                                     ("FLOPs", "FLOP", ("forward_flops", "backward_flops")),
                                     ("bytes moved", "B", ("forward_bytes", "backward_bytes"))):
        ax = panel(fig, xlabel)
        factor = unit_factor(ax.get_xlabel(), unit)
        forward, backward = ax.containers  # one BarContainer per pass, types top to bottom, "other" last
        for container, attribute in zip((forward, backward), attributes):
            widths = [bar.get_width() * factor for bar in container]
            expected = [getattr(r, attribute) for r in rows[:3]] + [sum(getattr(r, attribute) for r in rows[3:])]
            assert widths == pytest.approx(expected, rel=1e-9, abs=1e-30)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [r.name for r in rows[:3]] + ["other"]
    assert fig.get_suptitle().startswith(f"resnet18 · {CHIP} · fp32 · train · batch 2: by layer type")


def test_breakdown_pies_share_colours_and_sum_to_100(train_report, tmp_path):
    fig = breakdown(train_report, style="pie", top=3)
    saved_png(fig, tmp_path)
    assert len(fig.axes) == 6  # forward and backward x time, FLOPs, bytes
    legend = fig.legends[0]
    colour_of = {text.get_text(): tuple(h.get_facecolor()) for text, h in zip(legend.get_texts(), legend.legend_handles)}
    rows = train_report.rows("type")
    forward_time_s = sum(r.forward_time_s for r in rows)
    for ax in fig.axes:
        wedges = ax.patches
        shares_pct = [100 * (w.theta2 - w.theta1) / 360 for w in wedges]
        assert sum(shares_pct) == pytest.approx(100)
        assert len(wedges) <= 3 + 1  # the top 3 and "other"
        colours = [tuple(w.get_facecolor()) for w in wedges]
        assert len(set(colours)) == len(colours) and set(colours) <= set(colour_of.values())
        labelled = [float(t.get_text().rstrip("%")) for t in ax.texts if t.get_text()]
        assert all(pct >= 4 for pct in labelled)  # small wedges stay unlabelled
    time_pie = fig.axes[0]  # forward time: its largest type first, clockwise from the top
    largest = max(rows, key=lambda r: r.forward_time_s)
    assert tuple(time_pie.patches[0].get_facecolor()) == colour_of[largest.name]
    assert (time_pie.patches[0].theta2 - time_pie.patches[0].theta1) / 360 == \
        pytest.approx(largest.forward_time_s / forward_time_s)


def test_inference_breakdown_shows_the_forward_only(study, tmp_path):
    report = study.report("resnet18", 2, load_hardware(CHIP))
    bars = breakdown(report, style="bar")
    assert "inference: forward only" in bars.get_suptitle()
    assert all(len(ax.containers) == 1 for ax in bars.axes)
    pies = breakdown(report, style="pie")
    saved_png(pies, tmp_path)
    assert len(pies.axes) == 3


def test_breakdown_rejects_an_unknown_style(train_report):
    with pytest.raises(RooflineError, match=r"'donut'.*bar, pie"):
        breakdown(train_report, style="donut")


# ---- models overview ----------------------------------------------------------------------------
def test_models_overview_bars_are_the_points_at_the_smallest_batch(points, tmp_path):
    fig = models_overview(points)
    saved_png(fig, tmp_path)
    first = {p.model: p for p in points if p.chip == CHIP and p.batch == 1}
    by_title = {ax.get_title(): ax for ax in fig.axes}
    flops_ax = by_title["forward FLOPs at batch 1"]
    factor = unit_factor(flops_ax.get_ylabel(), "FLOP")
    assert [b.get_height() * factor for b in flops_ax.patches] == pytest.approx([first[m].flops for m in MODELS])
    assert [t.get_text() for t in flops_ax.get_xticklabels()] == MODELS
    memory_ax = by_title["predicted peak memory at batch 1"]
    factor = unit_factor(memory_ax.get_ylabel(), "B")
    weights, rest = memory_ax.containers
    assert [(w.get_height() + r.get_height()) * factor for w, r in zip(weights, rest)] == \
        pytest.approx([first[m].memory_bytes for m in MODELS])
    lines = by_title["arithmetic intensity vs batch size"].get_lines()
    assert [line.get_label() for line in lines] == MODELS
    assert list(lines[0].get_xdata()) == BATCHES
    assert "fp32" in fig.get_suptitle()


def test_models_overview_needs_points():
    with pytest.raises(RooflineError, match="no study points"):
        models_overview([])


# ---- latency scatter ----------------------------------------------------------------------------
def scatter_count(ax) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections)


def test_latency_scatter_plots_every_point_of_the_chip(points, tmp_path):
    fig = latency_scatter(points, CHIP)
    saved_png(fig, tmp_path)
    on_chip = [p for p in points if p.chip == CHIP]
    flops_ax, params_ax, throughput_ax = fig.axes
    assert scatter_count(flops_ax) == scatter_count(params_ax) == len(on_chip) == len(MODELS) * len(BATCHES)
    assert len(flops_ax.texts) == len(on_chip)  # one model-name label per point
    assert [c.get_label() for c in flops_ax.collections] == [f"batch {b}" for b in BATCHES]
    assert flops_ax.get_xscale() == flops_ax.get_yscale() == "log"
    assert "predicted" in flops_ax.get_ylabel()
    assert len(throughput_ax.get_lines()) == len(MODELS)
    resnet = next(line for line in throughput_ax.get_lines() if line.get_label() == "resnet18")
    expected = [p.predicted_samples_per_s for p in on_chip if p.model == "resnet18"]
    assert list(resnet.get_ydata()) == pytest.approx(expected)


def test_latency_scatter_measured_skips_unmeasured_points(points, tmp_path):
    measured = {(m, b): 1e-3 * b for m in MODELS for b in BATCHES if (m, b) != ("mobilenet_v2", 4)}
    fig = latency_scatter(with_measurements(points, measured, chip_id=CHIP), CHIP, measured=True)
    saved_png(fig, tmp_path)
    assert scatter_count(fig.axes[0]) == len(MODELS) * len(BATCHES) - 1
    assert "1 point without a measurement skipped" in fig.get_suptitle()
    assert "measured" in fig.axes[0].get_ylabel()
    resnet = next(line for line in fig.axes[2].get_lines() if line.get_label() == "resnet18")
    assert list(resnet.get_ydata()) == pytest.approx([1000.0] * len(BATCHES))  # b / (1 ms x b)


def test_latency_scatter_errors(points):
    with pytest.raises(RooflineError, match=r"'t4'.*a100-80gb-sxm"):
        latency_scatter(points, "t4")
    with pytest.raises(RooflineError, match="no measured latency"):
        latency_scatter(points, CHIP, measured=True)


# ---- correlation heatmap ------------------------------------------------------------------------
def test_correlation_heatmap_diagonal_and_svg(points, tmp_path):
    measured = {(p.model, p.batch): 2 * p.predicted_s for p in points if p.chip == CHIP}
    correlation = rank_correlations(with_measurements(points, measured, chip_id=CHIP), [CHIP])
    fig = correlation_heatmap(correlation)
    saved_png(fig, tmp_path)
    n = len(correlation.labels)
    ax = fig.axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert all(cells[(i, i)] == "1.00" for i in range(n))
    assert np.allclose(np.diag(ax.images[0].get_array()), 1.0)
    assert ax.images[0].get_clim() == (-1.0, 1.0)
    assert ax.get_title() == f"Spearman rank correlation over {len(MODELS) * len(BATCHES)} (model, batch) pairs"
    path = plot_style.save_figure(fig, tmp_path / "x.svg")
    assert ET.parse(path).getroot().tag.endswith("svg")


def test_correlation_heatmap_marks_undefined_rho():
    nan = math.nan
    fig = correlation_heatmap(RankCorrelation(("FLOPs", "parameters"), ((1.0, nan), (nan, nan)), 3))
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["1.00", "n/a", "n/a", "n/a"]
    with pytest.raises(RooflineError, match="no variables"):
        correlation_heatmap(RankCorrelation((), (), 0))
