"""The cost engine: the Cost record, the one registry of rules, and costing a node.

A rule is a pure function ``rule(node: OpNode, nbytes) -> Cost`` registered for one or more
aten ops with :func:`cost_rule`. ``nbytes(meta)`` gives a tensor's bytes under the precision
being costed (floating tensors take the precision's element size, integer tensors their
own), so one captured step is re-costed for any precision without tracing again.

Conventions: 1 multiply-accumulate = 2 FLOPs. Bytes = tensors read + tensors written, each
at its element size, a broadcast (stride-0) input read once; views move nothing.

Example:
    @cost_rule("mm", op_class="matmul")
    def mm(node, nbytes):
        (m, k), (_, n) = node.inputs[0].shape, node.inputs[1].shape
        return Cost(2 * m * k * n, *read_write(node, nbytes), "matmul")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .capture import OpNode
from .tensor_meta import TensorMeta

# op classes: the first three run on the matrix unit, the rest on the vector unit
MATRIX_CLASSES = ("matmul", "conv", "attention")
OP_CLASSES = MATRIX_CLASSES + ("norm", "softmax", "elementwise", "reduction", "pooling",
                               "embedding", "loss", "memory", "optimizer", "free", "unsupported")


@dataclass(frozen=True, slots=True)
class Cost:
    """FLOPs and bytes of one op. `model_flops` is the work the math needs (causal attention
    counts half its scores); `flops` is what the kernel executes. `kernel` names the measured
    efficiency curve the op follows (see estimator.kernels; "" for a sum of ops)."""

    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    op_class: str = "free"
    model_flops: int | None = None
    kernel: str = ""

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def useful_flops(self) -> int:
        return self.flops if self.model_flops is None else self.model_flops

    def __add__(self, other: "Cost") -> "Cost":
        op_class = self.op_class if self.op_class == other.op_class else "mixed"
        return Cost(self.flops + other.flops, self.bytes_read + other.bytes_read,
                    self.bytes_written + other.bytes_written, op_class,
                    self.useful_flops + other.useful_flops)

    def scale(self, factor: int) -> "Cost":
        return Cost(self.flops * factor, self.bytes_read * factor, self.bytes_written * factor,
                    self.op_class, None if self.model_flops is None else self.model_flops * factor, self.kernel)


Nbytes = Callable[[TensorMeta], int]
Rule = Callable[[OpNode, Nbytes], Cost]


@dataclass(frozen=True)
class RegisteredRule:
    fn: Rule
    op_class: str


RULES: dict[torch._ops.OpOverloadPacket, RegisteredRule] = {}
ABSENT_OPS: list[str] = []  # registered names this torch build does not have


def cost_rule(*op_names: str, op_class: str):
    """Register `fn` as the rule for the aten ops named (packet names: "mm", "add_").

    A duplicate registration or an unknown op class fails at import. Names that this torch
    build lacks are skipped (rules cover several torch versions); a test checks that every
    name exists in the pinned torch.
    """
    if op_class not in OP_CLASSES:
        raise ValueError(f"unknown op class {op_class!r}")

    def register(fn: Rule) -> Rule:
        for name in op_names:
            packet = getattr(torch.ops.aten, name, None)
            if packet is None:
                ABSENT_OPS.append(name)
                continue
            if packet in RULES:
                raise ValueError(f"aten.{name} has two cost rules: {RULES[packet].fn.__name__} and {fn.__name__}")
            RULES[packet] = RegisteredRule(fn, op_class)
        return fn

    return register


def read_write(node: OpNode, nbytes: Nbytes) -> tuple[int, int]:
    """(bytes read, bytes written): every tensor input once, every output once."""
    return sum(nbytes(t) for t in node.inputs), sum(nbytes(t) for t in node.outputs)


def rule_for(node: OpNode) -> RegisteredRule | None:
    return RULES.get(node.op.overloadpacket)


def unsupported_cost(node: OpNode, nbytes: Nbytes) -> Cost:
    """An op with no rule: its tensors' traffic is still charged, its FLOPs are unknown."""
    return Cost(0, *read_write(node, nbytes), "unsupported")
