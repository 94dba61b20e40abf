"""Measure this machine's roofs and write them as a hardware YAML (`roofline calibrate`).

What is measured, each figure a median over its samples after warm-up, with its spread
((max - min) / median of the samples) written to the YAML's notes:

  * GEMM throughput (torch.mm, out= preallocated, FLOPs = 2 N^3) per dtype over a sweep of
    sizes N. A dtype's peak is the best median over the sizes, so it does not wander from run
    to run. CPU: fp32, plus bf16 / fp16 when a probe shows the CPU runs them at a sane speed
    (at least a quarter of the fp32 rate, best sample against best sample, the two dtypes taking
    turns in the same rounds: see emulated); CUDA: fp32 with TF32 off, tf32, fp16, bf16.
  * memory bandwidth: copy (b.copy_(a), 2 x bytes) and triad (torch.add(b, c, alpha=s, out=a),
    3 x bytes) on arrays at least 8 x the last-level cache and 256 MiB (quick: 4 x and 128 MiB);
    the bandwidth is the better of the two, each at its best sample (STREAM's "best rate"
    convention: a neighbour on a shared VM only ever slows a pass down, and the best pass over
    a few minutes is the figure that repeats; on a 2-core VM the per-minute median wandered
    by 20%, the best pass by 3%).
  * per-op overhead: a tiny op (torch.add on 1-element tensors, out= preallocated).
  * efficiency curves, [work, fraction of the peak] ascending in work: matmul from the fp32 GEMM
    sweep, conv (3x3 64->64 Conv2d at a few sizes, of the fp32 GEMM peak) and elementwise
    (torch.add from 4 KB to the big arrays, work = 3 x bytes, of the bandwidth). Each point is
    net of the per-op overhead, because the estimator adds `kernel_overhead_us` to every op on
    top of the curve-scaled roof: time = max(flops / (peak x f), bytes / (bw x f)) + overhead
    then reproduces the measured time of each point. Fractions are clamped to (0, 1].
  * kernel points (`achievable.kernels`): the efficiency of each aten kernel that common layers
    run (depthwise and 1x1 convolutions, batch norm, pooling, activations, ...), forward and
    backward, measured op by op at a few sizes against our own cost of the same op; see
    estimator.kernel_probes. Run after the rest, with the peak, bandwidth and overhead known.
  * host costs (`host:`): the host time of an aten op, a view, autograd recording, a backward
    op, autocast, an nn.Module call, the end-of-step sync, an optimizer parameter and a CUDA
    graph launch, in microseconds, on 1-element tensors; see estimator.host_probes. Run last,
    outside inference mode (autograd is part of what it measures).

Noise: on a shared machine a neighbour can slow memory or compute by 10-30% for seconds at a
time, so a median over one short burst wanders from run to run. Every measurement is therefore
taken in rounds (a few samples each), and the rounds of all measurements take turns, spread
evenly over the whole run (run_interleaved); a slow stretch then touches a few rounds of each
figure instead of all of one.

Time budget (`budget_s`, `roofline calibrate --budget`; 60 s quick, 300 s full): each phase
(dtype check, the interleaved rounds, the GEMM extension, kernel points, host costs) gets a
share of the time left (SHARES), checked between probes and inside their loops: a size whose
single call, predicted from the size below, would exceed max_call_s or the time left is
skipped, and rounds and repeats stop at the deadline (every group keeps at least one round).
The notes list what was cut short ("cut short: ..."), and summary_lines shows it.

The peaks written are measured, so the `achievable` fractions are 1.0 and only the curves fall
off for small work. Timing uses time.perf_counter on CPU and CUDA events on GPU, under
torch.inference_mode, with the default thread count.

Example:
    >>> doc = calibrate(quick=True)                  # about 25 s on a 2-core VM
    >>> write_hardware_yaml(doc, Path("local.yaml"))
    >>> print("\\n".join(summary_lines(doc)))
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import platform
import re
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from .deadline import Deadline, never, predict_s
from .errors import RooflineError
from .output_paths import check_output_file
from .host_probes import HOST_PLANS, host_summary, measure_host
from .kernel_probes import PROBES, kernel_points

SANE_DTYPE_FRACTION = 0.25  # a low-precision GEMM slower than this x fp32 is emulated: skip it
DTYPE_ROUNDS = 5  # rounds of the emulation check, low precision and fp32 taking turns
PROGRESS_EVERY_S = 5.0  # a progress line at least this often during the interleaved rounds
CALLS_PER_BUDGET = 50  # no single timed call may take more than budget / this (nor the plan's max_call_s)
# each phase's share of the time left when it starts (the host costs take the rest)
SHARES = {"dtype check": 0.1, "interleaved": 0.6, "GEMM extension": 0.3, "kernel points": 0.7}
MIB = 1 << 20


@dataclass(frozen=True)
class Stats:
    """Per-call seconds: `rounds` rounds of `repeats` samples, each sample the mean of `inner`
    back-to-back calls. The figure is the median over all samples; as the rounds of every
    measurement are spread over the whole run (run_interleaved), so are its samples."""

    rounds: tuple[tuple[float, ...], ...]
    inner: int

    @property
    def samples(self) -> list[float]:
        return [t for r in self.rounds for t in r]

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median over every sample."""
        return (max(self.samples) - min(self.samples)) / self.median_s

    @property
    def drift(self) -> float:
        """(slowest - fastest) round median / fastest: how much the machine moved between rounds."""
        medians = [statistics.median(r) for r in self.rounds]
        return (max(medians) - min(medians)) / min(medians)

    @property
    def best_s(self) -> float:
        """The fastest sample (STREAM's convention for bandwidth): interference only slows a
        sample down, so the fastest shows what the hardware sustains."""
        return min(self.samples)

    @property
    def count(self) -> int:
        return len(self.samples)

    def describe(self) -> str:
        text = f"spread {100 * self.spread:.1f}% ({self.count} samples x {self.inner} calls"
        if len(self.rounds) > 1:
            text += f" in {len(self.rounds)} rounds whose medians differ by up to {100 * self.drift:.1f}%"
        return text + ")"


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one calibration mode (full, quick, or tiny for tests)."""

    name: str
    rounds: int  # rounds per curve measurement (conv, elementwise)
    gemm_rounds: int  # rounds of each GEMM sweep (sizes take turns) and of the per-op overhead
    stream_rounds: int  # rounds of copy and triad (taking turns) on the big arrays
    repeats: int  # samples per round
    warmup: int
    min_sample_s: float  # each sample loops a fast op until it takes about this long
    cuda_min_sample_s: float  # the same on CUDA, whose event timing is precise (and which has 4 GEMM dtypes)
    cpu_gemm_sizes: tuple[int, ...]
    cuda_gemm_sizes: tuple[int, ...]
    extend_gemm: bool  # keep doubling N while the rate still grows and a call stays short
    probe_n: tuple[int, int]  # (cpu, cuda) N of the low-precision sanity probe
    llc_factor: float  # stream arrays at least this many x the last-level cache ...
    min_array_bytes: int  # ... and at least this large
    curve_bytes: tuple[int, ...]  # elementwise curve array sizes below the stream arrays
    conv_shapes: tuple[tuple[int, int], ...]  # (batch, pixels) of the 3x3 64->64 conv
    probe_scales: tuple[int, ...]  # batch scales of the kernel probes (estimator.kernel_probes)
    probe_reps: int  # timed repeats of each probe
    host_plan: str  # the estimator.host_probes plan of the host costs
    budget_s: float  # default time budget of the whole run (`--budget`)
    max_call_s: float  # skip a size whose single call is predicted to take longer

    def bench_kw(self, rounds: int | None = None, **override) -> dict[str, Any]:
        return dict(rounds=rounds or self.rounds, repeats=self.repeats, warmup=self.warmup,
                    min_sample_s=self.min_sample_s) | override


PLANS = {
    "full": Plan("full", rounds=6, gemm_rounds=36, stream_rounds=150, repeats=3, warmup=2,
                 min_sample_s=0.1, cuda_min_sample_s=0.02,
                 cpu_gemm_sizes=(128, 256, 512, 1024, 2048), cuda_gemm_sizes=(256, 512, 1024, 2048, 4096, 8192),
                 extend_gemm=True, probe_n=(256, 1024), llc_factor=8, min_array_bytes=256 * MIB,
                 curve_bytes=tuple(4096 * 4 ** i for i in range(9)),  # 4 KB .. 256 MB
                 conv_shapes=((1, 14), (1, 28), (8, 14), (1, 56), (8, 28), (8, 56)), probe_scales=(1, 4, 16),
                 probe_reps=5, host_plan="full", budget_s=300, max_call_s=2.0),
    "quick": Plan("quick", rounds=3, gemm_rounds=16, stream_rounds=60, repeats=3, warmup=1,
                  min_sample_s=0.05, cuda_min_sample_s=0.01,
                  cpu_gemm_sizes=(128, 512, 1024, 2048), cuda_gemm_sizes=(512, 2048, 4096, 8192),
                  extend_gemm=False, probe_n=(256, 1024), llc_factor=4, min_array_bytes=128 * MIB,
                  curve_bytes=(4096, 65536, 1 * MIB, 16 * MIB), conv_shapes=((1, 14), (1, 56), (8, 56)),
                  probe_scales=(1, 8), probe_reps=2, host_plan="quick", budget_s=60, max_call_s=1.0),
    "tiny": Plan("tiny", rounds=2, gemm_rounds=2, stream_rounds=2, repeats=3, warmup=1,
                 min_sample_s=0.002, cuda_min_sample_s=0.002,
                 cpu_gemm_sizes=(32, 64, 128), cuda_gemm_sizes=(64, 128, 256),
                 extend_gemm=False, probe_n=(64, 128), llc_factor=0, min_array_bytes=4 * MIB,
                 curve_bytes=(4096, 65536), conv_shapes=((1, 7), (1, 14)), probe_scales=(), probe_reps=1,
                 host_plan="tiny", budget_s=60, max_call_s=1.0),
}


# ---------------------------------------------------------------- timing

class Timer:
    """Times `inner` back-to-back calls: perf_counter on CPU, CUDA events on GPU."""

    def __init__(self, device: str):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def run(self, fn: Callable[[], Any], inner: int) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return time.perf_counter() - t0


class Bench:
    """A group of fns timed together: warm-up, an inner loop per fn sized so one sample takes about
    min_sample_s, then `rounds` rounds of `repeats` samples per fn, the fns taking turns within a
    round. Rounds are taken one at a time (take_round) so that run_interleaved can spread the
    rounds of several groups over the whole calibration.

    Budget: with `work` (key -> FLOPs or bytes; fns in ascending work), a fn whose single call,
    predicted from the last fn prepared, would exceed max_call_s or the time left to `deadline`
    is skipped (the first always runs); a round stops taking repeats once the deadline passes."""

    def __init__(self, name: str, fns: dict[Any, Callable[[], Any]], timer: Timer, *, rounds: int, repeats: int,
                 warmup: int, min_sample_s: float, max_inner: int = 1_000_000,
                 context: Callable[[], Any] = contextlib.nullcontext, on_round: Callable[[], None] = lambda: None,
                 deadline: Deadline | None = None, work: Callable[[Any], float] | None = None,
                 max_call_s: float = math.inf, label: Callable[[Any], str] = str):
        self.name, self.fns, self.timer = name, dict(fns), timer
        self.rounds, self.repeats, self.warmup, self.min_sample_s = rounds, repeats, warmup, min_sample_s
        self.max_inner, self.context, self.on_round = max_inner, context, on_round
        self.deadline = deadline or never()
        self.work, self.max_call_s, self.label = work, max_call_s, label
        self.inners: dict[Any, int] = {}
        self.samples: dict[Any, list[tuple[float, ...]]] = {k: [] for k in fns}
        self.done = 0

    def prepare(self) -> None:
        last: tuple[Any, float] | None = None  # (key, seconds per call) of the last fn prepared
        skipped = []
        with self.context():
            for key in list(self.fns):
                if last and self.work:
                    call_s = predict_s(last[1], self.work(last[0]), self.work(key))
                    if call_s > self.max_call_s or not self.deadline.allows(call_s * (self.warmup + 1)):
                        skipped.append(f"{self.label(key)} (~{call_s:.2g} s a call)")
                        del self.fns[key], self.samples[key]
                        continue
                self.inners[key], call_s = self._size(self.fns[key])
                last = (key, call_s)
        if skipped:
            self.deadline.cut(f"{self.name}: skipped {', '.join(skipped)}, over the {self.max_call_s:.2g} s "
                              f"a call may take or the time left")

    def _size(self, fn: Callable[[], Any]) -> tuple[int, float]:
        """Warm fn up; (calls per sample so that a sample takes about min_sample_s, the best seconds
        per call seen, warm-up calls included: a thread woken late slows some calls, not all)."""
        best = min((self.timer.run(fn, 1) for _ in range(self.warmup)), default=math.inf)
        self.timer.sync()
        inner = 1
        t = self.timer.run(fn, inner)
        for _ in range(2):  # refine: the first single call is the noisiest
            best = min(best, t / inner)
            if t >= self.min_sample_s or inner >= self.max_inner:
                break
            inner = min(self.max_inner, max(inner + 1, math.ceil(self.min_sample_s / max(t / inner, 1e-9))))
            t = self.timer.run(fn, inner)
        return inner, min(best, t / inner)

    def take_round(self) -> None:
        """One sample per repeat of every fn; past the deadline, one sample each."""
        with self.context():
            for key, fn in self.fns.items():
                self.samples[key].append(self._repeats(fn, self.inners[key]))
        self.done += 1
        self.on_round()

    def _repeats(self, fn: Callable[[], Any], inner: int) -> tuple[float, ...]:
        times = []
        for _ in range(self.repeats):
            times.append(self.timer.run(fn, inner) / inner)
            if self.deadline.expired:
                break
        return tuple(times)

    def stats(self) -> dict[Any, Stats]:
        return {k: Stats(tuple(self.samples[k]), self.inners[k]) for k in self.fns}

    def release(self) -> None:
        """Drop the fns (and the tensors they hold)."""
        self.fns = {}


def run_interleaved(benches: list[Bench], deadline: Deadline | None = None,
                    say: Callable[[str], None] = lambda line: None) -> None:
    """Prepare every group, then take their rounds spread evenly in time: next is always the group
    whose (rounds done + 1/2) / rounds is smallest, so a group of 40 rounds and one of 4 both span
    the whole run. A neighbour that slows the machine for a stretch of seconds then touches a few
    rounds of every measurement instead of all of one. Past `deadline`, only groups without a
    round yet take one; the rounds left out are recorded as cut. say(line) after each group is
    prepared and every PROGRESS_EVERY_S of rounds."""
    deadline = deadline or never()
    for b in benches:
        b.prepare()
        say(f"{b.name}: warmed up ({', '.join(map(b.label, b.fns))})")
    total, said = sum(b.rounds for b in benches), deadline.clock()
    while True:
        pending = [b for b in benches if b.done < b.rounds and (b.done == 0 or not deadline.expired)]
        if not pending:
            break
        min(pending, key=lambda b: (b.done + 0.5) / b.rounds).take_round()
        if deadline.clock() - said >= PROGRESS_EVERY_S:
            said = deadline.clock()
            say(f"rounds: {sum(b.done for b in benches)} of {total} taken")
    short = [f"{b.name} {b.done} of {b.rounds} rounds" for b in benches if b.done < b.rounds]
    if short:
        deadline.cut("rounds: " + ", ".join(short))


def bench_many(fns: dict[Any, Callable[[], Any]], timer: Timer, *, rounds: int = 1, repeats: int, warmup: int,
               min_sample_s: float, **kw) -> dict[Any, Stats]:
    """Time a group of fns on their own (see Bench)."""
    b = Bench("", fns, timer, rounds=rounds, repeats=repeats, warmup=warmup, min_sample_s=min_sample_s, **kw)
    run_interleaved([b], b.deadline)
    return b.stats()


def bench(fn: Callable[[], Any], timer: Timer, **kw) -> Stats:
    """bench_many for one fn."""
    return bench_many({0: fn}, timer, **kw)[0]


# ---------------------------------------------------------------- measurements

@contextlib.contextmanager
def _matmul_precision(value: str | None):
    """torch.set_float32_matmul_precision for the block: 'highest' = no TF32, 'high' = TF32."""
    if value is None:
        yield
        return
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(value)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


@contextlib.contextmanager
def _fp32_conv(cuda: bool):
    """Full fp32 convolution: matmul precision 'highest' and, on CUDA, cuDNN TF32 off."""
    with _matmul_precision("highest"):
        if not cuda:
            yield
            return
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = old


@dataclass(frozen=True)
class GemmSpec:
    key: str  # the YAML peak_tflops.matrix key
    dtype: torch.dtype
    matmul_precision: str | None  # float32 matmul precision while measuring


def gemm_specs(device: str) -> list[GemmSpec]:
    if torch.device(device).type == "cuda":
        return [GemmSpec("fp32", torch.float32, "highest"), GemmSpec("tf32", torch.float32, "high"),
                GemmSpec("fp16", torch.float16, None), GemmSpec("bf16", torch.bfloat16, None)]
    return [GemmSpec("fp32", torch.float32, "highest"), GemmSpec("bf16", torch.bfloat16, None),
            GemmSpec("fp16", torch.float16, None)]


def _gemm_fn(n: int, dtype: torch.dtype, device: str) -> Callable[[], Any]:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    return lambda: torch.mm(a, b, out=c)


def gemm_bench(spec: GemmSpec, device: str, sizes: tuple[int, ...], plan: Plan, timer: Timer,
               on_round: Callable[[], None] = lambda: None, deadline: Deadline | None = None) -> Bench:
    """torch.mm(a, b, out=c) at each N of `sizes` (FLOPs 2 N^3), the sizes taking turns; a size whose
    call is predicted (from the size below) to exceed plan.max_call_s or the time left is skipped."""
    return Bench(f"GEMM {spec.key}", {n: _gemm_fn(n, spec.dtype, device) for n in sizes}, timer,
                 **plan.bench_kw(plan.gemm_rounds), context=lambda: _matmul_precision(spec.matmul_precision),
                 on_round=on_round, deadline=deadline, work=lambda n: 2 * n ** 3, max_call_s=plan.max_call_s,
                 label=lambda n: f"N={n}")


def extend_gemm(results: dict[int, Stats], spec: GemmSpec, device: str, plan: Plan, timer: Timer,
                max_call_s: float = 0.3, max_n: int = 16384, deadline: Deadline | None = None) -> dict[int, Stats]:
    """Keep doubling N past the largest size while the rate still grows by 3% and one call stays
    under max_call_s: a big CPU or GPU is not saturated by the listed sizes. Stops, too, when the
    time left to `deadline` would not hold the next size's rounds."""
    deadline = deadline or never()
    results = dict(results)
    kw = plan.bench_kw(max(plan.rounds, plan.gemm_rounds // 2))
    while len(results) >= 2 and 2 * max(results) <= max_n:
        prev, last = sorted(results)[-2:]
        growing = gemm_tflops(last, results[last]) > 1.03 * gemm_tflops(prev, results[prev])
        call_s = results[last].median_s * 8
        if not growing or call_s > max_call_s:
            break
        if not deadline.allows(call_s * kw["rounds"] * kw["repeats"]):
            deadline.cut(f"GEMM {spec.key}: N={2 * last} not tried (the rate still grew; no time left)")
            break
        with _matmul_precision(spec.matmul_precision):
            results[2 * last] = bench(_gemm_fn(2 * last, spec.dtype, device), timer, deadline=deadline, **kw)
    return results


def measure_gemm(spec: GemmSpec, device: str, sizes: tuple[int, ...], plan: Plan, timer: Timer,
                 extend: bool = False) -> dict[int, Stats]:
    """Timings of torch.mm at each N, on their own (calibrate interleaves them with the rest)."""
    with torch.inference_mode():
        b = gemm_bench(spec, device, sizes, plan, timer)
        run_interleaved([b])
        results = b.stats()
        b.release()
        return extend_gemm(results, spec, device, plan, timer) if extend else results


def gemm_tflops(n: int, stats: Stats) -> float:
    return 2 * n ** 3 / stats.median_s / 1e12


def probe_dtype(spec: GemmSpec, device: str, n: int, timer: Timer,
                deadline: Deadline | None = None) -> tuple[list[float], list[float]]:
    """Per-call seconds of torch.mm at size n in `spec`'s dtype and in fp32, the two taking turns
    in the same DTYPE_ROUNDS rounds (fewer past `deadline`): a short check that a dtype is not
    emulated. On CPU with one thread: emulation is a property of a core, and on a busy machine a
    parallel GEMM waits for descheduled worker threads far more than a serial one does."""
    fns = {"low": _gemm_fn(n, spec.dtype, device), "fp32": _gemm_fn(n, torch.float32, device)}
    with torch.inference_mode(), _serial(not timer.cuda):
        stats = bench_many(fns, timer, rounds=DTYPE_ROUNDS, repeats=1, warmup=1, min_sample_s=0.01,
                           context=lambda: _matmul_precision("highest"), deadline=deadline)
    return stats["low"].samples, stats["fp32"].samples


@contextlib.contextmanager
def _serial(on: bool):
    """One intra-op thread for the block, when `on`."""
    threads = torch.get_num_threads()
    if on:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def native_fraction(low_s: list[float], fp32_s: list[float]) -> float:
    """A low-precision GEMM's rate as a fraction of fp32's at the same N, from per-call seconds of
    both taken in the same rounds: the ratio of their best samples. A busy machine only slows a
    sample down, so the best of each is the least disturbed, and the ratio holds unless every
    sample of one was slowed while some sample of the other was not."""
    return min(fp32_s) / min(low_s)


def emulated(low_s: list[float], fp32_s: list[float]) -> bool:
    """Whether a low-precision GEMM is emulated: under SANE_DTYPE_FRACTION of fp32's rate
    (an emulated bf16 or fp16 matmul runs at 1-2% of fp32, a native one at 50% or more)."""
    return native_fraction(low_s, fp32_s) < SANE_DTYPE_FRACTION


def overhead_bench(device: str, plan: Plan, timer: Timer, on_round: Callable[[], None] = lambda: None,
                   deadline: Deadline | None = None) -> Bench:
    """torch.add on 1-element tensors with out= preallocated: the per-op cost with no work."""
    a = torch.ones(1, device=device)
    b = torch.ones(1, device=device)
    out = torch.empty(1, device=device)
    return Bench("overhead", {"add": lambda: torch.add(a, b, out=out)}, timer,
                 **plan.bench_kw(plan.gemm_rounds, warmup=100), on_round=on_round, deadline=deadline)


def conv_flops(batch: int, pixels: int, channels: int = 64, kernel: int = 3) -> int:
    # 2 FLOPs per MAC x output elements (batch x Cout x H x W, 'same' padding) x Cin x kh x kw
    return 2 * batch * channels * pixels * pixels * channels * kernel * kernel


def conv_bench(device: str, shapes: tuple[tuple[int, int], ...], plan: Plan, timer: Timer,
               on_round: Callable[[], None] = lambda: None, deadline: Deadline | None = None) -> Bench:
    """3x3 64->64 Conv2d (stride 1, padding 1), fp32 (TF32 off on CUDA), at each (batch, pixels),
    in ascending FLOPs; a shape predicted too slow for plan.max_call_s or the time left is skipped."""
    w = torch.randn(64, 64, 3, 3, device=device)
    xs = {(batch, pixels): torch.randn(batch, 64, pixels, pixels, device=device)
          for batch, pixels in sorted(shapes, key=lambda shape: conv_flops(*shape))}
    fns = {shape: (lambda x=x: torch.nn.functional.conv2d(x, w, padding=1)) for shape, x in xs.items()}
    cuda = timer.cuda
    return Bench("conv", fns, timer, **plan.bench_kw(), context=lambda: _fp32_conv(cuda), on_round=on_round,
                 deadline=deadline, work=lambda shape: conv_flops(*shape), max_call_s=plan.max_call_s,
                 label=lambda shape: f"batch {shape[0]} at {shape[1]}x{shape[1]}")


def memory_benches(device: str, array_bytes: int, curve_bytes: tuple[int, ...], plan: Plan, timer: Timer,
                   on_round: Callable[[], None] = lambda: None,
                   deadline: Deadline | None = None) -> tuple[Bench, Bench]:
    """(stream, curve) on three fp32 arrays of array_bytes each. Stream: copy (b.copy_(a)) and triad
    (torch.add(b, c, alpha=3, out=a)) in single calls on CPU (10 ms or more each), so a sample is
    one pass. Curve: torch.add(x, y, out=z) on leading slices of the arrays at each size of
    curve_bytes below array_bytes, plus array_bytes."""
    numel = array_bytes // 4
    a, b, c = (torch.empty(numel, device=device, dtype=torch.float32) for _ in range(3))
    for t, v in ((a, 0.0), (b, 1.0), (c, 2.0)):
        t.fill_(v)  # touch every page before timing
    stream = Bench("stream", {"copy": lambda: b.copy_(a), "triad": lambda: torch.add(b, c, alpha=3.0, out=a)},
                   timer, **plan.bench_kw(plan.stream_rounds, min_sample_s=0.01), on_round=on_round, deadline=deadline)
    sizes = sorted({n for n in curve_bytes if n < array_bytes} | {array_bytes})
    views = {n: (a[:n // 4], b[:n // 4], c[:n // 4]) for n in sizes}
    curve = Bench("elementwise", {n: (lambda v=v: torch.add(v[0], v[1], out=v[2])) for n, v in views.items()},
                  timer, **plan.bench_kw(), on_round=on_round, deadline=deadline, label=lambda n: f"{n / MIB:.3g} MiB")
    return stream, curve


@dataclass
class MemoryResult:
    array_bytes: int
    copy: Stats
    triad: Stats
    curve: dict[int, Stats] = field(default_factory=dict)  # array bytes -> torch.add timing

    @property
    def copy_gbps(self) -> float:
        return 2 * self.array_bytes / self.copy.best_s / 1e9

    @property
    def triad_gbps(self) -> float:
        return 3 * self.array_bytes / self.triad.best_s / 1e9

    @property
    def best(self) -> tuple[str, float]:
        return max((("copy", self.copy_gbps), ("triad", self.triad_gbps)), key=lambda kv: kv[1])


def measure_memory(device: str, array_bytes: int, curve_bytes: tuple[int, ...], plan: Plan,
                   timer: Timer) -> MemoryResult:
    """Bandwidth and the elementwise curve on their own (calibrate interleaves them with the rest)."""
    with torch.inference_mode():
        stream, curve = memory_benches(device, array_bytes, curve_bytes, plan, timer)
        run_interleaved([stream, curve])
        s = stream.stats()
        return MemoryResult(array_bytes, s["copy"], s["triad"], curve.stats())


def measure_overhead(device: str, plan: Plan, timer: Timer) -> Stats:
    """The per-op overhead on its own (calibrate interleaves it with the rest)."""
    with torch.inference_mode():
        return _run_one(overhead_bench(device, plan, timer))["add"]


def measure_conv(device: str, shapes: tuple[tuple[int, int], ...], plan: Plan,
                 timer: Timer) -> dict[tuple[int, int], Stats]:
    """The conv timings on their own (calibrate interleaves them with the rest)."""
    with torch.inference_mode():
        return _run_one(conv_bench(device, shapes, plan, timer))


def _run_one(b: Bench) -> dict[Any, Stats]:
    run_interleaved([b])
    return b.stats()


# ---------------------------------------------------------------- machine facts

def llc_bytes(device: str = "cpu") -> int | None:
    """Last-level cache in bytes: CUDA L2; on CPU the highest cache level summed over its distinct
    instances (sysfs), else lscpu's figure."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.get_device_properties(torch.device(device)).L2_cache_size) or None
    instances: dict[tuple[int, str], int] = {}
    for index in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cache/index[0-9]*"):
        try:
            level = int((index / "level").read_text())
            if (index / "type").read_text().strip() == "Instruction":
                continue
            size = _parse_size((index / "size").read_text())
            shared = (index / "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        instances[(level, shared)] = size
    if instances:
        top = max(level for level, _ in instances)
        return sum(size for (level, _), size in instances.items() if level == top)
    with contextlib.suppress(Exception):
        import subprocess
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for name in ("L3 cache", "L2 cache"):
            m = re.search(rf"^{name}:\s*([\d.]+\s*[KMG]i?B?)", out, re.M)
            if m:
                return _parse_size(m.group(1))
    return None


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?)i?B?\s*", text, re.I)
    if not m:
        raise ValueError(f"cache size {text!r}")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()])


def _cpuinfo(key: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                return v.strip()
    return None


def _meminfo_bytes(key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


def machine(device: str) -> dict[str, Any]:
    """Name, vendor, kind, memory capacity (bytes) and free memory (bytes) of the device."""
    if torch.device(device).type == "cuda":
        dev = torch.device(device)
        props = torch.cuda.get_device_properties(dev)
        free, total = torch.cuda.mem_get_info(dev)
        vendor = "AMD" if getattr(torch.version, "hip", None) else "NVIDIA"
        return dict(name=props.name, vendor=vendor, kind="gpu", capacity=int(total), free=int(free),
                    blas="rocblas" if vendor == "AMD" else "cublas")
    total = _meminfo_bytes("MemTotal")
    if total is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    free = _meminfo_bytes("MemAvailable") or total
    name = _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"
    return dict(name=name, vendor=_cpuinfo("vendor_id") or "unknown", kind="cpu", capacity=total, free=free,
                blas="cpu_blas")


def stream_array_bytes(plan: Plan, llc: int | None, free: int | None) -> tuple[int, str]:
    """Bytes per stream array: max(llc_factor x LLC, min_array_bytes), capped so the three arrays
    take at most half the free memory. Returns (bytes, how it was chosen)."""
    want = max(int(plan.llc_factor * (llc or 0)), plan.min_array_bytes)
    want = -(-want // MIB) * MIB
    why = f"{want / MIB:.0f} MiB each"
    if llc:
        why += f" = {want / llc:.1f} x LLC ({llc / MIB:.0f} MiB)"
    if free and 3 * want > free // 2:
        want = max(MIB, (free // 6) // MIB * MIB)
        why = f"{want / MIB:.0f} MiB each, capped at half the free memory" + (
            f" = {want / llc:.1f} x LLC ({llc / MIB:.0f} MiB)" if llc else "")
    return want, why


# ---------------------------------------------------------------- progress

class _Progress:
    """One task per measurement group on a rich Progress, or calls progress(description, advance)
    with advance the fraction of the group just done; nothing when progress is None. line(message)
    passes '[  12.3 s] message' (seconds since `run` began) to say, when given."""

    def __init__(self, progress, say: Callable[[str], None] | None = None, run: Deadline | None = None):
        self.progress, self.say, self.run = progress, say, run or never()

    def line(self, message: str) -> None:
        if self.say:
            self.say(f"[{self.run.elapsed_s:6.1f} s] {message}")

    def group(self, description: str, total: int) -> Callable[[], None]:
        p = self.progress
        if p is None:
            return lambda: None
        if hasattr(p, "add_task"):
            task = p.add_task(description, total=total)
            return lambda: p.advance(task, 1)
        return lambda: p(description, 1 / total)


# ---------------------------------------------------------------- the document

def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _fraction(x: float) -> float:
    return min(1.0, max(_sig(x), 1e-6))


def _curve(points: list[tuple[float, float]]) -> list[list[float]]:
    """[[work, fraction], ...] strictly ascending in work (equal work keeps the larger fraction)."""
    merged: dict[float, float] = {}
    for work, frac in points:
        w = float(round(work))
        merged[w] = max(merged.get(w, 0.0), _fraction(frac))
    return [[w, merged[w]] for w in sorted(merged)]


def _net(seconds: float, overhead_s: float) -> float:
    """Time net of the per-op overhead; never below a tenth of the measured time."""
    return max(seconds - overhead_s, 0.1 * seconds)


def _device(device: str) -> tuple[str, bool]:
    """(the device as torch names it, with a CUDA index; whether it is CUDA), or a clear error."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("calibrate(device='cuda'): torch sees no CUDA device")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise ValueError(f"calibrate: device {device!r} is not supported; expected 'cpu' or 'cuda'")
    return str(dev), dev.type == "cuda"


def _native_specs(device: str, n: int, timer: Timer, deadline: Deadline,
                  steps: _Progress) -> tuple[list[GemmSpec], dict[str, str]]:
    """The GEMM specs to measure, and a note for each low-precision dtype found emulated (see emulated)."""
    specs, skipped = [], {}
    where = f"N={n}" + ("" if device.startswith("cuda") else " on one thread")
    for spec in gemm_specs(device):
        if spec.key in ("fp32", "tf32"):
            specs.append(spec)
            continue
        low_s, fp32_s = probe_dtype(spec, device, n, timer, deadline)
        fraction, is_emulated = native_fraction(low_s, fp32_s), emulated(low_s, fp32_s)
        if is_emulated:
            low, fp32 = 2 * n ** 3 / min(low_s) / 1e12, 2 * n ** 3 / min(fp32_s) / 1e12
            skipped[spec.key] = (f"GEMM {spec.key}: skipped: at {where} its best of {len(low_s)} calls ran at "
                                 f"{_sig(low, 3)} TFLOP/s, {100 * fraction:.1f}% of fp32's best in the same rounds "
                                 f"({_sig(fp32, 3)}); below {100 * SANE_DTYPE_FRACTION:.0f}% it is emulated, not "
                                 f"a native {spec.key} matmul")
        else:
            specs.append(spec)
        steps.line(f"GEMM {spec.key}: {'emulated' if is_emulated else 'native'} "
                   f"({100 * fraction:.1f}% of fp32 at {where})")
    return specs, skipped


def _interleaved(device: str, specs: list[GemmSpec], sizes: tuple[int, ...], array_bytes: int, plan: Plan,
                 timer: Timer, deadline: Deadline, steps: _Progress
                 ) -> tuple[Stats, dict[str, dict[int, Stats]], dict[tuple[int, int], Stats], MemoryResult]:
    """(overhead, GEMM timings by dtype and N, conv timings, memory): their rounds taking turns."""
    ov = overhead_bench(device, plan, timer, steps.group("per-op overhead", plan.gemm_rounds), deadline)
    gemm_groups = {spec.key: gemm_bench(spec, device, sizes, plan, timer,
                                        steps.group(f"GEMM {spec.key}", plan.gemm_rounds), deadline)
                   for spec in specs}
    conv_group = conv_bench(device, plan.conv_shapes, plan, timer, steps.group("conv curve", plan.rounds), deadline)
    mem_step = steps.group("memory bandwidth", plan.stream_rounds + plan.rounds)
    stream, curve = memory_benches(device, array_bytes, plan.curve_bytes, plan, timer, mem_step, deadline)
    groups = [ov, *gemm_groups.values(), conv_group, stream, curve]
    steps.line(f"overhead, GEMM {', '.join(gemm_groups)}, conv and memory in interleaved rounds "
               f"(up to {deadline.left_s:.0f} s)")
    run_interleaved(groups, deadline, steps.line)
    s = stream.stats()
    result = (ov.stats()["add"], {key: g.stats() for key, g in gemm_groups.items()}, conv_group.stats(),
              MemoryResult(array_bytes, s["copy"], s["triad"], curve.stats()))
    for g in groups:
        g.release()
    return result


def _kernel_points(device: str, plan: Plan, peak_flops_per_s: float, bandwidth_bytes_per_s: float,
                   overhead_s: float, deadline: Deadline,
                   steps: _Progress) -> tuple[dict[str, list[list[float]]], list[str]]:
    """estimator.kernel_probes' points and notes within `deadline`; none when the plan has no scales."""
    if not plan.probe_scales:
        return {}, []
    step = steps.group("kernel points", len(PROBES) * len(plan.probe_scales))
    steps.line(f"kernel points: {len(PROBES)} probes at scales {plan.probe_scales} (up to {deadline.left_s:.0f} s)")
    return kernel_points(device, plan.probe_scales, plan.probe_reps, peak_flops_per_s, bandwidth_bytes_per_s,
                         overhead_s, on_probe=step, deadline=deadline, max_call_s=plan.max_call_s, say=steps.line)


def _host_costs(device: str, plan: Plan, deadline: Deadline, steps: _Progress) -> dict[str, Any]:
    """estimator.host_probes' `host:` mapping, outside inference mode (autograd is part of what it measures)."""
    host_plan = HOST_PLANS[plan.host_plan]
    step = steps.group("host costs", host_plan.rounds)
    steps.line(f"host costs: {host_plan.rounds} rounds (up to {deadline.left_s:.0f} s)")
    host = measure_host(device, plan=host_plan, on_round=step, deadline=deadline)
    steps.line("host costs done")
    return host


def calibrate(device: str = "cpu", quick: bool = False, progress=None, *, plan: str | Plan | None = None,
              net_of_overhead: bool = True, budget_s: float | None = None,
              say: Callable[[str], None] | None = None) -> dict:
    """Measure `device` and return the hardware YAML document (a plain dict) for `--hardware local`.

    `progress`: None, a rich.progress.Progress (one task per measurement group), or a callable
    progress(description, advance) with advance the fraction of that group just finished.
    `plan`: "full", "quick" or "tiny" (tests: seconds, sizes far too small to trust), or a Plan;
    default "quick" if quick else "full". `net_of_overhead`: curve points net of the per-op overhead.
    `budget_s`: seconds the run may take (default the plan's); each phase takes a share of what is
    left (SHARES), and what was cut short to keep it is listed in the notes ("cut short: ...").
    `say(line)`: one line per phase and probe, with the seconds elapsed.
    """
    if isinstance(plan, str) or plan is None:
        plan = PLANS[plan or ("quick" if quick else "full")]
    budget_s = budget_s or plan.budget_s
    run = Deadline(budget_s)
    plan = dataclasses.replace(plan, max_call_s=min(plan.max_call_s, budget_s / CALLS_PER_BUDGET))
    device, cuda = _device(device)
    if cuda:
        plan = dataclasses.replace(plan, min_sample_s=plan.cuda_min_sample_s)
    timer = Timer(device)
    info = machine(device)
    llc = llc_bytes(device)
    threads = torch.get_num_threads()
    steps = _Progress(progress, say, run)
    sizes = plan.cuda_gemm_sizes if cuda else plan.cpu_gemm_sizes
    array_bytes, why = stream_array_bytes(plan, llc, info["free"])

    with torch.inference_mode():
        specs, skipped = _native_specs(device, plan.probe_n[1 if cuda else 0], timer, run.share(SHARES["dtype check"]),
                                       steps)
        overhead, gemm, conv, mem = _interleaved(device, specs, sizes, array_bytes, plan, timer,
                                                 run.share(SHARES["interleaved"]), steps)
        if plan.extend_gemm:
            extend = run.share(SHARES["GEMM extension"])
            steps.line("GEMM: trying larger N while the rate grows")
            gemm = {spec.key: extend_gemm(gemm[spec.key], spec, device, plan, timer, deadline=extend) for spec in specs}
    overhead_s = overhead.median_s if net_of_overhead else 0.0

    notes: list[str] = []
    peaks: dict[str, tuple[float, int]] = {}  # key -> (TFLOP/s, N)
    for key in (spec.key for spec in gemm_specs(device)):
        if key in skipped:
            notes.append(skipped[key])
            continue
        by_n = gemm[key]
        n_best = max(by_n, key=lambda n: gemm_tflops(n, by_n[n]))
        peaks[key] = (gemm_tflops(n_best, by_n[n_best]), n_best)
        by = ", ".join(f"{n}: {_sig(gemm_tflops(n, st), 4)}" for n, st in sorted(by_n.items()))
        notes.append(f"GEMM {key} ({info['blas']}): peak {_sig(peaks[key][0])} TFLOP/s, the best median over N, "
                     f"at N={n_best}, {by_n[n_best].describe()}; median TFLOP/s by N: {by}")
    fp32_peak = peaks["fp32"][0] * 1e12
    matrix_curve = _curve([(2 * n ** 3, 2 * n ** 3 / _net(st.median_s, overhead_s) / fp32_peak)
                           for n, st in gemm["fp32"].items()])
    conv_points = {shape: conv_flops(*shape) / _net(st.median_s, overhead_s) / fp32_peak for shape, st in conv.items()}
    conv_curve = _curve([(conv_flops(*shape), f) for shape, f in conv_points.items()])
    notes.append("conv curve: 3x3 64->64 Conv2d, stride 1, padding 1, fp32" + (", TF32 off" if cuda else "")
                 + "; fraction of the fp32 GEMM peak at (batch, pixels): "
                 + ", ".join(f"({b}, {p}): {_fraction(f)} {conv[(b, p)].describe()}"
                             for (b, p), f in conv_points.items()))
    which, gbps = mem.best
    memory_curve = _curve([(3 * n, 3 * n / _net(st.median_s, overhead_s) / (gbps * 1e9))
                           for n, st in mem.curve.items()])
    notes.append(f"memory bandwidth: {_sig(gbps)} GB/s from {which}, the better of the two (each its best sample, as STREAM reports); "
                 f"copy {_sig(mem.copy_gbps)} GB/s {mem.copy.describe()}; "
                 f"triad {_sig(mem.triad_gbps)} GB/s {mem.triad.describe()}; "
                 f"copy is b.copy_(a) counting 2 x bytes, triad is torch.add(b, c, alpha=s, out=a) "
                 f"counting 3 x bytes, on fp32 arrays of {why}")
    kernels, kernel_notes = _kernel_points(device, plan, fp32_peak, gbps * 1e9, overhead.median_s,
                                           run.share(SHARES["kernel points"]), steps)
    notes += kernel_notes
    host = _host_costs(device, plan, run.share(1.0), steps)
    notes.append(f"kernel overhead: {_sig(overhead.median_s * 1e6, 3)} us median per tiny op (torch.add on "
                 f"1-element tensors, out= preallocated), {overhead.describe()}")
    notes.append("elementwise curve: torch.add(x, y, out=z) on fp32 arrays from 4 KB up to the stream arrays, "
                 "work = 3 x array bytes, fraction of the bandwidth above (cache-resident sizes beat it and "
                 "are clamped to 1)")
    notes.append("every figure is a median over all its samples; the rounds of all measurements take turns, "
                 "spread evenly over the whole run, so a neighbour slowing the machine for some seconds touches "
                 "a few rounds of each instead of all of one; spread = (max - min) / median over the samples")
    notes.append("peak_tflops.vector.fp32 is the measured fp32 GEMM peak: elementwise ops are memory-bound, "
                 "so a separate vector FLOP rate is not measured")
    notes.append("achievable fractions are 1.0 because the peaks and bandwidth above are measured; the curves "
                 "give the fall-off for small work" + (", each point net of kernel_overhead_us (which the "
                 "estimator adds per op), clamped to (0, 1]" if net_of_overhead else ", clamped to (0, 1]"))
    if plan.name == "tiny":
        notes.append("plan 'tiny': sizes far too small to trust; for tests only")

    now = datetime.datetime.now().astimezone()
    label = f"torch {torch.__version__}, {threads} threads"
    notes += [f"cut short: {cut} (budget {budget_s:g} s)" for cut in run.cuts]
    notes.append(f"calibration took {run.elapsed_s:.0f} s ({plan.name} plan, budget {budget_s:g} s)")
    doc: dict[str, Any] = {
        "id": "local",
        "name": f"{info['name']} (measured)",
        "vendor": info["vendor"],
        "kind": info["kind"],
        "peak_tflops": {
            "matrix": {key: _sig(tflops) for key, (tflops, _) in peaks.items()},
            "vector": {"fp32": _sig(peaks["fp32"][0])},
        },
        "memory": {"bandwidth_gbps": _sig(gbps), "capacity_gb": _sig((info["capacity"] or 1e9) / 1e9)},
    }
    if llc:
        doc["cache_mb"] = _sig(llc / 1e6)
    doc["kernel_overhead_us"] = _sig(overhead.median_s * 1e6, 3)
    doc["achievable"] = {
        "matrix": 1.0, "vector": 1.0, "memory": 1.0,
        "curves": {"matrix": matrix_curve, "conv": conv_curve, "memory": memory_curve},
        **({"kernels": kernels} if kernels else {}),
        "source": [f"roofline calibrate, {now.date().isoformat()}, {label}"],
    }
    doc["host"] = host
    doc["source"] = [f"measured by roofline calibrate on {socket.gethostname()}, "
                     f"{now.isoformat(timespec='seconds')}, {label}, quick={plan.name != 'full'}"]
    doc["notes"] = notes
    return doc


class _Dumper(yaml.SafeDumper):
    """SafeDumper writing each [work, fraction] curve point on one line."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    pair = len(data) in (2, 3) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=pair or None)


_Dumper.add_representer(list, _represent_list)


def write_hardware_yaml(doc: dict, path: Path, validate: Callable[[Path], Any] = lambda path: None) -> None:
    """Write `doc` as YAML at `path` (parent folders created), under a comment saying how it was made.
    Atomic: written to a temporary file in the same folder, checked with validate(temporary path),
    then moved over `path`; on any error or interrupt the temporary file is removed and `path`
    is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# {doc.get('name', 'this machine')}: roofs measured by `roofline calibrate`\n"
              f"# ({'; '.join(doc.get('source', []))}).\n"
              "# Peaks are the best median GEMM rate over sizes; bandwidth the better of copy and triad;\n"
              "# curves are [work, fraction of the peak] from the same runs. Re-run `roofline calibrate`\n"
              "# to refresh; edits are kept only until then.\n")
    text = header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".roofline-", suffix=".yaml.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        validate(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_output_path(path: Path, make_parents: bool = False) -> Path:
    """`path` made absolute, or a RooflineError naming it and the fix, before any measuring
    (estimator.output_paths.check_output_file); `make_parents` for the default location, whose
    folders are made with the file."""
    absolute = Path(os.path.abspath(os.path.expanduser(path)))
    try:
        check_output_file("--out", str(absolute), make_parents=make_parents,
                          subject=f"cannot write the calibration to {str(absolute)[:140]}")
        return absolute
    except RooflineError as e:
        if make_parents:
            raise RooflineError(f"{e} (this is the default location; --out FILE writes elsewhere)") from None
        raise


_GEMM_NOTE = re.compile(r"^GEMM (\w+) \((\w+)\): peak [\d.eE+-]+ TFLOP/s.*? at N=(\d+), spread ([\d.]+)%")
_BANDWIDTH = re.compile(r"\b(copy|triad) ([\d.]+) GB/s spread ([\d.]+)%")


def summary_lines(doc: dict) -> list[str]:
    """Human lines: 'Peak: 0.86 TFLOPS (cpu_blas fp32, N=2048)' per dtype, bandwidth, overhead, spreads."""
    notes = doc.get("notes", [])
    gemm = {m.group(1): m for m in map(_GEMM_NOTE.match, notes) if m}
    lines = [f"Device: {doc['name']} [{doc['kind']}]" + (f", {doc['source'][0].split(', ', 2)[-1]}"
                                                          if doc.get("source") else "")]
    spreads = []
    for key, tflops in doc["peak_tflops"].get("matrix", {}).items():
        m = gemm.get(key)
        where = f"{m.group(2)} {key}, N={m.group(3)}" if m else key
        lines.append(f"Peak: {tflops:.2f} TFLOPS ({where})" if tflops >= 0.1 else
                     f"Peak: {tflops:.3g} TFLOPS ({where})")
        if m:
            spreads.append(f"GEMM {key} {m.group(4)}%")
    lines += [n for n in notes if n.startswith("GEMM ") and ": skipped:" in n]
    lines += ["Cut short: " + n.removeprefix("cut short: ") for n in notes if n.startswith("cut short: ")]
    bw_note = next((n for n in notes if n.startswith("memory bandwidth:")), "")
    source = re.search(r"from (copy|triad)", bw_note)
    found = _BANDWIDTH.findall(bw_note)
    detail = ", ".join(f"{k} {v}" for k, v, _ in found)
    lines.append(f"Bandwidth: {doc['memory']['bandwidth_gbps']:g} GB/s"
                 + (f" ({source.group(1)}; best samples: {detail} GB/s)" if source else ""))
    spreads += [f"{k} {spread}%" for k, _, spread in found]
    lines.append(f"Overhead: {doc['kernel_overhead_us']:g} us per op")
    ov_note = next((n for n in notes if n.startswith("kernel overhead:")), "")
    m = re.search(r"spread ([\d.]+)%", ov_note)
    if m:
        spreads.append(f"overhead {m.group(1)}%")
    curves = doc.get("achievable", {}).get("curves", {})
    if curves:
        lines.append("Curves: " + ", ".join(
            f"{k} {len(v)} points ({min(f for _, f in v):.2f}..{max(f for _, f in v):.2f} of peak)"
            for k, v in curves.items() if v))
    kernels = doc.get("achievable", {}).get("kernels", {})
    if kernels:
        slowest = sorted(kernels.items(), key=lambda kv: min(p[2] for p in kv[1]))[:3]
        lines.append(f"Kernel points: {len(kernels)} kernels; slowest: "
                     + ", ".join(f"{k} {min(p[2] for p in v):.3f}" for k, v in slowest) + " of the roofline")
    if doc.get("host"):
        lines.append(host_summary(doc["host"]))
    if spreads:
        lines.append("Spreads ((max-min)/median): " + ", ".join(spreads))
    took = next((n for n in notes if n.startswith("calibration took")), None)
    if took:
        lines.append(took[0].upper() + took[1:])
    return lines


def calibrate_network(nproc: int = 2, budget_s: float = 60, say: Callable[[str], None] = print) -> dict:
    """Measure all_reduce over loopback on `nproc` local processes within `budget_s` seconds and
    return the system document (estimator.network_probes; write it with system.write_system_yaml)."""
    from .network_probes import measure_loopback_network

    if not (isinstance(budget_s, (int, float)) and math.isfinite(budget_s) and budget_s > 0):
        raise RooflineError(f"--budget must be a positive number of seconds, got {budget_s!r}")
    return measure_loopback_network(nproc, deadline=Deadline(budget_s), say=say)
