"""Back of the envelope: the compute a target throughput needs, and what it means on each chip.

The 3x rule (OpenAI, "AI and Compute"): required FLOP/s = forward MACs per sample x 2 FLOPs
per MAC x 3 x samples/s for training (one forward, two backward: input and weight
gradients), x 1 for inference. Peak ratio = required FLOP/s / the chip's dense matrix peak at
the precision. It ignores every op that is not a matmul or convolution and assumes backward =
2 x forward; beside it stands our traced count: the model FLOPs (the MFU convention) of the
captured step's forward, loss and backward (the optimizer update is left out, as in the rule).
At the chip's predicted throughput the traced ratio is the predicted utilization, up to the
optimizer update.

Example:
    >>> r = from_macs(4.112e9, 1325, [load_hardware("v100-pcie")], PRECISIONS["fp16"], train=True)
    >>> f"{r.rule_flops_per_s / 1e12:.4g} TFLOPS, {r.chips[0].rule_peak_ratio:.1%}"
    '32.69 TFLOPS, 29.2%'
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .capture import CapturedStep
from .costs import MATRIX_CLASSES
from .errors import RooflineError
from .hardware import Hardware
from .precision import Precision
from .report import evaluate
from .roofline import step_costs

FLOPS_PER_MAC = 2
TRAIN_FACTOR = 3  # forward + input gradients + weight gradients
TRACED_PHASES = ("forward", "loss", "backward")


@dataclass(frozen=True)
class ChipRequirement:
    """One chip: its peak, the ratios the two counts imply, and our prediction (model path only)."""

    hardware: str
    peak_flops_per_s: float
    rule_peak_ratio: float
    traced_peak_ratio: float | None = None
    predicted_utilization: float | None = None
    predicted_samples_per_s: float | None = None
    chips_needed: int | None = None  # ceil(target / predicted samples/s per chip)


@dataclass(frozen=True)
class Requirement:
    """What `target_samples_per_s` needs by the 3x rule and, for a model, by our traced count."""

    precision: str
    train: bool
    target_samples_per_s: float
    forward_macs_per_sample: float
    rule_flops_per_s: float
    chips: tuple[ChipRequirement, ...]
    model: str | None = None
    batch: int | None = None
    traced_flops_per_sample: float | None = None
    traced_flops_per_s: float | None = None

    def to_dict(self) -> dict:
        """SI units: FLOPs, FLOP/s, samples/s; ratios as fractions."""
        return {**asdict(self), "chips": [asdict(c) for c in self.chips]}


def rule_flops_per_s(forward_macs_per_sample: float, samples_per_s: float, train: bool) -> float:
    """MACs x 2 x (3 if train else 1) x samples/s. Example: 4.112e9 MACs at 303.1/s, train: 7.478e12."""
    if not 0 < forward_macs_per_sample < math.inf:
        raise RooflineError(f"forward MACs per sample must be a positive number, got {forward_macs_per_sample:g}; "
                            "give the multiply-accumulates of one forward pass (e.g. --macs 4.112e9 for ResNet-50)")
    check_throughput(samples_per_s)
    return forward_macs_per_sample * FLOPS_PER_MAC * (TRAIN_FACTOR if train else 1) * samples_per_s


def check_throughput(samples_per_s: float) -> None:
    if not 0 < samples_per_s < math.inf:
        raise RooflineError(f"throughput must be a positive number of samples/s, got {samples_per_s:g} "
                            "(e.g. --throughput 1325)")


def from_macs(forward_macs_per_sample: float, samples_per_s: float, chips: list[Hardware], precision: Precision,
              train: bool) -> Requirement:
    """The 3x rule alone, for MACs counted elsewhere (thop, a paper), on each chip."""
    required = rule_flops_per_s(forward_macs_per_sample, samples_per_s, train)
    rows = tuple(ChipRequirement(hw.id, hw.matrix_peak(precision), required / hw.matrix_peak(precision))
                 for hw in chips)
    return Requirement(precision.name, train, samples_per_s, forward_macs_per_sample, required, rows)


def forward_macs_per_sample(step: CapturedStep, precision: Precision) -> float:
    """Model FLOPs of the forward's matmul, conv and attention ops / 2, per sample."""
    flops = sum(cost.useful_flops for node, cost in zip(step.nodes, step_costs(step, precision))
                if node.phase == "forward" and cost.op_class in MATRIX_CLASSES)
    return flops / FLOPS_PER_MAC / step.batch


def traced_flops_per_sample(step: CapturedStep, precision: Precision) -> float:
    """Model FLOPs of every op of the forward, loss and backward (all ops, not only matmuls), per sample."""
    flops = sum(cost.useful_flops for node, cost in zip(step.nodes, step_costs(step, precision))
                if node.phase in TRACED_PHASES)
    return flops / step.batch


def from_step(step: CapturedStep, samples_per_s: float, chips: list[Hardware], precision: Precision) -> Requirement:
    """Both counts for a captured step, and our prediction of it on each chip at its batch."""
    train = step.mode == "train"
    macs = forward_macs_per_sample(step, precision)
    if macs == 0:
        raise RooflineError(f"{step.model_name} has no matmul, convolution or attention in its forward, so the 3x "
                            "rule has no MACs to count; use `roofline estimate` for it")
    required = rule_flops_per_s(macs, samples_per_s, train)
    traced_per_sample = traced_flops_per_sample(step, precision)
    traced = traced_per_sample * samples_per_s
    rows = []
    for hw in chips:
        peak = hw.matrix_peak(precision)
        totals = evaluate(step, hw, precision).totals()
        predicted = totals["throughput_samples_per_s"]
        rows.append(ChipRequirement(hw.id, peak, required / peak, traced / peak, totals["utilization"], predicted,
                                    math.ceil(samples_per_s / predicted)))
    return Requirement(precision.name, train, samples_per_s, macs, required, tuple(rows), step.model_name,
                       step.batch, traced_per_sample, traced)
