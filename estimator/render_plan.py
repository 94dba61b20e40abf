"""Rich renderables for the training planner: the memory line under a report, and the chips
side by side. Rendering only. Units: GB (1e9 bytes), ms, US$ per million samples or tokens.
"""
from __future__ import annotations

import math

from rich import box
from rich.table import Table
from rich.text import Text

from .capture import CapturedStep
from .chips import AMORTIZATION_YEARS, ChipRow
from .hardware import Hardware
from .memory import MemoryEstimate
from .precision import Precision
from .render_fit import FitTable


def memory_line(memory: MemoryEstimate, hardware: Hardware, max_batch: int | None) -> Text:
    fits = memory.peak_bytes <= hardware.memory_capacity_bytes
    text = Text("memory        ", style="bold")
    text.append(f"peak {memory.peak_bytes / 1e9:,.2f} GB of {hardware.memory_capacity_bytes / 1e9:,.0f} GB: ")
    text.append("fits" if fits else "does NOT fit", style="green" if fits else "bold red")
    text.append(f"  (parameters {memory.parameters_bytes / 1e9:,.2f}, gradients {memory.gradients_bytes / 1e9:,.2f}, "
                f"optimizer {memory.optimizer_bytes / 1e9:,.2f}, activations "
                + ("saved for backward" if memory.mode == "train" else "live at the peak")
                + f" {memory.activations_bytes / 1e9:,.2f} GB"
                + (f", KV cache {memory.kv_cache_bytes / 1e9:,.2f} GB" if memory.kv_cache_bytes else "")
                + f"; peak in the {memory.peak_phase} at "
                f"{memory.peak_module or '(model)'})")
    if max_batch is not None:
        text.append(f"\nlargest batch that fits: {max_batch:,}" if max_batch else
                    "\nlargest batch that fits: none (batch 1 does not fit)")
    return text


def side_by_side_table(step: CapturedStep, precision: Precision, rows: list[ChipRow]) -> Table:
    tokens = step.tokens_per_sample is not None
    unit = "tokens" if tokens else "samples"
    title = (f"{step.model_name} · {precision.name} · {step.mode} · batch {step.batch}"
             + (f" x {step.accumulate} micro-batches" if step.accumulate > 1 else "")
             + (f" · seq {step.tokens_per_sample}" if tokens else "") + " — chips side by side")
    table = FitTable(title=title, box=box.SIMPLE_HEAD, title_justify="left",
                     caption=f"fastest: the fastest chip on which the step fits; US$ per million {unit}: list price "
                             f"written off over {AMORTIZATION_YEARS} years of continuous use (no power, host or "
                             "hosting); '-' where the YAML has no price",
                     caption_justify="left")
    priority = {"capacity GB": 4, "utilization": 3, "max batch": 2, f"US$/M {unit}": 2, "samples/s": 1, "tokens/s": 1}
    table.add_column("chip", name=True)
    for col in ("step ms", "samples/s", *(["tokens/s"] if tokens else []), "utilization", "memory GB",
                "capacity GB", "fits", "max batch", f"US$/M {unit}", ""):
        table.add_column(col, justify="left" if col in ("fits", "") else "right", priority=priority.get(col, 0))
    for r in rows:
        marks = ", ".join(m for m, on in (("fastest", r.fastest), ("cheapest", r.cheapest)) if on)
        table.add_row(r.chip, f"{r.step_time_s * 1e3:,.2f}", f"{r.samples_per_s:,.1f}",
                      *([f"{r.tokens_per_s:,.0f}"] if tokens else []), f"{100 * r.utilization:.1f}%",
                      f"{r.peak_bytes / 1e9:,.2f}", f"{r.capacity_bytes / 1e9:,.0f}",
                      Text("yes", style="green") if r.fits else Text("NO", style="bold red"),
                      "-" if r.max_batch is None else f"{r.max_batch:,}",
                      "-" if r.usd_per_million is None else f"{r.usd_per_million:,.4g}", marks)
    return table


def does_not_fit_advice(memory, step: CapturedStep, chips) -> str:
    """Why the step fits on none of `chips`, and what can help, with the numbers. When the
    weights, gradients and optimizer state alone exceed the largest memory, no batch size,
    recompute or accumulation helps: only sharding over several chips or a bigger chip does. The
    floor is the weights and optimizer state, which live through the step, plus the larger of
    autocast's weight copies (alive from the forward to their last backward use) and the
    gradients (made in the backward, alive until the update): never both whole at once."""
    largest = max(c.memory_capacity_bytes for c in chips)
    state = (memory.parameters_bytes + memory.optimizer_bytes
             + max(memory.weight_copies_bytes, memory.gradients_bytes))
    names = ", ".join(c.id for c in chips)
    head = f"the step needs {memory.peak_bytes / 1e9:,.2f} GB at batch {step.batch} but the largest memory among {names} " \
           f"is {largest / 1e9:,.0f} GB"
    if state > largest:
        parts = "the weights" + (", gradients and optimizer state" if memory.gradients_bytes else "")
        sharding = "FSDP / ZeRO-3, or tensor / pipeline parallel" if memory.gradients_bytes else \
            "tensor or pipeline parallel"
        return (f"{head}; {parts} alone take {state / 1e9:,.2f} GB, so no batch size, --recompute or --accumulate "
                f"can fit it on one chip: shard them over at least {math.ceil(state / largest)} chips ({sharding}; "
                f"more for the activations: --gpus N --parallel fsdp, or --search for a layout), or use a chip with "
                f"more than {state / 1e9:,.0f} GB")
    return (f"{head}: use a smaller --batch or --seq, --recompute, or --accumulate with smaller micro-batches "
            "(--max-batch finds the largest batch that fits)")
