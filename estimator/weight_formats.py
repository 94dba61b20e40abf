"""Weight-only quantisation and KV-cache formats of a served decoder, costed as kernels run them.

Weight-only formats (W8A16 / W4A16 kernels such as Marlin, AWQ's and TensorRT-LLM's): the matmul
streams its weight in the stored format and dequantises it in registers, then multiplies at the
activation precision. So a weight read by a matmul moves `weight_bytes` per element (int4: half
a byte plus one 16-bit scale per group of 128, as AWQ and GPTQ store them; int8 and fp8: one
byte plus a scale per output channel, negligible), and the multiply is unchanged. Weights no
matmul reads (embeddings, norms) stay at the precision's size. fp8 needs a chip that lists fp8
matrix peaks (its conversion instructions); int8 and int4 dequantise on any chip.

KV-cache formats: the attention of a decode step reads the cache's keys and values at
`kv_bytes` per element (fp8 and int8 one byte, as vLLM's kv_cache_dtype and TensorRT-LLM store
them); "auto" keeps the precision's size.

Example:
    >>> costs = served_costs(step, PRECISIONS["bf16"], weights="int4", kv="fp8")
    >>> weight_bytes(step, PRECISIONS["bf16"], "int4") / 2**30
"""
from __future__ import annotations

import dataclasses

from .capture import CapturedStep
from .costs import Cost
from .errors import PrecisionError
from .execution import weight_reads
from .hardware import Hardware
from .precision import Precision
from .roofline import step_costs

INT4_GROUP = 128  # elements per 16-bit scale (AWQ / GPTQ default group size)
WEIGHT_BYTES = {"int8": 1.0, "fp8": 1.0, "int4": 0.5 + 2 / INT4_GROUP}
WEIGHT_FORMATS = ("auto", *WEIGHT_BYTES)
KV_BYTES = {"fp8": 1.0, "int8": 1.0}
KV_FORMATS = ("auto", *KV_BYTES)


def check_formats(hardware: Hardware, weights: str, kv: str) -> None:
    """A PrecisionError for a format the chip cannot run (module doc)."""
    for option, value, names in (("--weights", weights, WEIGHT_FORMATS), ("--kv-cache", kv, KV_FORMATS)):
        if value not in names:
            raise PrecisionError(f"{option} {value!r}: expected one of {', '.join(names)}")
    if "fp8" in (weights, kv) and "fp8" not in hardware.matrix_flops_per_s:
        raise PrecisionError(f"{hardware.id} lists no fp8 matrix peak, so it has no fp8 conversion to dequantise "
                             "with (Hopper, Ada, Blackwell and MI300 do); use int8 or int4")


def served_costs(step: CapturedStep, precision: Precision, weights: str = "auto", kv: str = "auto") -> tuple[Cost, ...]:
    """The step's costs with the weights and the KV cache in their served formats (module doc)."""
    costs = list(step_costs(step, precision))
    if weights != "auto":
        saved = precision.matrix_bytes - WEIGHT_BYTES[weights]
        for i, reads in weight_reads(step).items():
            less = round(sum(source.meta["tensor_meta"].numel for source in reads) * saved)
            costs[i] = dataclasses.replace(costs[i], bytes_read=max(0, costs[i].bytes_read - less))
    if kv != "auto":
        saved = precision.matrix_bytes - KV_BYTES[kv]
        for i, node in enumerate(step.nodes):
            if costs[i].op_class == "attention" and node.phase == "forward" and len(node.inputs) >= 3:
                cached = node.inputs[1].numel + node.inputs[2].numel  # keys and values the attention reads
                costs[i] = dataclasses.replace(costs[i], bytes_read=max(0, costs[i].bytes_read - round(cached * saved)))
    return tuple(costs)


def weight_bytes(step: CapturedStep, precision: Precision, weights: str = "auto") -> float:
    """Bytes of the parameters as served: matmul weights in `weights`, the rest at the precision."""
    distinct = {source for reads in weight_reads(step).values() for source in reads}
    quantised = sum(source.meta["tensor_meta"].numel for source in distinct)
    size = WEIGHT_BYTES.get(weights, precision.matrix_bytes)
    return quantised * size + (step.parameters - quantised) * precision.other_bytes
