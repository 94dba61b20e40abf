"""Chips side by side: one captured step costed on several chips, with memory and cost.

Per chip: step time, samples/s and tokens/s, utilization (model FLOPs / step time / peak),
the memory the step needs against the chip's capacity (fits or not), the largest batch that
fits, and the cost per million samples (tokens for token models) where the chip's YAML has a
`price_usd`: the list price written off straight-line over AMORTIZATION_YEARS of continuous
use, so cost = price / (years x seconds per year) / (samples per second) x 1e6; power, host
and hosting are left out. The fastest chip and the cheapest (per million) are marked.

Example:
    >>> rows = side_by_side(step, [load_hardware("a100-80gb-sxm"), load_hardware("h100-sxm")], "amp-bf16",
    ...                     capture_at=lambda b: capture(*build(b), mode="train"))
    >>> [(r.chip, r.fits, r.max_batch) for r in rows]
    >>> rows.to_pandas()   # a SideBySide: a list of ChipRow; in Jupyter `rows` alone shows a table
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from .capture import CapturedStep
from .hardware import Hardware
from .memory import max_batch, step_memory
from .precision import Precision, get_precision
from .report import evaluate

AMORTIZATION_YEARS = 3
SECONDS_PER_YEAR = 365 * 24 * 3600


@dataclass(frozen=True)
class ChipRow:
    chip: str
    step_time_s: float
    samples_per_s: float
    tokens_per_s: float | None
    utilization: float
    peak_bytes: int
    capacity_bytes: float
    max_batch: int | None  # None when not searched
    usd_per_million: float | None  # per million samples, or tokens for token models; None without a price
    fastest: bool = False
    cheapest: bool = False

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.capacity_bytes

    def to_dict(self) -> dict:
        return {"hardware": self.chip, "step_time_s": self.step_time_s, "throughput_samples_per_s": self.samples_per_s,
                "throughput_tokens_per_s": self.tokens_per_s, "utilization": self.utilization,
                "memory_peak_bytes": self.peak_bytes, "capacity_bytes": self.capacity_bytes, "fits": self.fits,
                "max_batch": self.max_batch, "usd_per_million": self.usd_per_million, "fastest": self.fastest,
                "cheapest": self.cheapest}


class SideBySide(list):
    """The ChipRows of side_by_side (a list: indexing, iteration and == work as on one), shown in
    Jupyter as a table (`_repr_html_`) and as a DataFrame by `to_pandas()` (ChipRow.to_dict's keys)."""

    def __init__(self, rows=(), title: str = ""):
        super().__init__(rows)
        self.title = title

    def to_pandas(self):
        from .notebook_display import dataframe
        return dataframe([r.to_dict() for r in self])

    def _repr_html_(self) -> str:
        from .notebook_display import html_table
        return html_table([r.to_dict() for r in self], self.title)


def usd_per_million(price_usd: float | None, per_s: float) -> float | None:
    """Cost of a million samples (or tokens) at `per_s`, the price amortized as the module doc says."""
    if not price_usd or per_s <= 0:
        return None
    return price_usd / (AMORTIZATION_YEARS * SECONDS_PER_YEAR) / per_s * 1e6


def side_by_side(step: CapturedStep, chips: list[Hardware], precision: str | Precision,
                 capture_at: Callable[[int], CapturedStep] | None = None, execution: str = "eager") -> SideBySide:
    """One row per chip, in the order given. `capture_at(batch)` captures the step at another batch
    for the max-batch search (once: with `step`, the two captures every chip's search derives its
    steps from; memory.max_batch); None skips the search. `execution`: estimator.execution's mode."""
    precision = get_precision(precision) if isinstance(precision, str) else precision
    memory = step_memory(step, precision, optimizer=step.optimizer)
    rows = []
    for hw in chips:
        t = evaluate(step, hw, precision, execution).totals()
        per_s = t["throughput_tokens_per_s"] or t["throughput_samples_per_s"]
        biggest = (max_batch(capture_at, hw.memory_capacity_bytes, precision, step.optimizer, known=step)
                   if capture_at else None)
        rows.append(ChipRow(hw.id, t["step_time_s"], t["throughput_samples_per_s"], t["throughput_tokens_per_s"],
                            t["utilization"], memory.peak_bytes, hw.memory_capacity_bytes, biggest,
                            usd_per_million(hw.price_usd, per_s)))
    fitting = [r for r in rows if r.fits] or rows
    fastest = min(fitting, key=lambda r: r.step_time_s).chip
    priced = [r for r in fitting if r.usd_per_million is not None]
    cheapest = min(priced, key=lambda r: r.usd_per_million).chip if priced else None
    title = f"{step.model_name} · {precision.name} · {step.mode} · batch {step.batch}: chips side by side"
    return SideBySide([dataclasses.replace(r, fastest=r.chip == fastest, cheapest=r.chip == cheapest) for r in rows],
                      title)
