"""Layouts for a model on N GPUs: every one that can run, ranked by predicted throughput, and the
fewest GPUs that fit when none does.

Candidates at a fixed global batch (sequences per optimizer step): tp dividing the GPUs of a
node, the heads and the width (with sp when tp > 1, as Megatron runs large tp); pp dividing the
blocks; ddp, zero1, zero2, distopt or fsdp over the data-parallel rest (fsdp without pp); micro-batches
dividing each replica's share of the global batch; activation recompute off or on. Memory is
checked first (cheap, analytic); only layouts that fit are timed. Each recompute setting takes two
captures, from which estimator.batch_scaling derives every micro-batch's step (each shared by
every layout that uses it); one of them may be a step the caller already holds.

Example:
    >>> ranked = search_layouts(capture_at, system, hardware, precision, gpus=64, global_batch=512)
    >>> [(r.layout.name, r.tokens_per_s) for r in ranked[:3]]
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

from .batch_scaling import steps_by_batch
from .capture import CapturedStep
from .cluster import ClusterResult, check_layout, divisors, layout_memory, model_width, predict_cluster
from .errors import LayoutError
from .hardware import Hardware
from .parallel_layout import Layout
from .precision import Precision
from .system import System

MICRO_BATCHES = (1, 2, 4, 8, 16)
DATA_MODES = ("ddp", "zero1", "zero2", "fsdp", "distopt")

CaptureAt = Callable[[int, bool], CapturedStep]  # (micro-batch, recompute) -> captured training step


def candidate_layouts(gpus: int, gpus_per_node: int, step: CapturedStep) -> list[Layout]:
    """Every layout of `gpus` the model can take (module doc), before memory and time."""
    structure = step.extra["structure"]
    hidden = model_width(step, structure)
    out = []
    for tp in divisors(min(gpus, gpus_per_node)):
        for pp in divisors(gpus // tp):
            if gpus % (tp * pp):
                continue
            dp = gpus // (tp * pp)
            for data in DATA_MODES:
                if (data == "fsdp" and pp > 1) or (data != "ddp" and dp == 1):
                    continue
                layout = Layout(dp=dp, tp=tp, pp=pp, sp=tp > 1, data=data)
                try:
                    check_layout(layout, structure, hidden, gpus_per_node)
                except LayoutError:
                    continue
                out.append(layout)
    return out


def search_layouts(capture_at: CaptureAt, system: System, hardware: Hardware, precision: Precision, gpus: int,
                   global_batch: int, gpus_per_node: int | None = None, execution: str = "eager",
                   say: Callable[[str], None] = lambda line: None, known: CapturedStep | None = None
                   ) -> list[ClusterResult]:
    """Layouts that fit, fastest first (module doc); recompute is tried only when nothing fits without it.
    `known`: a step `capture_at` already made, one of the two captures of its recompute setting."""
    gpus_per_node = gpus_per_node or system.gpus_per_node

    @functools.cache
    def steps_of(recompute: bool) -> Callable[[int], CapturedStep]:
        say(f"capturing{' with recompute' if recompute else ''}")
        return steps_by_batch(lambda batch: capture_at(batch, recompute),
                              known if known is not None and known.recompute == recompute else None)

    @functools.cache
    def step_at(micro: int, recompute: bool) -> CapturedStep:
        return steps_of(recompute)(micro)

    first = step_at(MICRO_BATCHES[0], False)
    layouts = candidate_layouts(gpus, gpus_per_node, first)
    results = []
    for recompute in (False, True):
        for micro in MICRO_BATCHES:
            needed = [(lay, global_batch // (micro * lay.dp)) for lay in layouts
                      if global_batch % (micro * lay.dp) == 0
                      and (lay.pp == 1 or global_batch // (micro * lay.dp) >= lay.pp)]  # the pipeline fills
            if not needed:
                continue
            step = step_at(micro, recompute)
            for layout, accumulate in needed:
                at = dataclasses.replace(step, accumulate=accumulate)
                if layout_memory(at, precision, layout, hardware.memory_capacity_bytes)["fits"]:
                    results.append(predict_cluster(at, system, hardware, precision, layout, gpus_per_node, execution))
            say(f"micro-batch {micro}{' with recompute' if recompute else ''}: {len(results)} layouts fit so far")
        if results:
            break
    return sorted(results, key=lambda r: -r.samples_per_s)


def fewest_gpus_that_fit(step: CapturedStep, precision: Precision, capacity_bytes: int, gpus_per_node: int,
                         largest: int = 1 << 16) -> tuple[int, Layout] | None:
    """The smallest GPU count (one GPU, then whole nodes doubling) and a layout at which this
    step's memory fits, by the analytic memory alone; None up to `largest` GPUs."""
    counts = [1] + [n for n in (2, 4) if n < gpus_per_node] + [gpus_per_node * 2 ** k for k in range(17)]
    for gpus in (n for n in counts if n <= largest):
        for layout in sorted(candidate_layouts(gpus, gpus_per_node, step),
                             key=lambda lay: (lay.tp * lay.pp, lay.data != "fsdp")):
            if layout_memory(step, precision, layout, capacity_bytes)["fits"]:
                return gpus, layout
    return None
