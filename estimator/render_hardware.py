"""Rich renderables for chips: the catalog table and one chip's full sheet.

Units in headers: TFLOP/s (1e12 FLOP/s, dense), GB/s and GB (1e9), FLOP/B.
"""
from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table

from .hardware import Hardware
from .render_fit import FitTable


def _tflops(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e12:,.1f}"


def catalog_table(chips: list[Hardware]) -> Table:
    table = FitTable(title=f"hardware catalog ({len(chips)} chips; dense peaks)", box=box.SIMPLE_HEAD,
                     title_justify="left")
    for col, justify, priority in (("id", "left", 0), ("kind", "left", 2), ("fp32 TFLOP/s", "right", 0),
                                   ("bf16/fp16 matrix", "right", 0), ("fp8", "right", 1), ("GB/s", "right", 0),
                                   ("GB", "right", 0), ("ridge FLOP/B (16-bit)", "right", 3), ("name", "left", 4)):
        table.add_column(col, justify=justify, priority=priority, name=col == "id")
    for hw in chips:
        half = hw.half_matrix_key
        half_peak = hw.matrix_flops_per_s.get(half) if half else None
        ridge = f"{half_peak / hw.memory_bytes_per_s:,.0f}" if half_peak else "-"
        table.add_row(hw.id, hw.kind, _tflops(hw.vector_flops_per_s["fp32"]),
                      f"{_tflops(half_peak)} {half or ''}".strip(), _tflops(hw.matrix_flops_per_s.get("fp8")),
                      f"{hw.memory_bytes_per_s / 1e9:,.0f}", f"{hw.memory_capacity_bytes / 1e9:,.0f}", ridge, hw.name)
    return table


def chip_sheet(hw: Hardware) -> Group:
    table = Table(title=f"{hw.id}: {hw.name} ({hw.vendor}, {hw.kind})", box=box.SIMPLE, show_header=False,
                  title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for unit, peaks in (("matrix", hw.matrix_flops_per_s), ("vector", hw.vector_flops_per_s)):
        table.add_row(f"{unit} peaks", ", ".join(f"{k} {v / 1e12:,.1f}" for k, v in peaks.items()) + " TFLOP/s (dense)")
    if hw.sparse_flops_per_s:
        table.add_row("2:4 sparse (audit)", ", ".join(f"{k} {v / 1e12:,.1f}" for k, v in hw.sparse_flops_per_s.items())
                      + " TFLOP/s, never used as peaks")
    table.add_row("memory", f"{hw.memory_bytes_per_s / 1e9:,.1f} GB/s, {hw.memory_capacity_bytes / 1e9:,.0f} GB")
    if hw.cache_bytes:
        table.add_row("last-level cache", f"{hw.cache_bytes / 1e6:,.1f} MB")
    if hw.tdp_w:
        table.add_row("TDP", f"{hw.tdp_w:,.0f} W")
    if hw.interconnect_bytes_per_s:
        table.add_row("interconnect", f"{hw.interconnect_bytes_per_s / 1e9:,.0f} GB/s")
    table.add_row("kernel overhead", f"{hw.kernel_overhead_s * 1e6:g} µs" + ("" if hw.kind == "cpu" else
                  " (CPU estimates only; a GPU step uses the family's kernel floor and the host's costs)"))
    if hw.family or hw.sm_count:
        table.add_row("execution", f"family {hw.family or '-'} (hardware/kernels/families.yaml), "
                                   f"{hw.sm_count or '-'} SMs")
    if hw.host:
        h = hw.host
        table.add_row("host", f"{h.id}: {h.name}; per op {h.op_s * 1e6:g} µs, per cuDNN convolution call +"
                              f"{h.conv_op_s * 1e6:g}, per cuBLAS matmul call +{h.matmul_op_s * 1e6:g}, per module call "
                              f"{h.module_call_s * 1e6:g}, per backward op {h.backward_op_s * 1e6:g}; inside real models "
                              f"x{h.in_situ_forward:g} forward, x{h.in_situ_backward:g} backward")
    table.add_row("ridge points", ", ".join(f"{k} {v / hw.memory_bytes_per_s:,.0f}"
                                            for k, v in hw.matrix_flops_per_s.items()) + " FLOP/B")
    a = hw.achievable
    achievable = f"matrix {a.matrix:.0%}, vector {a.vector:.0%}, memory {a.memory:.0%} of peak"
    if a.matrix_half_flops:
        achievable += f"; half of it at {a.matrix_half_flops:.3g} FLOPs (matmul)"
    if a.memory_half_bytes:
        achievable += f", {a.memory_half_bytes:.3g} bytes (memory)"
    if a.curves:
        achievable += "; measured curves: " + ", ".join(f"{k} ({len(v)} points)" for k, v in a.curves.items())
    if a.kernels:
        slowest = sorted(a.kernels.items(), key=lambda kv: min(p[2] for p in kv[1]))[:3]
        achievable += (f"; measured points for {len(a.kernels)} kernels (slowest: "
                       + ", ".join(f"{k} {min(p[2] for p in v):.0%}" for k, v in slowest) + " of the roofline)")
    table.add_row("achievable", achievable)
    for label, items in (("achievable from", a.source), ("sources", hw.source), ("notes", hw.notes)):
        for i, item in enumerate(items):
            table.add_row(label if i == 0 else "", item)
    table.add_row("file", hw.path)
    return Group(table)
