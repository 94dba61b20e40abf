"""The per-node roofline: time = max(FLOPs / compute roof, bytes / memory roof) + overhead.

The compute roof is the matrix-unit peak for matmul, conv and attention and the vector-unit
peak for everything else, each times the chip's achievable-efficiency factor when its YAML
gives one (1.0 otherwise: the datasheet roofline). Free ops (views) take no time and no
launch; every other op pays the chip's per-kernel overhead. The bound is whichever of the
three terms is largest.

Example:
    >>> t = node_time(Cost(2e9, 1e6, 1e6, "matmul"), h100, PRECISIONS["bf16"])
    >>> t.bound
    'overhead'
"""
from __future__ import annotations

from dataclasses import dataclass

from .capture import CapturedStep
from .costs import MATRIX_CLASSES, Cost, rule_for, unsupported_cost
from .hardware import Hardware
from .precision import Precision
from .tensor_meta import TensorMeta


@dataclass(frozen=True, slots=True)
class NodeTime:
    compute_s: float
    memory_s: float
    overhead_s: float

    @property
    def total_s(self) -> float:
        return max(self.compute_s, self.memory_s) + self.overhead_s

    @property
    def bound(self) -> str:
        if self.overhead_s > max(self.compute_s, self.memory_s):
            return "overhead"
        if self.compute_s == self.memory_s == 0:
            return "free"
        return "compute" if self.compute_s >= self.memory_s else "memory"


def step_costs(step: CapturedStep, precision: Precision) -> tuple[Cost, ...]:
    """Every node's Cost at `precision`, computed once per (step, precision)."""
    key = ("costs", precision.name)
    cached = step.extra.get(key)
    if cached is None:
        cached = tuple(_node_cost(node, precision) for node in step.nodes)
        step.extra[key] = cached
    return cached


def _node_cost(node, precision: Precision) -> Cost:
    rule = rule_for(node)
    op_class = rule.op_class if rule else "unsupported"
    size = precision.float_bytes(op_class)

    def nbytes(meta: TensorMeta) -> int:
        return meta.distinct * (size if meta.dtype.is_floating_point else meta.itemsize)

    return rule.fn(node, nbytes) if rule else unsupported_cost(node, nbytes)


def node_time(cost: Cost, hardware: Hardware, precision: Precision) -> NodeTime:
    if cost.op_class == "free":
        return NodeTime(0.0, 0.0, 0.0)
    eff = hardware.efficiency
    if cost.op_class in MATRIX_CLASSES:
        roof = hardware.matrix_peak(precision) * eff.get("matrix", 1.0)
    else:
        roof = hardware.vector_peak(precision) * eff.get("vector", 1.0)
    bandwidth = hardware.memory_bytes_per_s * eff.get("memory", 1.0)
    return NodeTime(cost.flops / roof, cost.bytes / bandwidth, hardware.kernel_overhead_s)
