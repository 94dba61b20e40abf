"""Rich renderables for a Report: the per-layer table, the totals, the unsupported ops.

Rendering only; nothing here computes. Units in headers: GFLOP (1e9), MB (1e6 bytes), ms.
"""
from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .execution import execution_defaults
from .render_fit import FitTable
from .report import Report

BOUND_STYLE = {"compute": "green", "memory": "yellow", "overhead": "magenta", "host": "red", "free": "dim"}


def _significant(value: float) -> str:
    """One decimal for values >= 10 (989.4, 3,350.0), three significant digits below (0.142, 9.05)."""
    return f"{value:,.1f}" if value >= 10 else f"{value:#.3g}"


def layer_table(report: Report, by: str, depth: int | None, top: int) -> Table:
    rows = report.rows(by, depth)
    step_s = report.totals()["step_time_s"] or 1.0
    train = report.step.mode == "train"
    label = {"layer": "layer", "type": "module type", "op": "aten op"}[by]
    shown = rows if top <= 0 else rows[:top]
    title = (f"{report.step.model_name} · {report.hardware.id} · {report.precision.name} · {report.step.mode} · "
             f"batch {report.step.batch} — by {label}" + (f" (depth {depth})" if depth else ""))
    table = FitTable(title=title, box=box.SIMPLE_HEAD, title_justify="left", show_footer=False)
    table.add_column(label, name=True)  # narrow terminals: FLOP/B, MB moved, type, GFLOPs go first, in that order
    if by != "type":
        table.add_column("type" if by == "layer" else "op family", priority=3)
    table.add_column("fwd GFLOP", justify="right", priority=2)
    if train:
        table.add_column("bwd GFLOP", justify="right", priority=2)
    table.add_column("MB moved", justify="right", priority=4)
    table.add_column("FLOP/B", justify="right", priority=5)
    table.add_column("bound", priority=1)
    table.add_column("fwd ms", justify="right")
    if train:
        table.add_column("bwd ms", justify="right")
    table.add_column("% step", justify="right")
    for r in shown:
        cells = [r.name] + ([r.type] if by != "type" else []) + [f"{r.forward_flops / 1e9:,.3f}"]
        cells += [f"{r.backward_flops / 1e9:,.3f}"] if train else []
        cells += [f"{r.bytes / 1e6:,.2f}", f"{r.intensity:,.1f}",
                  Text(r.bound, style=BOUND_STYLE.get(r.bound, "")), f"{r.forward_time_s * 1e3:,.4f}"]
        cells += [f"{r.backward_time_s * 1e3:,.4f}"] if train else []
        cells += [f"{100 * r.time_s / step_s:.1f}"]
        table.add_row(*cells)
    if len(rows) > len(shown):
        table.caption = f"{len(rows) - len(shown)} more rows not shown (--top 0 shows all)"
    return table


def totals_table(report: Report) -> Table:
    t = report.totals()
    hw, prec = report.hardware, report.precision
    table = Table(box=box.SIMPLE, show_header=False, title="totals", title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(justify="left")
    table.add_row("parameters", f"{t['parameters']:,} ({t['trainable_parameters']:,} trainable)")
    table.add_row("forward", f"{t['forward_flops'] / 1e9:,.2f} GFLOP   {t['forward_bytes'] / 1e9:,.3f} GB   "
                             f"{t['forward_time_s'] * 1e3:,.3f} ms")
    if report.step.mode == "train":
        table.add_row("backward", f"{t['backward_flops'] / 1e9:,.2f} GFLOP   {t['backward_bytes'] / 1e9:,.3f} GB   "
                                  f"{t['backward_time_s'] * 1e3:,.3f} ms")
    if t["optimizer"]:
        table.add_row("optimizer", f"{t['optimizer']}: {t['optimizer_flops'] / 1e9:,.2f} GFLOP   "
                                   f"{t['optimizer_bytes'] / 1e9:,.3f} GB   {t['optimizer_time_s'] * 1e3:,.3f} ms")
    if t["accumulate"] > 1:
        table.add_row("accumulation", f"forward and backward above are {t['accumulate']} micro-batches of "
                                      f"{report.step.batch}: {t['samples_per_step']:,} samples per optimizer step")
    if t["model_flops"] != t["step_flops"]:
        table.add_row("model FLOPs", f"{t['model_flops'] / 1e9:,.2f} GFLOP (causal attention counted once per "
                                     f"unmasked score; executed {t['step_flops'] / 1e9:,.2f})")
    table.add_row("step time", f"{t['step_time_s'] * 1e3:,.3f} ms achievable estimate   "
                               f"({t['roofline_step_time_s'] * 1e3:,.3f} ms datasheet roofline bound)")
    line = t["timeline"]
    if hw.kind == "cpu":
        table.add_row("timeline", f"{t['execution']}, serial on the CPU (one core issues and runs each op): "
                                  f"{t['step_bound']}-bound; per-op overhead {line['host_busy_s'] * 1e3:,.3f} ms")
    else:
        table.add_row("timeline", f"{t['execution']}: {t['step_bound']}-bound; host busy {line['host_busy_s'] * 1e3:,.3f} ms, "
                                  f"device busy {line['device_busy_s'] * 1e3:,.3f} ms, device waiting on the host "
                                  f"{line['host_bound_s'] * 1e3:,.3f} ms ({100 * line['host_bound_fraction']:.0f}% of the step), "
                                  f"host hidden under device work {line['overlapped_s'] * 1e3:,.3f} ms")
    for note in t["notes"]:
        table.add_row("note", note)
    samples = t["throughput_samples_per_s"]
    throughput = f"{_significant(samples)} samples/s"
    if t["throughput_tokens_per_s"]:
        throughput += f"   {t['throughput_tokens_per_s']:,.0f} tokens/s"
    table.add_row("throughput", throughput)
    table.add_row("utilization", f"{100 * t['utilization']:.1f}% of {_significant(hw.matrix_peak(prec) / 1e12)} "
                                 f"TFLOP/s {prec.matrix_key} peak (model FLOPs / step time / peak)")
    table.add_row("roofs", f"{_significant(hw.matrix_peak(prec) / 1e12)} TFLOP/s matrix, "
                           f"{_significant(hw.vector_peak(prec) / 1e12)} TFLOP/s vector, "
                           f"{_significant(hw.memory_bytes_per_s / 1e9)} GB/s, "
                           f"{_launch(hw)}; ridge {hw.ridge_point(prec):,.0f} FLOP/B")
    return table


def _launch(hw) -> str:
    """The per-kernel fixed costs: the measured per-op overhead on a CPU; the family's kernel
    floor and the host's op dispatch on an accelerator."""
    if hw.kind == "cpu":
        return f"{hw.kernel_overhead_s * 1e6:g} µs/op"
    family, host, _ = execution_defaults(hw)
    return f"{family.kernel_floor_s * 1e6:g} µs/kernel on the device ({family.name}), {host.op_s * 1e6:g} µs/op on the host ({host.id})"


def unsupported_table(report: Report) -> Table | None:
    ops = report.unsupported()
    if not ops:
        return None
    table = FitTable(title="unsupported ops (no cost rule: traffic charged, FLOPs unknown)", box=box.SIMPLE_HEAD,
                     title_justify="left", title_style="bold red")
    table.add_column("op", name=True)
    for col in ("count", "% nodes", "% bytes"):
        table.add_column(col, justify="right")
    for u in ops:
        table.add_row(u["op"], str(u["count"]), f"{100 * u['node_share']:.2f}", f"{100 * u['bytes_share']:.2f}")
    return table


def incomplete_banner(report: Report) -> Text | None:
    """One line above the table when some ops have no cost rule, so nobody misses it."""
    ops = report.unsupported()
    if not ops:
        return None
    nodes = sum(u["node_share"] for u in ops)
    nbytes = sum(u["bytes_share"] for u in ops)
    return Text(f"INCOMPLETE: {sum(u['count'] for u in ops)} op(s) of {len(ops)} kind(s) have no cost rule "
                f"({100 * nodes:.1f}% of nodes, {100 * nbytes:.1f}% of bytes): their traffic is charged, their "
                f"FLOPs count 0; listed at the bottom (--strict makes this an error)", style="bold red")


def full_report(report: Report, by: str = "layer", depth: int | None = None, top: int = 25) -> Group:
    parts = [layer_table(report, by, depth, top), totals_table(report)]
    banner = incomplete_banner(report)
    if banner is not None:
        parts.insert(0, banner)
    unsupported = unsupported_table(report)
    if unsupported is not None:
        parts.append(unsupported)
    return Group(*parts)
