"""Precisions: which peak each op class runs at and how many bytes a floating tensor takes.

  fp32      everything in fp32; GEMMs on the fp32 matrix rate (the vector rate on GPUs).
  tf32      fp32 storage; matmul, conv and attention on the TF32 tensor-core rate.
  fp16/bf16 everything stored and computed in half precision ("pure" half).
  amp-fp16/amp-bf16  autocast: matmul, conv and attention in half on the tensor cores;
            activations and elementwise ops stored in half; norms, softmax, losses and
            reductions in fp32 (autocast's fp32 list), except batch norm, which autocast leaves
            in half (cuDNN's half-in, half-out kernel); fp32 master weights, gradients and
            optimizer state, which the optimizer step reads and writes in fp32.
  fp8       matmul/conv/attention inputs in fp8 on the fp8 tensor-core rate, everything else
            in bf16 (the Transformer-Engine recipe).

Example:
    >>> PRECISIONS["amp-bf16"].float_bytes("norm")
    4
"""
from __future__ import annotations

from dataclasses import dataclass

from .costs import MATRIX_CLASSES
from .errors import PrecisionError, did_you_mean

FP32_CLASSES_UNDER_AMP = ("norm", "softmax", "loss", "reduction", "optimizer")
# batch norm is not on autocast's fp32 list: cuDNN runs it on half inputs and outputs (fp32
# statistics and affine parameters), so under amp its activations stay half
HALF_NORMS_UNDER_AMP = ("native_batch_norm", "native_batch_norm_backward", "_native_batch_norm_legit",
                        "_native_batch_norm_legit_functional", "_native_batch_norm_legit_no_training",
                        "cudnn_batch_norm", "cudnn_batch_norm_backward", "miopen_batch_norm",
                        "miopen_batch_norm_backward", "batch_norm_backward")


@dataclass(frozen=True)
class Precision:
    name: str
    matrix_key: str  # peak key of the matrix unit
    vector_key: str  # peak key of the vector unit (falls back to fp32 where the chip lists none)
    matrix_bytes: int  # element size of floating tensors of matmul / conv / attention ops
    other_bytes: int  # element size of floating tensors of every other op
    amp: bool = False

    def float_bytes(self, op_class: str, op_name: str = "") -> int:
        """Element size of the floating tensors of an op of `op_class` (aten packet `op_name`)."""
        if op_class in MATRIX_CLASSES:
            return self.matrix_bytes
        if self.amp and op_class in FP32_CLASSES_UNDER_AMP and op_name not in HALF_NORMS_UNDER_AMP:
            return 4
        return self.other_bytes


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", "fp32", "fp32", 4, 4),
    Precision("tf32", "tf32", "fp32", 4, 4),
    Precision("fp16", "fp16", "fp16", 2, 2),
    Precision("bf16", "bf16", "bf16", 2, 2),
    Precision("amp-fp16", "fp16", "fp16", 2, 2, amp=True),
    Precision("amp-bf16", "bf16", "bf16", 2, 2, amp=True),
    Precision("fp8", "fp8", "bf16", 1, 2, amp=True),
)}


def get_precision(name: str) -> Precision:
    try:
        return PRECISIONS[name]
    except KeyError:
        raise PrecisionError(f"unknown precision {name!r}{did_you_mean(name, list(PRECISIONS))}; "
                             f"expected one of {', '.join(PRECISIONS)}") from None
