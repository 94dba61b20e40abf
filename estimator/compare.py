"""Predicted against measured time per layer: run the model for real and line it up with a Report.

Measurement (`measure_layers`): the wall clock of each step is cut into segments at every
module boundary, and each segment is charged to the module that owns it then, by the same
rule that attributes captured ops to modules in the estimate (:class:`ModuleOwnerTracker`).
Forward: global forward pre/post hooks, so a segment belongs to the innermost module being
called; a block's own ops (a residual add) go to the block's path, the root's to "(model)",
the loss to "loss". Backward: a module is entered when the gradients of its outputs are ready
and left when those of its inputs are (tensor grad hooks); a module whose inputs need no
gradient (the first conv) is never left, so the tail of the backward, its weight gradient,
stays charged to it. Time is ``time.perf_counter`` (CUDA: synchronize at each boundary). The
segments partition the step, so the per-path times sum to the step's wall time, hook overhead
(some µs per module call) included. A module called several times per step (a shared ReLU)
sums its calls. Each of `runs` timed steps (after `warmup`) is forward (+ DefaultLoss +
backward of every trainable parameter, as `capture` does); the result is the median per path
and phase over the runs.

Why not torch.profiler: it times kernels, but attributing them to modules needs a module
stack the profiler records only in the forward (autograd runs on its own thread, without it),
so the backward would need a second, different attribution rule; and a trace per step is heavy.
Why not ``register_full_backward_hook``: it wraps module inputs and outputs in a custom
Function, so an in-place module after a hooked one (ReLU(inplace=True) after BatchNorm2d)
raises "a view ... is being modified inplace"; and on a module whose inputs need no gradient it
fires when its output gradients arrive, before its backward runs, leaving the first conv's
weight gradient unattributed. Tensor grad hooks have neither problem.

Comparison (`compare`): rows of ``report.rows("layer")`` (module paths, "(model)", "loss")
matched by name; every measured leaf module gets a row (predicted 0 when it has no op with a
cost, e.g. Flatten); measured time of paths the report has no row for (a container's own
Python) goes to "(other)". Both totals are therefore the whole step. Weighted MAE =
sum |predicted - measured| / sum measured, over rows (a fraction of measured time); Spearman's
rho is the Pearson correlation of average ranks (ties share their mean rank).

Example:
    >>> measured = measure_layers(model_cpu, inputs_cpu, train=True)
    >>> result = compare(estimate(model_meta, inputs_meta, hardware="local", mode="train"), measured, train=True)
    >>> result.rows[0].name, result.weighted_mae, result.spearman
"""
from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._pytree import tree_map_only

from .capture import DefaultLoss
from .module_tracking import ModuleOwnerTracker
from .report import Report

ROOT = "(model)"
OTHER = "(other)"


class _StepTimer(ModuleOwnerTracker):
    """ModuleOwnerTracker that charges the wall time since the last boundary to the owner."""

    def __init__(self, names, root, sync):
        super().__init__(names, root)
        self._sync = sync
        self.phase = "forward"
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)  # (path, phase) -> s
        self._mark_s = 0.0

    def start(self):
        self._sync()
        self._mark_s = time.perf_counter()

    def charge(self):
        self._sync()
        now_s = time.perf_counter()
        self.seconds[(self.owner()[0], self.phase)] += now_s - self._mark_s
        self._mark_s = now_s

    def _enter(self, entry):
        self.charge()
        super()._enter(entry)

    def _leave(self, entry):
        self.charge()
        super()._leave(entry)

    def backward_started(self, first):
        self.charge()
        self.phase = "backward"
        super().backward_started(first)


def measure_layers(model: nn.Module, inputs, train: bool, warmup: int = 2, runs: int = 5,
                   device="cpu") -> dict[str, tuple[float, float]]:
    """Median (forward s, backward s) per module path (see module doc); every leaf is present.

    `model` must hold real weights; it and `inputs` (a tuple of positional arguments or a dict
    of keyword arguments) are moved to `device`. Inference: eval mode, forward under no_grad.
    """
    device = torch.device(device)
    model = model.to(device)
    inputs = inputs if isinstance(inputs, (tuple, list, dict)) else (inputs,)
    inputs = tree_map_only(torch.Tensor, lambda t: t.to(device), inputs)
    args, kwargs = ((), dict(inputs)) if isinstance(inputs, dict) else (tuple(inputs), {})
    names = {id(m): (path, type(m).__name__) for path, m in model.named_modules(remove_duplicate=False)}
    loss_fn = DefaultLoss()
    names[id(loss_fn)] = ("loss", "DefaultLoss")
    leaves = {names[id(m)][0] for m in model.modules() if next(m.children(), None) is None}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if train and not trainable:
        raise ValueError("train mode needs at least one parameter with requires_grad=True")
    was_training = {m: m.training for m in model.modules()}
    model.train(train)
    samples: dict[str, list[list[float]]] = {}  # path -> [forward s per run, backward s per run]
    for i in range(warmup + runs):
        timer = _StepTimer(names, ("", type(model).__name__), sync)
        with torch.set_grad_enabled(train), timer:
            timer.start()
            output = model(*args, **kwargs)
            if train:
                loss = loss_fn(output)
                timer.backward_started(names[id(loss_fn)])
                torch.autograd.grad(loss, trainable, allow_unused=True)
            timer.charge()
        if i >= warmup:
            step = {path: [0.0, 0.0] for path in leaves}
            for (path, phase), seconds in timer.seconds.items():
                step.setdefault(path, [0.0, 0.0])[phase == "backward"] += seconds
            for path in step.keys() | samples.keys():  # a path missing from a run counts 0 there
                forward_s, backward_s = step.get(path, (0.0, 0.0))
                runs_f, runs_b = samples.setdefault(path, [[0.0] * (i - warmup), [0.0] * (i - warmup)])
                runs_f.append(forward_s)
                runs_b.append(backward_s)
    for m, flag in was_training.items():
        m.training = flag
    return {path or ROOT: (statistics.median(f), statistics.median(b)) for path, (f, b) in samples.items()}


@dataclass(frozen=True)
class LayerComparison:
    """One row: a module path's predicted and measured time (forward + backward when training)."""

    name: str
    type: str
    predicted_s: float
    measured_s: float
    bound: str  # the report row's bound; "-" when the report has no row

    @property
    def ratio(self) -> float:
        """predicted / measured (inf when nothing was measured)."""
        return self.predicted_s / self.measured_s if self.measured_s else math.inf

    @property
    def error_s(self) -> float:
        """predicted - measured: positive when the estimate is too slow."""
        return self.predicted_s - self.measured_s


@dataclass(frozen=True)
class ComparisonResult:
    rows: list[LayerComparison]  # largest |error_s| first
    predicted_total_s: float
    measured_total_s: float
    weighted_mae: float  # sum |predicted - measured| / sum measured, a fraction
    spearman: float  # rank correlation of predicted vs measured over rows (nan if undefined)
    meta: dict  # model, hardware, precision, mode, batch

    def to_dict(self) -> dict:
        """JSON-ready (SI units; non-finite numbers as null)."""
        def num(x):
            return x if math.isfinite(x) else None
        return {**self.meta, "predicted_total_s": self.predicted_total_s, "measured_total_s": self.measured_total_s,
                "weighted_mae": num(self.weighted_mae), "spearman": num(self.spearman),
                "layers": [{"name": r.name, "type": r.type, "predicted_s": r.predicted_s, "measured_s": r.measured_s,
                            "ratio": num(r.ratio), "error_s": r.error_s, "bound": r.bound} for r in self.rows]}


def compare(report: Report, measured: dict[str, tuple[float, float]], train: bool) -> ComparisonResult:
    """Line up `report`'s layer rows with `measure_layers` output (see module doc for the matching)."""
    if train != (report.step.mode == "train"):
        raise ValueError(f"the report is a {report.step.mode} step but train={train}")
    rows = {r.name: r for r in report.rows("layer")}
    predicted = {name: r.forward_time_s + (r.backward_time_s if train else 0.0) for name, r in rows.items()}
    measured_s: dict[str, float] = defaultdict(float)
    for name, (forward_s, backward_s) in measured.items():
        is_leaf = name not in (ROOT, "loss") and not any(other.startswith(name + ".") for other in measured)
        key = name if name in rows or is_leaf else OTHER
        measured_s[key] += forward_s + (backward_s if train else 0.0)
    out = [LayerComparison(name, rows[name].type if name in rows else "-", predicted.get(name, 0.0),
                           measured_s.get(name, 0.0), rows[name].bound if name in rows else "-")
           for name in predicted.keys() | measured_s.keys()]
    out.sort(key=lambda r: (-abs(r.error_s), r.name))
    meas_total_s = sum(r.measured_s for r in out)
    return ComparisonResult(
        rows=out, predicted_total_s=sum(r.predicted_s for r in out), measured_total_s=meas_total_s,
        weighted_mae=weighted_mae([r.predicted_s for r in out], [r.measured_s for r in out]),
        spearman=spearman([r.predicted_s for r in out], [r.measured_s for r in out]),
        meta={"model": report.step.model_name, "hardware": report.hardware.id, "precision": report.precision.name,
              "mode": report.step.mode, "batch": report.step.batch})


def weighted_mae(predicted: list[float], measured: list[float]) -> float:
    """sum |p - m| / sum m: the mean absolute error weighted by measured time (nan if none)."""
    total = sum(measured)
    return sum(abs(p - m) for p, m in zip(predicted, measured)) / total if total else math.nan


def average_ranks(values: list[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho: Pearson correlation of average ranks; nan with < 2 points or a constant side."""
    if len(x) != len(y):
        raise ValueError("spearman needs two lists of the same length")
    if len(x) < 2:
        return math.nan
    rx, ry = average_ranks(x), average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx and vy else math.nan
