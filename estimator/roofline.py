"""The per-node roofline: time = max(FLOPs / compute roof, bytes / memory roof) + overhead.

Two estimates per node:
  * the datasheet bound: max(FLOPs / peak, bytes / bandwidth), no overhead: no chip beats it;
  * the achievable estimate: the same with each roof scaled by the fraction real kernels
    reach at this op's size (the chip's `achievable` block: a large-work fraction falling off
    for small work, or measured curves), plus the per-kernel overhead. This is the prediction.
    Where the chip has measured points for the op's kernel (`achievable.kernels`, keyed as in
    estimator.kernels), both roofs are scaled instead by the fraction that kernel reached on
    ops of the nearest sizes (in FLOPs and bytes).
The compute roof is the matrix-unit peak for matmul, conv and attention and the vector-unit
peak for everything else. Free ops (views) take no time and no launch. The bound is
whichever of compute, memory and overhead is largest in the achievable estimate.

Example:
    >>> t = node_time(Cost(2e9, 1e6, 1e6, "matmul"), h100, PRECISIONS["bf16"])
    >>> t.bound
    'overhead'
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

from .capture import CapturedStep, OpNode
from .costs import MATRIX_CLASSES, Cost, rule_for, unsupported_cost
from .hardware import Hardware
from .kernels import kernel_key
from .precision import Precision
from .tensor_meta import TensorMeta


class NodeTime(NamedTuple):
    """A node's share of the step. `total_s` = wait_s + max(compute_s, memory_s) + overhead_s: the
    device idle before it waiting for the host (estimator.timeline), then its kernel. A named
    tuple: a re-cost makes one per node (576 for a ResNet-50 training step) in a fifth of a
    frozen dataclass's time."""

    compute_s: float  # achievable compute time
    memory_s: float  # achievable memory time
    overhead_s: float  # fixed per-kernel cost: the device's kernel floor (the per-op overhead on CPUs)
    roofline_s: float  # the datasheet bound: max(FLOPs / peak, bytes / bandwidth)
    host_s: float = 0.0  # host time to issue it (dispatch, module calls, autograd, launch)
    wait_s: float = 0.0  # device idle before it, waiting for the host
    kernels_s: float | None = None  # device time of its kernels when it owns several (autocast's casts)

    @property
    def device_s(self) -> float:
        return self.kernels_s if self.kernels_s is not None else max(self.compute_s, self.memory_s) + self.overhead_s

    @property
    def total_s(self) -> float:
        return self.wait_s + self.device_s

    @property
    def bound(self) -> str:
        """host (waiting for the host), overhead (the kernel floor), compute or memory: the largest part."""
        work = max(self.compute_s, self.memory_s)
        if self.wait_s > max(self.device_s - self.overhead_s, self.overhead_s):
            return "host"
        if self.overhead_s > work:
            return "overhead"
        if self.compute_s == self.memory_s == 0:
            return "free"
        return "compute" if self.compute_s >= self.memory_s else "memory"


def step_costs(step: CapturedStep, precision: Precision) -> tuple[Cost, ...]:
    """Every node's Cost at `precision`, computed once per (step, precision)."""
    key = ("costs", precision.name)
    cached = step.extra.get(key)
    if cached is None:
        seen: dict = {}  # a repeated block's ops differ from the first block's only in their module path

        def cost(node: OpNode) -> Cost:
            same = _cost_key(node)
            try:
                if same not in seen:
                    seen[same] = _node_cost(node, precision)
                return seen[same]
            except TypeError:  # an argument that does not hash
                return _node_cost(node, precision)

        cached = tuple(cost(node) for node in step.nodes)
        step.extra[key] = cached
    return cached


def _cost_key(node: OpNode) -> tuple:
    """What a cost rule reads of a node: all but its module path and type (lists made tuples)."""
    return node.op, node.phase, _frozen(node.args), _frozen(node.kwargs), node.inputs, node.outputs


def _frozen(value):
    if isinstance(value, list):
        return ("list", *(_frozen(v) for v in value))
    if isinstance(value, tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return ("dict", *((k, _frozen(v)) for k, v in value.items()))
    if type(value) in (bool, float):  # 1, 1.0 and True hash alike
        return type(value).__name__, value
    return value


def _node_cost(node, precision: Precision) -> Cost:
    rule = rule_for(node)
    op_class = rule.op_class if rule else "unsupported"
    size = precision.float_bytes(op_class, node.op.overloadpacket.__name__)

    def nbytes(meta: TensorMeta) -> int:
        return meta.distinct * (size if meta.dtype.is_floating_point else meta.itemsize)

    cost = rule.fn(node, nbytes) if rule else unsupported_cost(node, nbytes)
    return dataclasses.replace(cost, kernel=kernel_key(node))


def node_time(cost: Cost, hardware: Hardware, precision: Precision) -> NodeTime:
    if cost.op_class == "free":
        return NodeTime(0.0, 0.0, 0.0, 0.0)
    achievable = hardware.achievable
    matrix = cost.op_class in MATRIX_CLASSES
    bandwidth = hardware.memory_bytes_per_s
    kernel_curve = achievable.kernels.get(cost.kernel)
    if kernel_curve:
        peak = hardware.matrix_peak(precision) if matrix else hardware.vector_peak(precision)
        compute_s, memory_s = cost.flops / peak, cost.bytes / bandwidth
        fraction = achievable.kernel_fraction(cost.kernel, cost.flops, cost.bytes)
        return NodeTime(compute_s / fraction, memory_s / fraction, hardware.kernel_overhead_s,
                        max(compute_s, memory_s))
    if matrix:
        peak = hardware.matrix_peak(precision)
        fraction = achievable.matrix_fraction(cost.flops, conv=cost.op_class == "conv")
    else:
        peak = hardware.vector_peak(precision)
        fraction = achievable.vector
    roofline = max(cost.flops / peak, cost.bytes / bandwidth)
    return NodeTime(cost.flops / (peak * fraction), cost.bytes / (bandwidth * achievable.memory_fraction(cost.bytes)),
                    hardware.kernel_overhead_s, roofline)
