"""Measure per-kernel efficiency points (`achievable.kernels`) for `roofline calibrate`.

Datasheet-style roofs treat every memory-bound op as streaming at the copy bandwidth and every
convolution like a GEMM. Real CPU kernels do not: a training batch norm reads its input two or
three times, a depthwise convolution reaches a few percent of the GEMM peak, a max-pool
scans its window, GELU spends its time in erf. So calibrate runs a set of probes, small
layers that real models are made of (convolutions dense, 1x1 and depthwise, batch and layer
norm, pooling, activations, linear layers, softmax, attention, embedding), each at a few
sizes, forward and backward, and times every aten op they run (estimator.op_timer) beside
the estimator's own cost of the same op (capture + cost rules). For each op:

    fraction = roofline time / (measured time - per-op overhead),  clamped to [0.001, 1]
    (ops shorter than 4 x the overhead, or whose roofline time is below it, are left out:
    their time is the overhead)
    roofline time = max(FLOPs / measured GEMM peak, bytes / measured bandwidth)

and each kernel key (estimator.kernels) keeps its points as [FLOPs, bytes, fraction]: the
efficiency of a kernel depends on both (a 1x1 convolution with 64 input channels on a large
activation runs at a fifth of the rate of one with 1024 channels on a small one, at the same
FLOPs), so the estimator interpolates between the nearest points in (log FLOPs, log bytes)
(hardware.Achievable.kernel_fraction). Points of the same op at the same sizes (a forward
run in train and in eval mode) are merged by their median. The estimator then reproduces each
probe op's measured time. The points are properties of the kernels, measured once per
machine; nothing in them knows about a model.

A probe's input is a parameter of the probe module, so the backward computes the input
gradient as it does inside a network. The loss is sum(output * g) with a fixed random g, so
the incoming gradient is dense; only the layer's own ops (not the loss's) make the points.

Example:
    >>> curves, notes = kernel_points("cpu", scales=(1, 8), reps=3, peak_flops_per_s=1.4e11,
    ...                               bandwidth_bytes_per_s=4e10, overhead_s=2.5e-6)
    >>> curves["native_batch_norm"][0]          # [FLOPs, bytes, fraction]
    [1806336.0, 1605888.0, 0.12]
"""
from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .capture import capture
from .deadline import Deadline, never, predict_s
from .op_timer import OpTimer, align, cuda_sync
from .precision import PRECISIONS
from .roofline import step_costs

MIN_FRACTION = 1e-3
OVERHEAD_DOMINATED = 4  # ops faster than this x the per-op overhead give no curve point


@dataclass(frozen=True)
class Probe:
    """A layer and the shape of its input at scale s (a batch multiplier)."""

    name: str
    layer: Callable[[], nn.Module]
    input_shape: Callable[[int], tuple[int, ...]]
    modes: tuple[str, ...] = ("train",)  # "inference" too where eval runs another kernel


class _Attention(nn.Module):
    def __init__(self, causal: bool):
        super().__init__()
        self.causal = causal

    def forward(self, x):  # x: (3, B, H, T, D) = q, k, v
        return F.scaled_dot_product_attention(x[0], x[1], x[2], is_causal=self.causal)


class _TokenEmbedding(nn.Module):
    """GPT-2's token embedding of fixed ids, added to the probe input (batch scales up to 64)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50257, 768)
        self.register_buffer("ids", torch.randint(0, 50257, (64, 128)), persistent=False)

    def forward(self, x):
        return self.embed(self.ids[:x.shape[0]]) + x


class _Residual(nn.Module):
    """x + y out of place, as a residual connection adds (a fresh output each call)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.y = nn.Parameter(torch.randn(shape))

    def forward(self, x):
        return x + self.y


def _image(c: int, hw: int) -> Callable[[int], tuple[int, ...]]:
    return lambda s: (s, c, hw, hw)


def _tokens(t: int, d: int) -> Callable[[int], tuple[int, ...]]:
    return lambda s: (s, t, d)


TRAIN_AND_EVAL = ("train", "inference")
PROBES = (
    # dense 3x3 convolutions at the four ResNet stages
    *(Probe(f"conv 3x3 {c}@{hw}", lambda c=c: nn.Conv2d(c, c, 3, padding=1), _image(c, hw), TRAIN_AND_EVAL)
      for c, hw in ((64, 56), (128, 28), (256, 14), (512, 7))),
    # 1x1 convolutions: ResNet bottlenecks and MobileNet/EfficientNet expand and project layers
    *(Probe(f"conv 1x1 {i}->{o}@{hw}", lambda i=i, o=o: nn.Conv2d(i, o, 1), _image(i, hw), TRAIN_AND_EVAL)
      for i, o, hw in ((64, 256, 56), (256, 64, 56), (512, 128, 28), (1024, 256, 14), (16, 96, 112),
                       (144, 24, 56), (960, 160, 7))),
    # depthwise convolutions
    Probe("depthwise 3x3 96@112", lambda: nn.Conv2d(96, 96, 3, padding=1, groups=96), _image(96, 112), TRAIN_AND_EVAL),
    Probe("depthwise 3x3 576@14", lambda: nn.Conv2d(576, 576, 3, padding=1, groups=576), _image(576, 14),
          TRAIN_AND_EVAL),
    Probe("depthwise 3x3 s2 144@56", lambda: nn.Conv2d(144, 144, 3, stride=2, padding=1, groups=144), _image(144, 56)),
    Probe("depthwise 5x5 s2 240@28", lambda: nn.Conv2d(240, 240, 5, stride=2, padding=2, groups=240), _image(240, 28)),
    # norms and pooling
    *(Probe(f"batchnorm {c}@{hw}", lambda c=c: nn.BatchNorm2d(c), _image(c, hw), TRAIN_AND_EVAL)
      for c, hw in ((32, 112), (64, 112), (256, 14), (960, 7))),
    Probe("layernorm 768", lambda: nn.LayerNorm(768), _tokens(128, 768)),
    Probe("layernorm 96 (channels-last)", lambda: nn.LayerNorm(96), _tokens(3136, 96)),
    Probe("maxpool 3x3 s2", lambda: nn.MaxPool2d(3, 2, 1), _image(64, 112), TRAIN_AND_EVAL),
    Probe("global avgpool", lambda: nn.AdaptiveAvgPool2d(1), _image(512, 7)),
    # residual adds (a scale-1 second operand, broadcast over the batch)
    Probe("residual add 256@56", lambda: _Residual((256, 56, 56)), _image(256, 56), TRAIN_AND_EVAL),
    Probe("residual add 768", lambda: _Residual((128, 768)), _tokens(128, 768), TRAIN_AND_EVAL),
    # activations, out of place and in place
    Probe("relu", nn.ReLU, _image(64, 56)),
    Probe("relu in-place", lambda: nn.ReLU(inplace=True), _image(64, 56), TRAIN_AND_EVAL),
    Probe("relu6", nn.ReLU6, _image(96, 56)),
    Probe("relu6 in-place", lambda: nn.ReLU6(inplace=True), _image(144, 56), TRAIN_AND_EVAL),
    Probe("silu", nn.SiLU, _image(96, 56)),
    Probe("silu in-place", lambda: nn.SiLU(inplace=True), _image(96, 56), TRAIN_AND_EVAL),
    Probe("hardswish", nn.Hardswish, _image(96, 56)),
    Probe("sigmoid", nn.Sigmoid, _image(96, 56)),
    Probe("gelu", nn.GELU, _tokens(128, 3072)),
    Probe("gelu tanh", lambda: nn.GELU(approximate="tanh"), _tokens(128, 3072)),
    # transformer pieces
    *(Probe(f"linear {i}->{o}", lambda i=i, o=o: nn.Linear(i, o), _tokens(128, i))
      for i, o in ((384, 1152), (768, 768), (768, 2304), (768, 3072), (3072, 768))),
    Probe("softmax", lambda: nn.Softmax(-1), lambda s: (s, 12, 128, 128)),
    Probe("attention", lambda: _Attention(False), lambda s: (3, s, 12, 128, 64)),
    Probe("causal attention", lambda: _Attention(True), lambda s: (3, s, 12, 128, 64)),
    Probe("embedding", _TokenEmbedding, _tokens(128, 768)),
)


class _Harness(nn.Module):
    """Holds the probe's input as a parameter, so the backward computes its gradient."""

    def __init__(self, layer: nn.Module, x: torch.Tensor):
        super().__init__()
        self.layer = layer
        self.x = nn.Parameter(x)

    def forward(self, _unused):
        return self.layer(self.x.clone())  # a non-leaf, as inside a network (in-place layers work)


def _probe_points(probe: Probe, scale: int, mode: str, device: torch.device, reps: int,
                  peak_flops_per_s: float, bandwidth_bytes_per_s: float, overhead_s: float,
                  deadline: Deadline | None = None) -> tuple[list[tuple[str, int, int, float]], float]:
    """((kernel key, FLOPs, bytes, fraction) for each op of one probe at one scale and mode, seconds
    of one repeat); after the deadline, no repeats past the first timed one."""
    deadline = deadline or never()
    torch.manual_seed(0)
    harness = _Harness(probe.layer(), torch.randn(probe.input_shape(scale))).to(device)
    harness.train(mode == "train")
    dummy = torch.zeros(1, device=device)
    with torch.no_grad():
        g = torch.randn_like(harness(dummy))

    def loss_fn(out):
        return (out * g).sum()

    step = capture(harness, (dummy,), mode=mode, loss_fn=loss_fn, optimizer=None)
    costs = step_costs(step, PRECISIONS["fp32"])
    sync = cuda_sync(device)
    timed: list[list[float]] = []
    names: list[str] = []
    rep_s = math.inf
    for i in range(reps + 1):  # the first is warm-up
        started = time.perf_counter()
        with OpTimer(sync) as timer, torch.set_grad_enabled(mode == "train"):
            out = harness(dummy)
            if mode == "train":
                torch.autograd.grad(loss_fn(out), [harness.x, *harness.layer.parameters()])
        rep_s = min(rep_s, time.perf_counter() - started)
        if i == 0:
            names = [name for name, _ in timer.ops]
        elif [name for name, _ in timer.ops] == names:
            timed.append([t for _, t in timer.ops])
        if i > 0 and deadline.expired:
            break
    if not timed:
        return [], rep_s
    medians = [statistics.median(col) for col in zip(*timed)]
    points = []
    for i, j in align([n.name for n in step.nodes], names):
        node, cost = step.nodes[i], costs[i]
        if not node.module_path.startswith("layer") or cost.op_class == "free" or not cost.kernel:
            continue
        roof_s = max(cost.flops / peak_flops_per_s, cost.bytes / bandwidth_bytes_per_s)
        if roof_s < overhead_s or medians[j] < OVERHEAD_DOMINATED * overhead_s:  # the time is the overhead
            continue
        fraction = roof_s / max(medians[j] - overhead_s, 1e-9)
        points.append((cost.kernel, cost.flops, cost.bytes, min(1.0, max(MIN_FRACTION, fraction))))
    return points, rep_s


def merge_points(points: list[tuple[int, int, float]]) -> list[list[float]]:
    """[FLOPs, bytes, fraction] sorted by (FLOPs, bytes); points at the same (FLOPs, bytes) merged
    into their median fraction."""
    by_size: dict[tuple[int, int], list[float]] = defaultdict(list)
    for flops, nbytes, fraction in points:
        by_size[(flops, nbytes)].append(fraction)
    return [[float(flops), float(nbytes), float(f"{statistics.median(fs):.4g}")]
            for (flops, nbytes), fs in sorted(by_size.items())]


@dataclass
class _Sweep:
    """What kernel_points may spend (the deadline, the longest repeat a probe may take), what it
    left out to keep them, and the probe runs that failed."""

    deadline: Deadline
    max_call_s: float
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def allows(self, predicted_s: float, reps: int) -> bool:
        """Whether a probe whose repeat is predicted to take `predicted_s` fits (reps + warm-up)."""
        return predicted_s <= self.max_call_s and self.deadline.allows(predicted_s * (reps + 1))


def _probe_scales(probe: Probe, scales: tuple[int, ...], mode: str, dev: torch.device, reps: int,
                  roofs: tuple[float, float, float], sweep: _Sweep) -> list[tuple[str, int, int, float]]:
    """The points of one probe and mode at each scale (ascending); a scale whose repeat, predicted
    from the scale below, would not fit the sweep's budget is skipped with the ones above it."""
    points: list[tuple[str, int, int, float]] = []
    last: tuple[int, float] | None = None  # (scale, seconds of a repeat)
    for i, scale in enumerate(scales):
        if sweep.deadline.expired or (last and not sweep.allows(predict_s(last[1], last[0], scale), reps)):
            sweep.skipped.append(f"{probe.name} ({mode}) at scale {', '.join(map(str, scales[i:]))}")
            break
        try:
            found, rep_s = _probe_points(probe, scale, mode, dev, reps, *roofs, sweep.deadline)
        except (RuntimeError, NotImplementedError) as e:  # a kernel this device lacks
            sweep.failed.append(f"{probe.name} ({mode}, scale {scale}): {str(e).splitlines()[0][:120]}")
            continue
        points += found
        last = (scale, rep_s)
    return points


def kernel_points(device: str, scales: tuple[int, ...], reps: int, peak_flops_per_s: float,
                  bandwidth_bytes_per_s: float, overhead_s: float,
                  on_probe: Callable[[], None] = lambda: None, probes: tuple[Probe, ...] = PROBES, *,
                  deadline: Deadline | None = None, max_call_s: float = math.inf,
                  say: Callable[[str], None] = lambda line: None) -> tuple[dict[str, list[list[float]]], list[str]]:
    """Run every probe at every scale and mode; return ({kernel key: [[FLOPs, bytes, fraction]]}, notes).
    Within `deadline`: a scale whose repeat is predicted over max_call_s or the time left is skipped,
    and what was left out is recorded as cut (deadline.cut). say(line) after each probe."""
    dev = torch.device(device)
    sweep = _Sweep(deadline or never(), max_call_s)
    roofs = (peak_flops_per_s, bandwidth_bytes_per_s, overhead_s)
    by_key: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for probe in probes:
        for mode in probe.modes:
            for key, flops, nbytes, fraction in _probe_scales(probe, scales, mode, dev, reps, roofs, sweep):
                by_key[key].append((flops, nbytes, fraction))
        for _ in scales:
            on_probe()
        say(f"kernel probe {probe.name}")
    if sweep.skipped:
        more = f"; and {len(sweep.skipped) - 5} more" if len(sweep.skipped) > 5 else ""
        sweep.deadline.cut(f"kernel points: skipped {len(sweep.skipped)} probe runs: "
                           + "; ".join(sweep.skipped[:5]) + more)
    curves = {key: merge_points(points) for key, points in sorted(by_key.items())}
    notes = [f"kernel points: {len(curves)} kernels from {len(probes)} probes (layers at batch scales "
             f"{', '.join(map(str, scales))}, forward and backward, {reps} timed repeats, median per op); fraction "
             f"= roofline time at the peak and bandwidth above / (measured op time - kernel overhead), as "
             f"[FLOPs, bytes, fraction] points; lowest: "
             + ", ".join(f"{k} {min(p[2] for p in c):.3g}"
                         for k, c in sorted(curves.items(), key=lambda kv: min(p[2] for p in kv[1]))[:5])]
    notes += [f"kernel probe failed: {f}" for f in sweep.failed]
    return curves, notes
