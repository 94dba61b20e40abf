"""Roofline figures: they render to valid, non-blank PNG/SVG of the promised size, and draw what they say."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
from matplotlib.text import Text
import pytest
from PIL import Image

from estimator import plot_style
from estimator.capture import capture
from estimator.errors import RooflineError
from estimator.hardware import catalog_ids, load_hardware
from estimator.model_source import load_model
from estimator.plot_roofline import LABELLED_POINTS, chips_roofline, layer_roofline, models_roofline, short_path
from estimator.report import evaluate
from estimator.study import Study, with_measurements

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def a100():
    return load_hardware("a100-80gb-sxm")


@pytest.fixture(scope="module")
def train_report(a100):
    model, inputs, name = load_model("resnet18", batch=1, image=64)
    return evaluate(capture(model, inputs, mode="train", model_name=name), a100, "fp32")


@pytest.fixture(scope="module")
def study_points(a100):
    study = Study(["resnet18", "mobilenet_v2", "efficientnet_b0"], [a100, load_hardware("h100-sxm")], batches=[1, 2],
                  image=64)
    return study.points()


def _check_png(fig, path) -> None:
    """A PNG of figsize x DPI pixels with real content (not a blank canvas)."""
    plot_style.save_figure(fig, path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = Image.open(path).convert("RGB")
    assert image.size == tuple(round(v) for v in fig.get_size_inches() * plot_style.DPI)
    assert (np.asarray(image) < 250).any(axis=2).mean() > 0.03  # > 3% of the pixels are not white
    assert len(image.getcolors(maxcolors=1 << 24)) > 50  # text, lines, markers: antialiased, many colours


def _check_svg(fig, path) -> None:
    plot_style.save_figure(fig, path)
    assert ET.parse(path).getroot().tag.endswith("svg")


def _offsets(ax, gid: str) -> np.ndarray:
    """The data points of the scatter with this gid (empty when there is none)."""
    found = [c.get_offsets() for c in ax.collections if c.get_gid() == gid]
    return np.concatenate(found) if found else np.empty((0, 2))


def _drawable(rows, side: str):
    return [r for r in rows if getattr(r, f"{side}_flops") and getattr(r, f"{side}_bytes")
            and getattr(r, f"{side}_time_s")]


def test_layer_roofline_draws_every_layer_with_flops_on_log_axes(train_report, tmp_path):
    reports = [train_report, train_report.recost(load_hardware("h100-sxm"))]
    fig = layer_roofline(reports)
    _check_png(fig, tmp_path / "layers.png")
    assert len(fig.axes) == 2
    assert "TFLOP/s" in fig.axes[0].get_ylabel()  # the panels share it
    for ax, report in zip(fig.axes, reports):
        assert ax.get_xscale() == ax.get_yscale() == "log" and "FLOP/byte" in ax.get_xlabel()
        rows = report.rows("layer")
        assert report.hardware.name in ax.get_title() and "batch 1" in ax.get_title()
        forward, backward = _offsets(ax, "forward"), _offsets(ax, "backward")
        assert len(forward) == len(_drawable(rows, "forward")) and len(backward) == len(_drawable(rows, "backward"))
        fastest = max(_drawable(rows, "forward"), key=lambda r: r.forward_flops / r.forward_time_s)
        assert forward[:, 1].max() == pytest.approx(fastest.forward_flops / fastest.forward_time_s / 1e12)
        totals = report.totals()
        step_x, step_y = _offsets(ax, "step")[0]
        assert step_x == pytest.approx(totals["step_flops"] / totals["step_bytes"])
        assert step_y == pytest.approx(totals["step_flops"] / totals["step_time_s"] / 1e12)
        assert len(_offsets(ax, "measured-forward")) == 0  # nothing measured was given


def test_layer_roofline_draws_measured_points_on_the_first_panel_only(train_report):
    rows = _drawable(train_report.rows("layer"), "forward")[:5]
    measured = {r.name: (2 * r.forward_time_s, 3 * r.backward_time_s) for r in rows}
    step_s = 1.5 * train_report.totals()["step_time_s"]
    fig = layer_roofline([train_report, train_report.recost(load_hardware("h100-sxm"))], measured, step_s)
    first, second = fig.axes
    forward = _offsets(first, "measured-forward")
    assert sorted(forward[:, 1]) == pytest.approx(sorted(r.forward_flops / (2 * r.forward_time_s) / 1e12 for r in rows))
    assert len(_offsets(first, "measured-backward")) == sum(1 for r in rows if r.backward_flops and r.backward_time_s)
    assert _offsets(first, "measured-step")[0, 1] == pytest.approx(train_report.totals()["step_flops"] / step_s / 1e12)
    assert len(_offsets(second, "measured-forward")) == len(_offsets(second, "measured-step")) == 0


def test_layer_roofline_of_an_inference_step_has_no_backward(a100, tmp_path):
    model, inputs, name = load_model("resnet18", batch=1, image=64)
    report = evaluate(capture(model, inputs, mode="inference", model_name=name), load_hardware("i9-10940x"), "fp32")
    fig = layer_roofline([report])
    _check_png(fig, tmp_path / "inference.png")
    ax = fig.axes[0]
    assert len(_offsets(ax, "backward")) == 0 and len(_offsets(ax, "forward")) > 10
    assert "GFLOP/s" in ax.get_ylabel()  # a 3 TFLOP/s chip reads in GFLOP/s
    assert any("no backward" in t.get_text() for t in ax.get_legend().get_texts())


def test_chips_roofline_draws_one_line_per_chip_in_two_panels(tmp_path):
    ids = catalog_ids()
    fig = chips_roofline([load_hardware(c) for c in ids])
    _check_png(fig, tmp_path / "chips.png")
    assert len(fig.axes) == 2 and all(ax.get_xscale() == ax.get_yscale() == "log" for ax in fig.axes)
    lines = [line.get_gid() for ax in fig.axes for line in ax.get_lines()]
    assert sorted(lines) == ids
    h100 = next(line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == "h100-sxm")
    assert max(h100.get_ydata()) == pytest.approx(989.4)  # bf16 in TFLOP/s
    assert "h100-sxm" in h100.get_label() and "bf16" in h100.get_label()
    cpu = next(line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == "i9-10940x")
    assert "fp32" in cpu.get_label()  # no 16-bit matrix unit: fp32


def test_chips_roofline_at_a_precision_leaves_out_chips_without_it(tmp_path):
    fig = chips_roofline([load_hardware(c) for c in ("h100-sxm", "a100-80gb-sxm", "l4")], "fp8")
    _check_svg(fig, tmp_path / "fp8.svg")
    assert sorted(line.get_gid() for ax in fig.axes for line in ax.get_lines()) == ["h100-sxm", "l4"]
    assert "a100-80gb-sxm" in fig.get_suptitle()


def test_models_roofline_draws_each_model_and_batch_of_the_chip(study_points, a100, tmp_path):
    fig = models_roofline(study_points, a100, "fp32")
    _check_png(fig, tmp_path / "models.png")
    ax = fig.axes[0]
    mine = [p for p in study_points if p.chip == a100.id]
    for p in mine:
        (x, y), = _offsets(ax, f"predicted-{p.model}-{p.batch}")
        assert (x, y) == pytest.approx((p.intensity, p.predicted_flops_per_s / 1e12))
    assert len([c for c in ax.collections if (c.get_gid() or "").startswith("predicted-")]) == len(mine) == 6
    assert not [c for c in ax.collections if (c.get_gid() or "").startswith("measured-")]
    assert ax.get_title() == f"{a100.name}: models on the roofline (fp32, inference)"
    labels = [t.get_text() for t in ax.texts]
    assert all(labels.count(model) == 1 for model in ("resnet18", "mobilenet_v2", "efficientnet_b0"))


def test_models_roofline_draws_measured_points_hollow(study_points, a100):
    points = with_measurements(study_points, {("resnet18", 1): 0.01, ("mobilenet_v2", 2): "out of memory"}, a100.id)
    ax = models_roofline(points, a100, "fp32").axes[0]
    (x, y), = _offsets(ax, "measured-resnet18-1")
    measured = next(p for p in points if p.measured_s and p.chip == a100.id)
    assert (x, y) == pytest.approx((measured.intensity, measured.flops / 0.01 / 1e12))
    assert len([c for c in ax.collections if (c.get_gid() or "").startswith("measured-")]) == 1
    assert any(t.get_text() == "measured (this machine)" for t in ax.get_legend().get_texts())


def test_empty_inputs_are_refused_clearly(study_points):
    with pytest.raises(RooflineError, match="at least one report"):
        layer_roofline([])
    with pytest.raises(RooflineError, match="at least one chip"):
        chips_roofline([])
    with pytest.raises(RooflineError, match="none of .* has a fp8"):
        chips_roofline([load_hardware("a100-80gb-sxm")], "fp8")
    with pytest.raises(RooflineError, match="no study points for chip 'l4'"):
        models_roofline(study_points, load_hardware("l4"), "fp32")


def _text_boxes(fig, gid: str):
    """{text: its box in pixels (the text alone, not its leader)} of the annotations with this gid."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    return {t.get_text(): Text.get_window_extent(t, renderer) for t in fig.axes[0].texts if t.get_gid() == gid}


def test_layer_roofline_names_the_slowest_layers_clear_of_each_other_and_of_the_roofs(train_report):
    fig = layer_roofline([train_report])
    labels = _text_boxes(fig, "layer-label")
    assert 1 <= len(labels) <= LABELLED_POINTS
    # a label reads "PATH · 12.3%" or "PATH +K alike · 12.3%": K more layers at the same point
    named = [text.split(" · ")[0].split(" +")[0] for text in labels]
    covered = sum(1 + int(text.split(" +")[1].split()[0]) if " alike" in text else 1 for text in labels)
    rows = sorted((r for r in train_report.rows("layer") if r.forward_flops or r.backward_flops), key=lambda r: -r.time_s)
    assert named[0] == short_path(rows[0].name)  # the slowest layer first
    threshold = rows[covered - 1].time_s  # every layer named is among the `covered` slowest (ties allowed)
    by_name = {short_path(r.name): r for r in rows}
    assert all(by_name[name].time_s >= threshold * (1 - 1e-9) for name in named)
    share = float(next(iter(labels)).split(" · ")[1].rstrip("%")) / 100
    assert share == pytest.approx(rows[0].time_s / train_report.totals()["step_time_s"], abs=0.06)
    boxes = list(labels.values()) + list(_text_boxes(fig, "step-label").values())
    assert len(boxes) == len(labels) + 1
    for i, a in enumerate(boxes):  # no label over another, nor over a roof or the ridge line
        assert all(plot_style._overlap_area(a, b) == 0 for b in boxes[i + 1:])
        for line in fig.axes[0].lines:
            if (line.get_gid() or "").startswith(("roof", "ridge")):
                path = line.get_transform().transform(line.get_xydata())
                assert plot_style._clipped_length(a, path) == 0, (line.get_gid(), a)


def test_short_path_keeps_the_end_of_a_long_module_path():
    assert short_path("layer1.0.conv1") == "layer1.0.conv1"
    assert short_path("model.decoder.layers.11.self_attn.q_proj", 24) == "…11.self_attn.q_proj"
    assert len(short_path("a" * 40, 24)) == 24


def test_leader_length_inside_many_boxes_is_the_sum_of_each_boxs_clipping():
    """The vectorised clipping place_labels uses for leaders equals the one-box Liang-Barsky sum,
    also for leaders along a box's edge, vertical or horizontal, or of zero length."""
    from matplotlib.transforms import Bbox
    rng = np.random.default_rng(7)
    corners = rng.uniform(0, 100, size=(300, 2))
    extents = np.column_stack([corners, corners + rng.uniform(0, 30, size=(300, 2))])
    extents = np.vstack([extents, [[10, 10, 20, 20], [40, 0, 40, 50]]])  # an edge on x = 10, a zero-width box
    segments = [tuple(rng.uniform(-20, 140, size=4)) for _ in range(200)]
    segments += [(10, 0, 10, 30), (0, 15, 50, 15), (5, 5, 5, 5), (40, -10, 40, 60), (15, 12, 15, 12)]
    for segment in segments:
        expected = sum(plot_style._clipped_length(Bbox.from_extents(*row), [segment[:2], segment[2:]])
                       for row in extents)
        assert plot_style._segment_length_inside(segment, extents) == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert plot_style._segment_length_inside((0, 0, 1, 1), np.empty((0, 4))) == 0.0


def test_layout_without_unlabelled_minor_ticks_places_the_axes_as_with_them(train_report, monkeypatch):
    """The layer roofline's layout skips the log axes' unlabelled minor ticks (plot_style): the axes
    land where the layout with them puts them, and the minor ticks are back for drawing."""
    fast = layer_roofline([train_report])
    monkeypatch.setattr(plot_style, "_layout_pass", lambda fig: matplotlib.rc_context(plot_style.STYLE))
    plain = layer_roofline([train_report])  # laid out with every minor tick
    for a, b in zip(fast.axes, plain.axes, strict=True):
        assert a.get_position().bounds == b.get_position().bounds
        assert len(a.xaxis.get_minorticklocs()) > 10 and len(a.yaxis.get_minorticklocs()) > 10
        assert list(a.yaxis.get_minorticklocs()) == list(b.yaxis.get_minorticklocs())
        assert a.xaxis.isDefault_minloc == b.xaxis.isDefault_minloc


def test_figures_leave_the_callers_matplotlib_settings_alone(train_report, tmp_path):
    """A notebook's own plots keep their settings: ours apply only while a figure is made, laid
    out or saved (plot_style.STYLE), and still reach the figure drawn after that."""
    import matplotlib
    before = dict(matplotlib.rcParams)
    fig = layer_roofline([train_report])
    plot_style.save_figure(fig, tmp_path / "roofline.svg")
    assert dict(matplotlib.rcParams) == before
    assert before["font.size"] != plot_style.STYLE["font.size"]  # else the test would show nothing
    assert fig.axes[0].title.get_fontsize() == plot_style.STYLE["axes.titlesize"]
    assert "<text" in (tmp_path / "roofline.svg").read_text()  # svg.fonttype "none" at save time
