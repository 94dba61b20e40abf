"""Kernel keys, kernel points in the roofline, the op timer, and the kernel probes.

Probe timings are only checked for shape and range here; what they are worth is measured by
bench/accuracy.py and bench/op_errors.py.
"""
from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn

from estimator.calibrate import write_hardware_yaml
from estimator.capture import capture
from estimator.hardware import load_hardware
from estimator.kernel_probes import PROBES, Probe, kernel_points, merge_points
from estimator.kernels import is_known_key, kernel_key
from estimator.op_timer import OpTimer, align
from estimator.precision import PRECISIONS
from estimator.roofline import node_time, step_costs

CHIP = """
id: kchip
name: Kernel chip
vendor: Me
kind: cpu
peak_tflops:
  matrix: {fp32: 1}
  vector: {fp32: 1}
memory: {bandwidth_gbps: 100, capacity_gb: 16}
kernel_overhead_us: 5
source: test
achievable:
  curves: {memory: [[1.0e3, 0.5], [1.0e9, 0.5]]}
  kernels:
    native_batch_norm: [[1.0e+5, 1.0e+5, 0.1], [1.0e+7, 1.0e+7, 0.3]]
    convolution.depthwise: [[1.0e6, 1.0e6, 0.02]]
"""


def _conv_keys(conv: nn.Conv2d, mode: str = "train") -> list[str]:
    step = capture(nn.Sequential(conv), (torch.randn(2, conv.in_channels, 8, 8),), mode=mode)
    return [kernel_key(n) for n in step.nodes if "convolution" in n.name]


def test_conv_variants_are_told_apart_forward_and_backward():
    assert _conv_keys(nn.Conv2d(8, 8, 3, groups=8)) == ["convolution.depthwise", "convolution_backward.depthwise"]
    assert _conv_keys(nn.Conv2d(8, 16, 1)) == ["convolution.pointwise", "convolution_backward.pointwise"]
    assert _conv_keys(nn.Conv2d(8, 16, 3)) == ["convolution", "convolution_backward"]
    assert _conv_keys(nn.Conv2d(8, 16, 3, groups=2)) == ["convolution", "convolution_backward"]  # grouped, not depthwise
    assert _conv_keys(nn.Conv2d(8, 8, 3, groups=8), "inference") == ["convolution.depthwise"]


def test_batch_norm_in_eval_mode_is_its_own_kernel():
    def keys(mode):
        step = capture(nn.Sequential(nn.BatchNorm2d(4)), (torch.randn(2, 4, 8, 8),), mode=mode)
        return [kernel_key(n) for n in step.nodes if "batch_norm" in n.name]
    assert keys("inference") == ["native_batch_norm.eval"]
    assert keys("train") == ["native_batch_norm", "native_batch_norm_backward"]


def test_known_keys():
    assert is_known_key("native_batch_norm") and is_known_key("convolution_backward.pointwise")
    assert is_known_key("native_batch_norm.eval") and not is_known_key("native_batch_norm.depthwise")
    assert not is_known_key("batchnorm") and not is_known_key("gelu.depthwise")
    assert not is_known_key("convolution.strided")


@pytest.fixture
def chip(tmp_path):
    path = tmp_path / "kchip.yaml"
    path.write_text(CHIP)
    return load_hardware(str(path))


def test_kernel_fraction_is_the_nearest_points_weighted_by_inverse_squared_distance(chip):
    a = chip.achievable
    assert a.kernel_fraction("native_batch_norm", 1e5, 1e5) == pytest.approx(0.1)  # on a point: its own
    assert a.kernel_fraction("convolution.depthwise", 1e9, 1e3) == pytest.approx(0.02)  # one point: it
    # (3, 3) in log10 space is 2*sqrt(2) from (5, 5) and 4*sqrt(2) from (7, 7): weights 1/8 and 1/32
    expected = math.exp((math.log(0.1) / 8 + math.log(0.3) / 32) / (1 / 8 + 1 / 32))
    assert a.kernel_fraction("native_batch_norm", 999, 999) == pytest.approx(expected, rel=1e-4)
    # halfway between the two points in log space: the geometric mean
    assert a.kernel_fraction("native_batch_norm", 1e6 - 1, 1e6 - 1) == pytest.approx(math.sqrt(0.1 * 0.3), rel=1e-4)


def test_kernel_points_scale_both_roofs(chip):
    step = capture(nn.Sequential(nn.BatchNorm2d(16), nn.ReLU()), (torch.randn(4, 16, 32, 32),), mode="train")
    fp32 = PRECISIONS["fp32"]
    seen = set()
    for cost in step_costs(step, fp32):
        t = node_time(cost, chip, fp32)
        roof_s = max(cost.flops / 1e12, cost.bytes / 100e9)
        if cost.kernel == "native_batch_norm":
            f = chip.achievable.kernel_fraction("native_batch_norm", cost.flops, cost.bytes)
            assert 0.1 < f < 0.3
            assert t.total_s == pytest.approx(roof_s / f + 5e-6)
            assert t.roofline_s == pytest.approx(roof_s)
            seen.add(cost.kernel)
        elif cost.op_class == "elementwise":  # no kernel points: the class roofs (memory curve 0.5)
            assert t.memory_s == pytest.approx(cost.bytes / 100e9 / 0.5)
            seen.add("elementwise")
    assert seen == {"native_batch_norm", "elementwise"}


def test_kernel_points_of_a_matrix_kernel(chip):
    step = capture(nn.Sequential(nn.Conv2d(8, 8, 3, groups=8)), (torch.randn(1, 8, 16, 16),), mode="inference")
    cost = step_costs(step, PRECISIONS["fp32"])[[n.name for n in step.nodes].index("aten.convolution.default")]
    assert cost.kernel == "convolution.depthwise"
    t = node_time(cost, chip, PRECISIONS["fp32"])
    assert t.total_s == pytest.approx(max(cost.flops / 1e12, cost.bytes / 100e9) / 0.02 + 5e-6)


def test_op_timer_sees_the_ops_capture_records():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    x = torch.randn(2, 3, 8, 8)
    model(x)  # materialise the lazy layer
    step = capture(model, (x,), mode="inference")
    with OpTimer() as timer, torch.no_grad():
        model.eval()(x)
    names = [name for name, _ in timer.ops]
    assert all(seconds >= 0 for _, seconds in timer.ops)
    pairs = align([n.name for n in step.nodes], names)
    assert len(pairs) >= len(step.nodes) - 1 and "aten.convolution.default" in names


def test_align_skips_ops_only_one_side_has():
    assert align(["a", "b", "c"], ["a", "x", "b", "c"]) == [(0, 0), (1, 2), (2, 3)]


def test_merge_points_takes_the_median_at_equal_sizes_and_sorts():
    merged = merge_points([(10, 5, 0.2), (1, 1, 0.5), (10, 5, 0.4), (10, 5, 0.9), (10, 6, 0.1)])
    assert merged == [[1.0, 1.0, 0.5], [10.0, 5.0, 0.4], [10.0, 6.0, 0.1]]


def test_kernel_points_from_two_probes(tmp_path):
    probes = (Probe("bn", lambda: nn.BatchNorm2d(16), lambda s: (s, 16, 32, 32), ("train", "inference")),
              Probe("dw", lambda: nn.Conv2d(16, 16, 3, padding=1, groups=16), lambda s: (s, 16, 32, 32)))
    ticks = []
    curves, notes = kernel_points("cpu", scales=(1, 2), reps=1, peak_flops_per_s=1e11, bandwidth_bytes_per_s=2e10,
                                  overhead_s=1e-7, on_probe=lambda: ticks.append(1), probes=probes)
    assert len(ticks) == 4
    assert {"native_batch_norm", "native_batch_norm_backward", "native_batch_norm.eval",
            "convolution.depthwise", "convolution_backward.depthwise"} <= set(curves)
    assert all(is_known_key(k) for k in curves)
    for points in curves.values():
        assert all(flops >= 0 and nbytes > 0 and 0 < f <= 1 for flops, nbytes, f in points)
        assert points == sorted(points)
    assert all(p[0] > 0 for p in curves["convolution.depthwise"])  # a matrix kernel has FLOPs
    assert notes[0].startswith(f"kernel points: {len(curves)} kernels from 2 probes")
    # what calibrate writes loads back as the chip's kernel points
    doc = yaml.safe_load(CHIP)
    doc["achievable"]["kernels"] = curves
    write_hardware_yaml(doc, tmp_path / "probed.yaml")
    loaded = load_hardware(str(tmp_path / "probed.yaml")).achievable.kernels
    assert {k: [list(p) for p in v] for k, v in loaded.items()} == curves


def test_every_probe_builds_and_names_known_kernels():
    for probe in PROBES:
        layer = probe.layer()
        assert isinstance(layer, nn.Module), probe.name
        assert all(d > 0 for d in probe.input_shape(1)), probe.name


def test_hardware_show_names_the_slowest_kernel_points(chip):
    from rich.console import Console

    from estimator.render_hardware import chip_sheet
    console = Console(width=400, record=True)
    console.print(chip_sheet(chip))
    text = console.export_text()
    assert "measured points for 2 kernels (slowest: convolution.depthwise 2%, native_batch_norm 10%" in text
