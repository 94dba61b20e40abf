"""Measure this machine's host costs (the `host:` mapping `roofline calibrate` writes).

Every op of an eager step costs host time before (or instead of) device time: the Python call,
the aten dispatcher, autograd bookkeeping, a kernel launch. These are properties of the host
CPU and the framework, so they are measured here, on this machine, with tiny tensors (1
element) so that the kernels do no work. All figures are microseconds per call:

  op_us              torch.add(a, b), out-of-place, under no_grad (dispatch + allocation + a tiny
                     kernel; on CUDA the launch: the loop is timed to a synchronize at its end)
  conv_op_us         F.conv2d (3x3, 4 -> 4 channels, 4x4 image, padding 1) minus the add: what a
                     convolution call costs the host beyond an op (cuDNN descriptors, heuristics
                     and plan lookup on CUDA; backend choice and oneDNN primitive lookup on CPU)
  matmul_op_us       torch.mm of two 1x1 bf16 tensors minus the add: a BLAS call's extra (cuBLASLt
                     heuristics and descriptors on CUDA)
  view_us            a.view(-1), under no_grad (an aten op that launches no kernel)
  autograd_us        the same add with `a` requiring grad, under enable_grad, minus op_us
  backward_op_us     backward() of a chain of N torch.mul(y, c) nodes (the engine issues one aten
                     mul per node; counted with a TorchDispatchMode), divided by the number of
                     aten ops it issued; nothing subtracted
  autocast_us        extra under torch.autocast(device, bfloat16): the mean over an op autocast
                     passes through (add) and one it acts on (1x1 mm of bf16 tensors: no cast
                     needed), each minus the same op without autocast
  module_call_us     nn.Identity()(x) minus a plain Python function returning x
  step_sync_us       CPU: x.item() on a 1-element tensor; CUDA: torch.cuda.synchronize() on an
                     empty queue
  optimizer_param_us slope per parameter of torch.optim.AdamW.step() between P=10 and P=200
                     parameters of 1 element (CPU: torch's default, foreach=False, a loop of
                     about a dozen aten ops per parameter, which capture's one fused optimizer
                     op does not count; CUDA: fused=True, else foreach=True)
  graph_launch_us    CUDA: replay of a captured CUDA graph of one tiny add; CPU: no graphs,
                     op_us is written
  in_situ_forward    multipliers for ops inside real models: a small CNN and a small transformer
  in_situ_backward   of standard modules (in_situ_models), timed whole (forward, and forward +
                     backward), over what the keys above predict for the same steps

Method, for noise on a shared machine (a 2-core VM here flips between states a factor 2 apart
for seconds at a time): each probe is a sampler (a loop of `inner` calls, inner sized so a
sample takes about sample_s; or one backward), all samplers take turns in rounds over the whole
run, so every figure sees the same mix of machine states, and each figure is a low quantile
(the 20th percentile) of its samples, since a neighbour only ever slows a sample down. Absolute
figures are net of an empty Python call (the timing loop's own cost); differences are taken
between figures of the same rounds. A difference at or below zero (within noise) is written as
FLOOR_US and the source says so. The garbage collector is off while timing, and on CPU torch
runs one intra-op thread: these are issue costs, and a kernel that opens a parallel region
(the convolution) waits, on a loaded 2-core VM, milliseconds for a descheduled worker thread
(17 ms against 10 us for the 3x3 probe), which is the device side of a CPU op, not its issue.

Example:
    >>> host = measure_host("cpu", quick=True)           # about 2 s on a 2-core VM
    >>> host["op_us"], host["backward_op_us"]
    (1.83, 7.96)
    >>> host_summary(host)
    'Host: op 1.83, view 1.35, autograd 0.875, backward op 7.96, ... graph launch 1.83 us'
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import socket
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, ContextManager

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from .deadline import Deadline, never
from .host import HOST_KEYS  # the schema's keys, in order

QUANTILE = 0.2  # the figure of a set of samples: a low quantile, robust to a neighbour's slow-downs
FLOOR_US = 0.01  # what a difference at or below zero is written as (positive, below any real cost)
MIN_ROUNDS = 3  # rounds taken even past the deadline (a quantile needs a few samples)
OPTIMIZER_PARAMS = (10, 200)  # AdamW step timed at these parameter counts; the slope is per parameter


@dataclass(frozen=True)
class HostPlan:
    """Sizes of one host-probe run."""

    name: str
    rounds: int  # rounds; each takes one sample of every probe
    sample_s: float  # a sample loops its call until it takes about this long
    chain_ops: int  # mul nodes of the backward chain (long: a backward after other work pays a
    # fixed few hundred us on this VM, which a long chain spreads thin, as a real backward does)
    warmup_calls: int


HOST_PLANS = {
    "full": HostPlan("full", rounds=60, sample_s=0.006, chain_ops=400, warmup_calls=200),
    "quick": HostPlan("quick", rounds=25, sample_s=0.003, chain_ops=200, warmup_calls=50),
    "tiny": HostPlan("tiny", rounds=5, sample_s=0.001, chain_ops=50, warmup_calls=10),  # tests: structure only
}

Sampler = Callable[[], float]  # takes one sample: seconds per unit (call, aten op)


class _HostTimer:
    """Per-call seconds of a loop of calls: perf_counter, with a CUDA synchronize before the
    start and before the stop, so launches are timed until the device has caught up."""

    def __init__(self, device: torch.device):
        self.sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def per_call_s(self, fn: Callable[[], Any], inner: int) -> float:
        self.sync()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        self.sync()
        return (time.perf_counter() - t0) / inner

    def loop(self, fn: Callable[[], Any], plan: HostPlan,
             context: Callable[[], ContextManager] = contextlib.nullcontext) -> Sampler:
        """A sampler of fn under context: warmed up now, each sample `inner` calls, inner sized so a
        sample takes about plan.sample_s."""
        with context():
            for _ in range(plan.warmup_calls):
                fn()
            per_call = min(self.per_call_s(fn, 10), self.per_call_s(fn, 10))
        inner = max(1, min(100_000, round(plan.sample_s / max(per_call, 1e-9))))

        def sample() -> float:
            with context():
                return self.per_call_s(fn, inner)
        return sample


def _quantile(values: list[float], q: float = QUANTILE) -> float:
    """The q-quantile of values (nearest rank, lower)."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def take_rounds(samplers: dict[str, Sampler], rounds: int, on_round: Callable[[], None] = lambda: None,
                deadline: Deadline | None = None) -> dict[str, float]:
    """`rounds` rounds, each one sample of every sampler in turn; per key the QUANTILE of its
    samples. All probes share the rounds, so a stretch in which a neighbour slows the machine
    touches every figure alike (a 2-core VM flips between states a factor 2 apart for seconds).
    Past `deadline`, no rounds beyond MIN_ROUNDS; the rounds left out are recorded as cut."""
    deadline = deadline or never()
    samples: dict[str, list[float]] = {k: [] for k in samplers}
    for done in range(rounds):
        if done >= MIN_ROUNDS and deadline.expired:
            deadline.cut(f"host costs: {done} of {rounds} rounds")
            break
        for key, sample in samplers.items():
            samples[key].append(sample())
        on_round()
    return {k: _quantile(v) for k, v in samples.items()}


def _positive(x_us: float) -> float:
    return x_us if x_us > FLOOR_US else FLOOR_US


def _sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


# ---------------------------------------------------------------- probes: samplers now, values after the rounds

Result = Callable[[dict[str, float]], tuple[dict[str, float], list[str]]]  # quantiles (us) -> values, notes


def _call_probes(device: torch.device, timer: _HostTimer, plan: HostPlan) -> tuple[dict[str, Sampler], Result]:
    """op, view, autograd, autocast, module call and step sync: loops of tiny calls."""
    cuda = device.type == "cuda"
    a = torch.ones(1, device=device)
    b = torch.ones(1, device=device)
    a_grad = torch.ones(1, device=device, requires_grad=True)
    m1 = torch.ones(1, 1, device=device, dtype=torch.bfloat16)
    m2 = torch.ones(1, 1, device=device, dtype=torch.bfloat16)
    x = torch.ones(1, 4, 4, 4, device=device)
    w = torch.ones(4, 4, 3, 3, device=device)
    identity = nn.Identity()

    def plain(x):
        return x

    def no_grad_autocast():
        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
        return stack

    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: a.item())
    samplers = {
        "empty": timer.loop(lambda: None, plan),
        "add": timer.loop(lambda: torch.add(a, b), plan, torch.no_grad),
        "conv": timer.loop(lambda: F.conv2d(x, w, padding=1), plan, torch.no_grad),
        "view": timer.loop(lambda: a.view(-1), plan, torch.no_grad),
        "add_grad": timer.loop(lambda: torch.add(a_grad, b), plan, torch.enable_grad),
        "add_autocast": timer.loop(lambda: torch.add(a, b), plan, no_grad_autocast),
        "mm": timer.loop(lambda: torch.mm(m1, m2), plan, torch.no_grad),
        "mm_autocast": timer.loop(lambda: torch.mm(m1, m2), plan, no_grad_autocast),
        "module": timer.loop(lambda: identity(a), plan),
        "function": timer.loop(lambda: plain(a), plan),
        "sync": timer.loop(sync, plan),
    }

    def result(s: dict[str, float]) -> tuple[dict[str, float], list[str]]:
        empty = s["empty"]
        values = {
            "op_us": _positive(s["add"] - empty),
            "conv_op_us": _positive(s["conv"] - s["add"]),
            "matmul_op_us": _positive(s["mm"] - s["add"]),
            "view_us": _positive(s["view"] - empty),
            "autograd_us": _positive(s["add_grad"] - s["add"]),
            "autocast_us": _positive((s["add_autocast"] - s["add"] + s["mm_autocast"] - s["mm"]) / 2),
            "module_call_us": _positive(s["module"] - s["function"]),
            "step_sync_us": _positive(s["sync"] - empty),
        }
        f = {k: f"{s[k]:.3g}" for k in samplers}
        notes = [
            f"op_us: torch.add(a, b) on 1-element fp32 tensors, out-of-place, no_grad: {f['add']} us per call "
            f"less {f['empty']} us for an empty Python call (the timing loop's own cost)"
            + (", launches timed to a synchronize" if cuda else ", dispatch + allocation + a 1-element kernel"),
            f"conv_op_us: F.conv2d(x, w, padding=1), x 1x4x4x4, w 4x4x3x3 (2304 FLOPs), no_grad: {f['conv']} us "
            f"less the no_grad add",
            f"matmul_op_us: torch.mm of 1x1 bf16 tensors, no_grad: {f['mm']} us less the no_grad add",
            f"view_us: a.view(-1) on a 1-element tensor, no_grad: {f['view']} us less the empty call",
            f"autograd_us: the add with `a` requiring grad, enable_grad (records AddBackward0): {f['add_grad']} us "
            f"less the no_grad add",
            f"autocast_us: extra under torch.autocast({device.type!r}, bfloat16), mean of an op it passes through "
            f"(add: {f['add_autocast']} vs {f['add']} us) and one it acts on (1x1 mm of bf16 tensors, no cast "
            f"needed: {f['mm_autocast']} vs {f['mm']} us)",
            f"module_call_us: nn.Identity()(x) {f['module']} us less a plain Python function returning x "
            f"{f['function']} us",
            ("step_sync_us: torch.cuda.synchronize() on an empty queue: " if cuda else
             "step_sync_us: x.item() on a 1-element tensor: ") + f"{f['sync']} us less the empty call",
        ]
        return values, notes
    return samplers, result


class _CountOps(TorchDispatchMode):
    """Counts the non-prim aten ops run under it."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace != "prim":
            self.count += 1
        return func(*args, **(kwargs or {}))


def _backward_probe(device: torch.device, timer: _HostTimer, plan: HostPlan) -> tuple[dict[str, Sampler], Result]:
    """backward() of a chain of plan.chain_ops torch.mul(y, c) nodes, per aten op the engine issues."""
    c = torch.full((1,), 1.0001, device=device)

    def chain() -> torch.Tensor:
        x = torch.ones(1, device=device, requires_grad=True)
        y = x
        with torch.enable_grad():
            for _ in range(plan.chain_ops):
                y = torch.mul(y, c)
            return y.sum()

    for _ in range(3):
        chain().backward()  # warm-up
    loss = chain()
    with _CountOps() as counter:
        loss.backward()
    ops = max(counter.count, 1)

    def sample() -> float:
        loss = chain()  # not timed
        timer.sync()
        t0 = time.perf_counter()
        loss.backward()
        timer.sync()
        return (time.perf_counter() - t0) / ops

    def result(s: dict[str, float]) -> tuple[dict[str, float], list[str]]:
        per_op = s["backward_op"]
        note = (f"backward_op_us: backward() of a chain of {plan.chain_ops} torch.mul(y, c) nodes (and the "
                f"loss's sum) on 1-element tensors, {per_op * ops:.4g} us over the {ops} aten ops the engine "
                f"issued (counted with a TorchDispatchMode); nothing subtracted")
        return {"backward_op_us": _positive(per_op)}, [note]
    return {"backward_op": sample}, result


def _optimizer_probe(device: torch.device, timer: _HostTimer, plan: HostPlan) -> tuple[dict[str, Sampler], Result]:
    """Slope per parameter of AdamW.step() between OPTIMIZER_PARAMS counts of 1-element parameters."""
    kind = "foreach=False, torch's default on CPU"
    samplers = {}
    for p_count in OPTIMIZER_PARAMS:
        params = [torch.zeros(1, device=device, requires_grad=True) for _ in range(p_count)]
        for p in params:
            p.grad = torch.full_like(p, 0.01)
        if device.type == "cuda":
            try:
                opt = torch.optim.AdamW(params, lr=1e-3, fused=True)
                kind = "fused=True"
            except (RuntimeError, TypeError, ValueError):
                opt = torch.optim.AdamW(params, lr=1e-3, foreach=True)
                kind = "foreach=True"
        else:
            opt = torch.optim.AdamW(params, lr=1e-3, foreach=False)
        opt.step()  # creates the state
        samplers[f"adamw_{p_count}"] = timer.loop(opt.step, replace(plan, warmup_calls=2))

    def result(s: dict[str, float]) -> tuple[dict[str, float], list[str]]:
        lo, hi = OPTIMIZER_PARAMS
        t_lo, t_hi = s[f"adamw_{lo}"], s[f"adamw_{hi}"]
        note = (f"optimizer_param_us: torch.optim.AdamW({kind}).step() on {lo} and {hi} 1-element "
                f"parameters, {t_lo:.4g} and {t_hi:.4g} us; the slope per parameter")
        return {"optimizer_param_us": _positive((t_hi - t_lo) / (hi - lo))}, [note]
    return samplers, result


def _graph_probe(device: torch.device, timer: _HostTimer, plan: HostPlan) -> tuple[dict[str, Sampler], Result]:
    """CUDA: replay of a captured graph of one tiny add, less the empty call. CPU: op_us (no graphs)."""
    if device.type != "cuda":
        def cpu_result(s: dict[str, float]) -> tuple[dict[str, float], list[str]]:
            return {"graph_launch_us": _positive(s["add"] - s["empty"])}, [
                "graph_launch_us: no CUDA graphs on CPU; op_us is written (one op issued per launch)"]
        return {}, cpu_result
    a, b = torch.ones(1, device=device), torch.ones(1, device=device)
    out = torch.empty(1, device=device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            torch.add(a, b, out=out)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        torch.add(a, b, out=out)

    def result(s: dict[str, float]) -> tuple[dict[str, float], list[str]]:
        note = (f"graph_launch_us: CUDAGraph.replay() of a graph of one 1-element add, {s['graph_replay']:.3g} us "
                f"per replay less the empty call, timed to a synchronize")
        return {"graph_launch_us": _positive(s["graph_replay"] - s["empty"])}, [note]
    return {"graph_replay": timer.loop(graph.replay, plan)}, result


PROBES = (_call_probes, _backward_probe, _optimizer_probe, _graph_probe)


class _ConvBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x))) + x


class _Layer(nn.Module):
    """A pre-norm transformer layer of standard modules (attention through SDPA)."""

    def __init__(self, d: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.ln1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln2, self.up, self.act, self.down = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, s, d)
        x = x + self.proj(y)
        return x + self.down(self.act(self.up(self.ln2(x))))


def in_situ_models(device: torch.device) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """A small CNN and a small transformer of standard layers on tiny tensors (kernels do no work)."""
    with torch.device(device):
        return {"cnn": (nn.Sequential(*[_ConvBlock(8) for _ in range(6)]), torch.randn(2, 8, 8, 8)),
                "transformer": (nn.Sequential(*[_Layer(16) for _ in range(4)]), torch.randn(1, 8, 16))}


def _in_situ_samplers(models: dict[str, tuple[nn.Module, torch.Tensor]], timer: _HostTimer,
                      plan: HostPlan) -> dict[str, Sampler]:
    """Samplers of whole steps of the in-situ models: forwards under no_grad, and forward + backward
    (gradients set to None first, as zero_grad does); the multipliers come after the rounds, from
    the other keys (in_situ_multipliers)."""
    samplers = {}
    for name, (model, x) in models.items():
        params = list(model.parameters())

        def train(model=model, x=x, params=params):
            for p in params:
                p.grad = None
            model(x).sum().backward()
        samplers[f"situ_{name}_forward"] = timer.loop(lambda model=model, x=x: model(x), plan, torch.no_grad)
        samplers[f"situ_{name}_train"] = timer.loop(train, plan, torch.enable_grad)
    return samplers


def in_situ_multipliers(values: dict[str, float], quantiles_us: dict[str, float],
                        models: dict[str, tuple[nn.Module, torch.Tensor]],
                        device: torch.device) -> tuple[dict[str, float], list[str]]:
    """in_situ_forward and in_situ_backward: the in-situ models' measured step times over what the
    other host keys (`values`, microseconds) predict for the same steps (estimator.execution's
    eager host costs on their captures), the forward's ratio first, then the backward's from
    what the training step leaves. CPU: the measured times include the tiny kernels' own work
    (the host runs them), so there they are upper bounds, and unused (a CPU step is costed
    serially, not from host costs)."""
    from .capture import capture  # lazy: heavy, and capture does not need this module
    from .execution import eager_host_costs
    from .host import parse_host
    from .precision import PRECISIONS
    from .roofline import step_costs

    host = parse_host(dict(values), "in-situ probe")
    fp32 = PRECISIONS["fp32"]
    measured = {"forward": 0.0, "train": 0.0}
    predicted = {"forward": 0.0, "train_forward": 0.0, "train_backward": 0.0}
    for name, (model, x) in models.items():
        measured["forward"] += quantiles_us[f"situ_{name}_forward"]
        measured["train"] += quantiles_us[f"situ_{name}_train"]
        for mode in ("inference", "train"):
            step = capture(model, (x,), mode=mode, optimizer=None)
            seconds = eager_host_costs(step, step_costs(step, fp32), host, fp32)
            for node, s in zip(step.nodes, seconds):
                key = "forward" if mode == "inference" else (
                    "train_backward" if node.phase == "backward" else "train_forward")
                predicted[key] += 1e6 * s
    forward = measured["forward"] / predicted["forward"]
    backward = max(0.0, measured["train"] - forward * predicted["train_forward"]) / predicted["train_backward"]
    forward, backward = max(forward, 0.1), max(backward, 0.1)
    note = (f"in_situ_forward, in_situ_backward: a 6-block conv-bn-relu CNN (8 channels, 8x8) and a 4-layer "
            f"transformer (width 16, 8 tokens) of standard modules: forwards {measured['forward']:.4g} us measured "
            f"against {predicted['forward']:.4g} us predicted from the other keys; forward + backward "
            f"{measured['train']:.4g} us against {predicted['train_forward']:.4g} + {predicted['train_backward']:.4g} us"
            + ("" if device.type == "cuda" else "; on a CPU the measured times include the tiny kernels' work"))
    return {"in_situ_forward": _sig(forward), "in_situ_backward": _sig(backward)}, [note]


# ---------------------------------------------------------------- the mapping

def measure_host(device: str = "cpu", quick: bool = False, on_round: Callable[[], None] = lambda: None,
                 *, plan: str | HostPlan | None = None, deadline: Deadline | None = None) -> dict[str, Any]:
    """Measure the host costs of `device` ("cpu" or "cuda[:i]") and return the `host:` mapping:
    `name`, the HOST_KEYS (microseconds, 3 significant digits) and `source` (method, machine,
    date and the figures each value comes from). `plan`: "full", "quick", "tiny" (tests) or a
    HostPlan; default "quick" if quick else "full". `on_round()` is called after each of the
    plan's rounds (progress). Past `deadline`, the rounds stop early (take_rounds)."""
    if isinstance(plan, str) or plan is None:
        plan = HOST_PLANS[plan or ("quick" if quick else "full")]
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    timer = _HostTimer(dev)
    started = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    threads = torch.get_num_threads()
    gc.collect()
    gc.disable()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        with torch.inference_mode(False):
            samplers: dict[str, Sampler] = {}
            results: list[Result] = []
            for probe in PROBES:
                probe_samplers, result = probe(dev, timer, plan)
                samplers |= probe_samplers
                results.append(result)
            models = in_situ_models(dev)
            samplers |= _in_situ_samplers(models, timer, plan)
            rounds: list[None] = []  # one per round taken

            def count_round() -> None:
                rounds.append(None)
                on_round()
            quantiles_us = {k: v * 1e6 for k, v in take_rounds(samplers, plan.rounds, count_round, deadline).items()}
    finally:
        torch.set_num_threads(threads)
        if gc_was_enabled:
            gc.enable()
    values: dict[str, float] = {}
    notes: list[str] = []
    for result in results:
        v, n = result(quantiles_us)
        values |= v
        notes += n
    situ, situ_notes = in_situ_multipliers(values, quantiles_us, models, dev)
    notes += situ_notes
    if set(values) != set(HOST_KEYS):
        raise RuntimeError(f"host probes measured {sorted(values)}, but the host schema (estimator.host.HOST_KEYS) "
                           f"has {list(HOST_KEYS)}; add a probe for each missing key")
    floored = [k for k in HOST_KEYS if values[k] == FLOOR_US]
    from .calibrate import machine  # lazy: calibrate imports this module

    cpu = machine("cpu")["name"]
    where = cpu if dev.type == "cpu" else f"{cpu} driving {torch.cuda.get_device_name(dev)}"
    now = datetime.datetime.now().astimezone()
    source = [f"measured by roofline calibrate on {socket.gethostname()} ({where}), "
              f"{now.isoformat(timespec='seconds')}, torch {torch.__version__}, {plan.name} host probes in "
              f"{time.perf_counter() - started:.1f} s",
              f"method: 1-element tensors, so kernels do no work; each figure the {100 * QUANTILE:.0f}th "
              f"percentile of {len(rounds)} samples (loops of calls of about {1e3 * plan.sample_s:g} ms), "
              f"the samples of all probes taking turns round by round; garbage collector off"
              + ("; one intra-op thread (issue costs; a parallel region's wake-up is the kernel's)"
                 if dev.type == "cpu" else ""),
              *notes]
    if floored:
        source.append(f"{', '.join(floored)}: at or below zero within noise; written as {FLOOR_US} us")
    host: dict[str, Any] = {"name": f"{where}, torch {torch.__version__} (measured by roofline calibrate)"}
    host |= {k: _sig(values[k]) for k in HOST_KEYS} | situ
    host["source"] = source
    return host


def host_summary(host: dict[str, Any]) -> str:
    """One line: 'Host: op 4.2 us, view 1.1 us, ...' in HOST_KEYS order."""
    line = "Host: " + ", ".join(f"{k[:-3].replace('_', ' ')} {host[k]:g}" for k in HOST_KEYS) + " us"
    if "in_situ_forward" in host:
        line += f"; in situ x{host['in_situ_forward']:g} forward, x{host['in_situ_backward']:g} backward"
    return line

