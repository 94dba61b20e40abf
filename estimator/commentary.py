"""Short generated comments on a study: what bounds what where, how far from peak, fwd:bwd.

Each function returns a list of sentences (plain text) computed from the numbers, for the
report's sections (seed 002 parts 2.4, 3.4, 4.2 and 5.1). Thresholds are stated in the text.

Example:
    >>> bound_comments(points)[0]
    'a100-80gb-sxm (ridge 9.6 FLOP/B at fp32): 6 of 30 model-batch points sit left of the ridge, ...'
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from .study import PhaseSplit, RankCorrelation, StudyPoint


def _names(items) -> str:
    items = list(items)
    return ", ".join(items) if items else "none"


def bound_comments(points: list[StudyPoint]) -> list[str]:
    """Per chip: at each batch, which models are memory-bound as a whole (intensity below the
    ridge point) and which spend over half their predicted time in memory-bound ops (seed 002, 2.4)."""
    by_chip: dict[str, list[StudyPoint]] = defaultdict(list)
    for p in points:
        by_chip[p.chip].append(p)
    lines = []
    for chip, group in by_chip.items():
        batches = sorted({p.batch for p in group})
        below = "; ".join(f"batch {b}: {_names(p.model for p in group if p.batch == b and p.bound == 'memory')}"
                          for b in batches)
        mostly = "; ".join(f"batch {b}: {_names(p.model for p in group if p.batch == b and p.memory_bound_share > 0.5)}"
                           for b in batches)
        n_memory = sum(p.bound == "memory" for p in group)
        lines.append(f"{chip} (ridge {group[0].ridge_flops_per_byte:,.1f} FLOP/B at {group[0].precision}): "
                     f"{n_memory} of {len(group)} model-batch points sit left of the ridge, memory-bound as a whole "
                     f"({below}); the others are compute-bound. Over half the predicted time in memory-bound ops "
                     f"({mostly}).")
    return lines


def gap_comments(points: list[StudyPoint]) -> list[str]:
    """How far predicted (and measured, where there are measurements) performance is from each
    chip's peak, and where the gap is largest (seed 002, 4.2)."""
    lines = []
    chips = dict.fromkeys(p.chip for p in points)
    for chip in chips:
        group = [p for p in points if p.chip == chip]
        predicted = sorted(group, key=lambda p: p.predicted_flops_per_s / p.peak_flops_per_s)
        worst, best = predicted[0], predicted[-1]
        median = statistics.median(p.predicted_flops_per_s / p.peak_flops_per_s for p in group)
        lines.append(f"{chip}: predicted performance is {median:.0%} of the matrix peak at the median, from "
                     f"{_fraction(worst)} ({worst.model}, batch {worst.batch}: {worst.memory_bound_share:.0%} of its "
                     f"time in memory-bound ops, {worst.overhead_share:.0%} in launch- or host-bound ones) to {_fraction(best)} ({best.model}, batch {best.batch}). Small batches and "
                     "memory-bound layers (norms, activations, depthwise convolutions, attention at batch 1) and many "
                     "small kernels (each pays a launch overhead) keep the compute units idle; large matmuls and "
                     "convolutions get closest to the roof.")
        measured = [p for p in group if p.measured_s]
        if measured:
            fractions = [p.measured_flops_per_s / p.peak_flops_per_s for p in measured]
            low = min(measured, key=lambda p: p.measured_flops_per_s)
            errors = [abs(p.predicted_s - p.measured_s) / p.measured_s for p in measured]
            lines.append(f"{chip}, measured on this machine: {statistics.median(fractions):.0%} of the peak at the "
                         f"median over {len(measured)} measured configurations (lowest: {low.model} batch {low.batch}, "
                         f"{low.measured_flops_per_s / low.peak_flops_per_s:.0%}); the prediction is "
                         f"{statistics.mean(errors):.0%} off on average (mean absolute error).")
        skipped = [p for p in group if p.measured_note]
        if skipped:
            lines.append(f"{chip}, not measured: " + "; ".join(
                f"{p.model} batch {p.batch} ({p.measured_note.removeprefix('not measured: ')})" for p in skipped) + ".")
    return lines


def _fraction(p: StudyPoint) -> str:
    return f"{p.predicted_flops_per_s / p.peak_flops_per_s:.0%}"


def phase_comments(splits: list[PhaseSplit]) -> list[str]:
    """The forward:backward ratio in FLOPs and time, and where time departs from FLOPs (seed 002, 5.1)."""
    if not splits:
        return []
    ratios = {s.model: s.flops_ratio for s in splits}
    low, high = min(ratios, key=ratios.get), max(ratios, key=ratios.get)
    lines = [f"Backward FLOPs are {ratios[low]:.2f}x ({low}) to {ratios[high]:.2f}x ({high}) the forward's: about 2x, "
             "since each matmul or convolution needs a gradient for its input and one for its weight; less where "
             "the first layer needs no input gradient or ops are cheap to differentiate, more where the backward "
             "recomputes (e.g. attention) or runs in fp32."]
    for chip in dict.fromkeys(s.chip for s in splits):
        group = [s for s in splits if s.chip == chip]
        apart = max(group, key=lambda s: abs(s.time_ratio - s.flops_ratio))
        lines.append(f"{chip}: predicted backward:forward time {min(s.time_ratio for s in group):.2f}x to "
                     f"{max(s.time_ratio for s in group):.2f}x; furthest from its FLOP ratio: {apart.model} "
                     f"({apart.time_ratio:.2f}x in time vs {apart.flops_ratio:.2f}x in FLOPs), where memory-bound "
                     "ops and launch overheads weigh differently in the two passes.")
        measured = [s for s in group if s.measured_time_ratio is not None]
        if measured:
            lines.append(f"{chip}, measured: backward:forward time " + ", ".join(
                f"{s.model} {s.measured_time_ratio:.2f}x" for s in measured) + ".")
    return lines


def proxy_comments(correlation: RankCorrelation, points: list[StudyPoint]) -> list[str]:
    """Whether FLOPs or parameters predict latency (seed 002, 3.4), with a counter-example pair."""
    latencies = [label for label in correlation.labels if "latency" in label]
    lines = [f"{label}: Spearman rho with FLOPs {correlation.rho(label, 'FLOPs'):.2f}, with parameters "
             f"{correlation.rho(label, 'parameters'):.2f}." for label in latencies]
    example = _parameter_counter_example(points)
    if example:
        lines.append(example)
    flops_rho = statistics.mean(correlation.rho(label, "FLOPs") for label in latencies)
    params_rho = statistics.mean(correlation.rho(label, "parameters") for label in latencies)
    better, worse = ("FLOPs", "parameters") if flops_rho >= params_rho else ("parameters", "FLOPs")
    lines.append(f"Over these models {better} rank latency better than {worse} (mean rho {max(flops_rho, params_rho):.2f} "
                 f"vs {min(flops_rho, params_rho):.2f}). FLOPs track latency when layers are compute-bound and large "
                 "(big convolutions and matmuls at large batch); they miss when memory traffic or launch overheads "
                 "dominate (depthwise convolutions, norms and activations, batch 1). Parameters are read once per "
                 "step, while activations and FLOPs grow with the batch and the input size.")
    return lines


def _parameter_counter_example(points: list[StudyPoint]) -> str | None:
    """Two models at the same batch on the same chip where more parameters run faster (the
    pair with the largest parameter ratio)."""
    best = None
    for a in points:
        for b in points:
            if (a.chip, a.batch) == (b.chip, b.batch) and a.parameters > b.parameters and a.predicted_s < b.predicted_s:
                gap = a.parameters / b.parameters
                if best is None or gap > best[0]:
                    best = (gap, a, b)
    if best is None:
        return None
    _, a, b = best
    why = (f"{b.model} does {b.flops / a.flops:.1f}x the FLOPs" if b.flops > a.flops else
           f"{b.model} does fewer FLOPs but its many small layers reach only {_fraction(b)} of the peak against "
           f"{_fraction(a)} for {a.model}")
    return (f"Example on {a.chip} at batch {a.batch}: {a.model} has {a.parameters / b.parameters:.1f}x the "
            f"parameters of {b.model} ({a.parameters / 1e6:,.1f} M vs {b.parameters / 1e6:,.1f} M) yet is predicted "
            f"faster ({a.predicted_s * 1e3:,.2f} ms vs {b.predicted_s * 1e3:,.2f} ms): {why}.")
