"""Rich renderables for a cluster prediction (estimator.cluster) and a layout search. Rendering
only. Units: ms, GB (1e9 bytes), tokens/s; MFU and HFU as the result states them.
"""
from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .cluster import ClusterResult
from .render_fit import FitTable

KINDS = {"tp": "tensor parallel", "ep": "expert all-to-all", "pp": "pipeline send/recv", "dp": "data parallel"}


def cluster_summary(result: ClusterResult, model: str, run: dict | None = None) -> Group:
    """The prediction as lines: throughput, time split, memory, and a training run when asked."""
    r, d = result, result.to_dict()
    title = Text(f"{model} · {r.system} ({r.chip}) · {r.gpus} GPUs, {d['nodes']} node(s) of {r.gpus_per_node} · "
                 f"{r.layout.name} · {r.precision} · micro-batch {r.micro_batch} x {r.micro_batches} "
                 f"· global batch {r.samples_per_step:,}" + (" · recompute" if r.recompute else ""), style="bold")
    table = Table(box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("step time", f"{r.step_time_s * 1e3:,.1f} ms (compute alone {r.compute_s * 1e3:,.1f} ms)")
    rate = f"{r.samples_per_s:,.1f} samples/s"
    if r.tokens_per_s:
        rate += f", {r.tokens_per_s:,.0f} tokens/s ({r.tokens_per_s / r.gpus:,.0f} per GPU)"
    table.add_row("throughput", rate)
    table.add_row("MFU / HFU", f"{100 * r.mfu:.1f}% / {100 * r.hfu:.1f}% of {r.peak_flops_per_s / 1e12:,.0f} "
                               "TFLOPS dense per GPU (model FLOPs: captured forward+backward, causal attention "
                               "halved, no recompute)")
    parts = ", ".join(f"{KINDS[k]} {v * 1e3:,.1f}" for k, v in r.collectives_s.items() if v > 0) or "none"
    table.add_row("communication", f"{r.communication_s * 1e3:,.1f} ms per GPU ({parts} ms); exposed "
                                   f"{r.communication_exposed_s * 1e3:,.1f} ms, hidden "
                                   f"{max(0.0, r.communication_s - r.communication_exposed_s) * 1e3:,.1f} ms")
    m = r.memory
    fits = Text("fits", style="green") if r.fits else Text("does NOT fit", style="bold red")
    memory = Text(f"{m['peak_bytes'] / 1e9:,.1f} GB of {m['capacity_bytes'] / 1e9:,.0f} GB: ")
    memory.append_text(fits)
    other = m["weight_copies_bytes"] + m["temporaries_bytes"] + m["buffers_and_inputs_bytes"]
    memory.append(f" (parameters {m['parameters_bytes'] / 1e9:,.1f}, gradients {m['gradients_bytes'] / 1e9:,.1f}, "
                  f"optimizer {m['optimizer_bytes'] / 1e9:,.1f}, activations {m['activations_bytes'] / 1e9:,.1f} "
                  f"for {m['micro_batches_in_flight']} micro-batch(es) in flight, half weight copies, temporaries "
                  f"and inputs {other / 1e9:,.1f})")
    table.add_row("memory per GPU", memory)
    if run:
        line = (f"{run['tokens']:.3g} tokens: {run['steps']:,} steps, {run['time_s'] / 86400:,.1f} days, "
                f"{run['gpu_time_s'] / 3600:,.0f} GPU-hours")
        if run.get("cost_usd") is not None:
            line += f", US$ {run['cost_usd']:,.0f} at {run['usd_per_gpu_hour']:g}/GPU-hour"
        table.add_row("training run", line + " (no restarts or evaluation)")
    return Group(title, table)


def unit_table(result: ClusterResult, top: int) -> Table:
    """Units (blocks, embed, head) by time per micro-batch on one GPU of their stage, largest first."""
    units = sorted(result.units, key=lambda u: -(u.forward_s + u.backward_s + u.tp_forward_s + u.tp_backward_s
                                                 + u.ep_forward_s + u.ep_backward_s))
    shown = units if top <= 0 else units[:top]
    table = FitTable(title="per unit and micro-batch, one GPU (tensor/expert-parallel collectives block compute)",
                     box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("unit", name=True)
    for col in ("forward ms", "backward ms", "tp/ep comm ms", "parameters on this GPU"):
        table.add_column(col, justify="right", priority=1 if col == "parameters on this GPU" else 0)
    for u in shown:
        table.add_row(u.name, f"{u.forward_s * 1e3:,.3f}", f"{u.backward_s * 1e3:,.3f}",
                      f"{(u.tp_forward_s + u.tp_backward_s + u.ep_forward_s + u.ep_backward_s) * 1e3:,.3f}",
                      f"{u.trainable_elements:,}")
    if len(units) > len(shown):
        table.caption = f"{len(units) - len(shown)} more units (--top 0 shows all)"
    return table


def search_table(results: list[ClusterResult], model: str, top: int) -> Table:
    """The best `top` layouts side by side."""
    first = results[0]
    table = FitTable(title=f"{model} · {first.system} · {first.gpus} GPUs · {first.precision} · global batch "
                           f"{first.samples_per_step:,}: {len(results)} layouts fit, fastest first",
                     box=box.SIMPLE_HEAD, title_justify="left")
    for col in ("#", "layout", "micro-batch", "recompute", "step ms", "tokens/s/GPU" if first.tokens_per_s else
                "samples/s", "MFU", "exposed comm ms", "memory GB"):
        table.add_column(col, justify="left" if col in ("layout", "recompute") else "right", name=col == "layout",
                         priority={"exposed comm ms": 2, "memory GB": 1, "#": 1}.get(col, 0))
    for rank, r in enumerate(results[:top], start=1):
        rate = f"{r.tokens_per_s / r.gpus:,.0f}" if r.tokens_per_s else f"{r.samples_per_s:,.1f}"
        table.add_row(str(rank), r.layout.name, f"{r.micro_batch} x {r.micro_batches}", "yes" if r.recompute else "no",
                      f"{r.step_time_s * 1e3:,.1f}", rate, f"{100 * r.mfu:.1f}%",
                      f"{r.communication_exposed_s * 1e3:,.1f}", f"{r.memory_per_gpu_bytes / 1e9:,.1f}")
    return table
