"""Memory per GPU of a training step split by a layout (estimator.parallel_layout).

From the single-GPU step's memory at its peak (estimator.memory.step_memory, one micro-batch:
each kind's bytes live at that moment), for the busiest GPU, the first pipeline stage:

  parameters, half weight copies   / tp, / pp (the stage's blocks, plus the larger of the
                                   embeddings of the first stage and the head of the last), expert
                                   parameters / ep; / dp under zero3 and fsdp, plus the two
                                   units FSDP holds gathered at a time (its rate limiter)
  gradients                        the same, / dp under zero2, zero3 and fsdp
  optimizer state                  the same, / dp under zero1-3 and fsdp
  activations and temporaries      / tp for the tensor-parallel part (everything with sp; the
                                   rest, the norms and residuals, whole without it), / pp, x the
                                   micro-batches in flight on the first stage (min(pp, m), 1F1B)
  buffers and inputs               whole

Example:
    >>> m = cluster_memory(step, PRECISIONS["amp-bf16"], parse_layout("fsdp", 8), structure, 80e9, 0.1)
    >>> m["peak_bytes"] / 2**30, m["fits"]
"""
from __future__ import annotations

from .capture import CapturedStep
from .memory import step_memory
from .model_structure import ModelStructure
from .parallel_layout import Layout
from .precision import Precision


def cluster_memory(step: CapturedStep, precision: Precision, layout: Layout, structure: ModelStructure,
                   capacity_bytes: int, replicated_share: float = 0.0) -> dict:
    """Bytes per GPU by kind, their sum `peak_bytes` and whether it `fits` (module doc).
    `replicated_share`: the part of the activations that tensor parallel does not split (without sp)."""
    key = ("memory", precision.name, step.optimizer, step.accumulate)  # one walk of the graph per step
    if key not in step.extra:
        step.extra[key] = step_memory(step, precision, optimizer=step.optimizer)
    single = step.extra[key]
    total = max(1, structure.trainable_elements)
    blocks = sum(b.trainable_elements for b in structure.blocks)
    expert = structure.expert_trainable_elements
    # the busiest stage's share of the trainable parameters: its blocks and, with pp, the larger
    # of the first stage's embeddings and the last stage's head (without pp, both)
    head = structure.head_trainable_elements
    outside = structure.other_trainable_elements
    if layout.pp > 1:
        outside = max(outside - head, head)
    stage = (blocks / layout.pp + outside) / total
    stage -= (expert / layout.pp / total) * (1 - 1 / layout.ep)
    per_gpu = stage / layout.tp
    dp = layout.dp

    def state(nbytes: int, sharded: bool) -> int:
        return round(nbytes * per_gpu / (dp if sharded else 1))

    gathered = 0
    if layout.shards_parameters and dp > 1 and structure.blocks:
        largest = sorted((b.trainable_elements for b in structure.blocks), reverse=True)[:2]
        gathered = round(sum(largest) / layout.tp * single.parameters_bytes / total * (1 - 1 / dp))
    in_flight = min(layout.pp, step.accumulate) if layout.pp > 1 else 1
    split = 1 / layout.tp if layout.sp else replicated_share + (1 - replicated_share) / layout.tp
    activation_scale = split / layout.pp * in_flight
    at_peak = single.peak_breakdown  # each kind at the single-GPU step's peak
    parts = {
        "parameters_bytes": state(at_peak["parameters"], layout.shards_parameters) + gathered,
        "weight_copies_bytes": state(at_peak["weight_copies"], layout.shards_parameters),
        "gradients_bytes": state(at_peak["gradients"], layout.shards_gradients),
        "optimizer_bytes": state(single.optimizer_bytes, layout.shards_optimizer),
        "activations_bytes": round(at_peak["activations"] * activation_scale),
        "temporaries_bytes": round(at_peak["temporaries"] * split),
        "buffers_and_inputs_bytes": at_peak["buffers"] + at_peak["inputs"],
    }
    peak = sum(parts.values())
    return {**parts, "peak_bytes": peak, "capacity_bytes": capacity_bytes, "fits": peak <= capacity_bytes,
            "micro_batches_in_flight": in_flight}
