"""Device time of one kernel on an accelerator, by kind of kernel, from how GPUs run them.

  * GEMMs (matmul, and convolutions as implicit GEMMs, forward, input gradient and weight
    gradient each one GEMM): the output is cut into tiles, one tile per SM at a time; the
    library picks the tile shape (the family's `gemm.tiles`) that finishes first. Time =
    waves x one tile's time, where waves = ceil(tiles / SMs) (wave quantization), tiles
    cover ceil(M / tile_m) x ceil(N / tile_n) (tile quantization), one tile runs at
    peak x efficiency x tile_rate / SMs and pays k_half extra steps of its K loop (pipeline
    fill and epilogue). When the tiles cannot fill the SMs, K is split (split-K) across them.
    A matmul thinner than the smallest tile (M or N < 64: a decode step's few rows) may also run
    on 16-wide tiles (SKINNY_TILE); convolutions keep cuDNN's tiles.
    The GEMM is also bounded by its bytes at the copy bandwidth.
  * Fused attention (flash / memory-efficient SDPA): FLOPs at the family's attention fraction.
  * Everything else is bandwidth-bound or vector-compute-bound: bytes at the DRAM bandwidth x
    the family's fraction for that kind of kernel (elementwise, batch_norm, norm, softmax,
    reduction, pooling, embedding, depthwise_conv, optimizer, copy), falling off for small
    kernels as bytes / (bytes + bandwidth_half_bytes); FLOPs at the vector peak x the chip's
    `achievable.vector`.
  * Every kernel adds the family's kernel floor (its launch latency and ramp on the device).
Precisions as PyTorch runs them by default: at fp32 on chips with TF32 tensor cores,
convolutions run on TF32 (torch.backends.cudnn.allow_tf32 defaults to True) while matmuls stay
fp32 (torch.backends.cuda.matmul.allow_tf32 defaults to False).

Example:
    >>> t = kernel_time(node, cost, load_hardware("a100-80gb-sxm"), PRECISIONS["amp-bf16"], family)
    >>> t.compute_s, t.memory_s, t.floor_s
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from .capture import OpNode
from .costs import Cost
from .gpu_family import Family, load_shapes
from .hardware import Hardware
from .precision import Precision

GEMM_OPS = {"mm", "_int_mm", "addmm", "addmm_", "bmm", "baddbmm", "baddbmm_", "_scaled_mm", "mv", "addmv", "dot"}
TRANSPOSE_KERNEL = "cudnn_layout_transpose"  # Cost.kernel of the copies layout_transpose_bytes counts
SPLIT_K_MIN = 256  # shortest K slice split-K leaves to one tile (cuBLAS heuristics; estimate)
# the rows of the tensor cores' smallest MMA (PTX ISA, warp-level mma.sync shapes m16n8k16; AMD's MFMA
# 16x16): a GEMM with fewer rows (or columns) than the family's smallest tile, a decode step's, runs
# on tiles this thin (CUTLASS's and Marlin's small-M kernels, cuBLASLt's small-M heuristics)
SKINNY_TILE = 16
BANDWIDTH_KIND = {"elementwise": "elementwise", "memory": "copy", "unsupported": "copy", "softmax": "softmax",
                  "reduction": "reduction", "loss": "reduction", "pooling": "pooling", "embedding": "embedding",
                  "optimizer": "optimizer", "norm": "norm", "fused": "elementwise", "mixed": "elementwise"}


@dataclass(frozen=True, slots=True)
class KernelTime:
    compute_s: float
    memory_s: float
    floor_s: float  # the kernel's fixed cost on the device (launch latency, ramp and tail), added to its work
    roofline_s: float  # datasheet bound: max(FLOPs / peak, bytes / bandwidth)
    tf32_conv: bool = False  # an fp32 convolution that cuDNN runs on TF32


def convolutions_on_tf32(hardware: Hardware, precision: Precision) -> bool:
    """PyTorch's default at fp32: cuDNN runs convolutions on TF32 where the chip has it
    (torch.backends.cudnn.allow_tf32 = True); matmuls stay fp32 (cuda.matmul.allow_tf32 = False)."""
    return precision.name == "fp32" and hardware.kind != "cpu" and "tf32" in hardware.matrix_flops_per_s


def gemm_dims(node: OpNode) -> list[tuple[int, int, int, int]]:
    """(batch, M, N, K) of each GEMM the op runs; [] when it is not a GEMM-shaped op."""
    name = node.op.overloadpacket.__name__
    shapes = [t.shape for t in node.inputs]
    if name in ("mm", "_int_mm", "_scaled_mm"):
        (m, k), (_, n) = shapes[0], shapes[1]
        return [(1, m, n, k)]
    if name in ("addmm", "addmm_"):
        (m, k), (_, n) = shapes[1], shapes[2]
        return [(1, m, n, k)]
    if name == "bmm":
        (b, m, k), (_, _, n) = shapes[0], shapes[1]
        if node.inputs[1].distinct * b == node.inputs[1].numel:  # one weight broadcast over the batch:
            return [(1, b * m, n, k)]  # one GEMM over the stacked rows, as at::matmul folds it
        return [(b, m, n, k)]
    if name in ("baddbmm", "baddbmm_"):
        (b, m, k), (_, _, n) = shapes[1], shapes[2]
        return [(b, m, n, k)]
    if name in ("mv", "addmv"):
        m, k = shapes[-2]
        return [(1, m, 1, k)]
    if name == "convolution":
        return _conv_forward_dims(node)
    if name == "convolution_backward":
        return _conv_backward_dims(node)
    return []


def _conv_forward_dims(node: OpNode):
    w, out, groups = node.args[1], node.outputs[0], node.args[8]
    # implicit GEMM: M = batch x output pixels, N = output channels, K = input channels x window
    return [(groups, out.shape[0] * math.prod(out.shape[2:]), w.shape[0] // groups, w.shape[1] * math.prod(w.shape[2:]))]


def _conv_backward_dims(node: OpNode):
    grad_out, x, w = node.args[0], node.args[1], node.args[2]
    groups, mask = node.args[9], node.args[10]
    window, c_out, c_in = math.prod(w.shape[2:]), w.shape[0] // groups, w.shape[1]
    dims = []
    if mask[0]:  # input gradient: M = batch x input pixels, N = input channels, K = output channels x window
        dims.append((groups, x.shape[0] * math.prod(x.shape[2:]), c_in, c_out * window))
    if mask[1]:  # weight gradient: M = output channels, N = input channels x window, K = batch x output pixels
        dims.append((groups, c_out, c_in * window, grad_out.shape[0] * math.prod(grad_out.shape[2:])))
    return dims


def is_depthwise(node: OpNode) -> bool:
    name = node.op.overloadpacket.__name__
    weight_at, groups_at = {"convolution": (1, 8), "convolution_backward": (2, 9)}.get(name, (None, None))
    return weight_at is not None and node.args[groups_at] > 1 and node.args[weight_at].shape[1] == 1


def sharded_dims(dims: list[tuple[int, int, int, int]], shard: int) -> list[tuple[int, int, int, int]]:
    """Each GEMM (batch, M, N, K) with its largest dimension split `shard` ways (rounded up): the
    FLOPs divide exactly; which dimension a tensor-parallel layer splits (N of a column-parallel,
    K of a row-parallel weight) changes only the tile rounding, which the largest one keeps least."""
    if shard == 1:
        return dims
    out = []
    for dim in dims:
        big = max(range(4), key=lambda i: dim[i])
        out.append(tuple(-(-v // shard) if i == big else v for i, v in enumerate(dim)))
    return out


def gemm_time_s(dims, flops_per_s: float, family: Family, sm_count: int, skinny: bool = False) -> float:
    """Time of the GEMMs `dims` at `flops_per_s` (already scaled by the large-GEMM efficiency):
    the best tile shape, with tile and wave quantization and split-K (module docstring);
    `skinny`: a matmul library kernel, which has thin tiles for few rows (SKINNY_TILE)."""
    total = 0.0
    smallest, k_half = family.smallest_tile_side, family.k_half
    for batch, m, n, k in dims:
        if m * n * k == 0:
            continue
        best = math.inf
        shapes = family.tile_rates
        if skinny and min(m, n) < smallest:  # thin tiles at the smallest tile's rate (SKINNY_TILE)
            rate = min(r for _, _, r in shapes)
            shapes = shapes + ((SKINNY_TILE, smallest, rate), (smallest, SKINNY_TILE, rate))
        for tm, tn, rate in shapes:
            tiles = batch * -(-m // tm) * -(-n // tn)
            split = max(1, min(sm_count // tiles, k // SPLIT_K_MIN)) if tiles < sm_count else 1
            tile_s = 2 * tm * tn * (k / split + k_half) * sm_count / (flops_per_s * rate)
            waves_s = -(-tiles * split // sm_count) * tile_s
            if waves_s < best:
                best = waves_s
        total += best
    return total


def kernel_time(node: OpNode, cost: Cost, hardware: Hardware, precision: Precision, family: Family,
                in_graph: bool = False, fused: bool = False, shard: int = 1,
                signature: KernelShape | None = None) -> KernelTime:
    """Device time of the kernel that runs `node` (module docstring); `in_graph`: replayed in a CUDA
    graph; `fused`: a compiler's kernel of several ops starting at `node`, costed by `cost` alone;
    `shard`: one GPU's part of a GEMM split `shard` ways (`cost` is already that part), its
    largest dimension divided (sharded_dims). `signature`: the node's kernel_signature, when known."""
    signature = signature or kernel_signature(node)
    floor = family.graph_kernel_s if in_graph else family.kernel_floor_s
    bandwidth = hardware.memory_bytes_per_s
    op_class, nbytes = cost.op_class, cost.bytes
    tf32_conv = op_class == "conv" and convolutions_on_tf32(hardware, precision)
    if op_class in ("matmul", "conv", "attention") and (fused or not signature.depthwise):
        key = "tf32" if tf32_conv else precision.matrix_key
        peak = hardware.matrix_flops_per_s[key] if tf32_conv else hardware.matrix_peak(precision)
        roofline = max(cost.flops / peak, nbytes / bandwidth)
        memory_s = nbytes / (bandwidth * bandwidth_fraction(hardware, family, "copy"))
        if op_class == "attention":
            fraction = family.attention_backward if signature.phase == "backward" else family.attention_forward
            return KernelTime(cost.flops / (peak * fraction), memory_s, floor, roofline)
        efficiency = gemm_efficiency(hardware, family, key) * (family.conv_efficiency if op_class == "conv" else 1.0)
        dims = () if fused else sharded_dims(signature.dims, shard)
        compute_s = (gemm_time_s(dims, peak * efficiency, family, hardware.sm_count, op_class == "matmul") if dims
                     else cost.flops / (peak * efficiency))
        return KernelTime(compute_s, memory_s, floor, roofline, tf32_conv)
    kind = bandwidth_kind(cost)
    vector = hardware.vector_peak(precision)
    large = bandwidth_fraction(hardware, family, kind)
    # the shape slows the streaming (bytes / shape), not the fixed ramp of a small kernel (half_bytes)
    shape = min(1.0 / large, shape_factor(signature, cost, precision, kind, large * bandwidth))
    fraction = large * nbytes / (nbytes / shape + family.bandwidth_half_bytes) if nbytes else 1.0
    return KernelTime(cost.flops / (vector * hardware.achievable.vector), nbytes / (bandwidth * fraction), floor,
                      max(cost.flops / vector, nbytes / bandwidth))


class Activation(NamedTuple):
    shape: tuple[int, ...]
    channels_last: bool


class KernelShape(NamedTuple):
    """Everything kernel_time reads from an op node: two nodes with equal shapes and equal costs
    take equal times on any chip (estimator.execution times each distinct pair once)."""
    name: str  # the aten op's name
    phase: str
    dims: tuple[tuple[int, int, int, int], ...]  # gemm_dims
    depthwise: bool
    activation: Activation | None  # the op's activation (_activation): shape and layout


def kernel_signature(node: OpNode) -> KernelShape:
    """The node's KernelShape. Example: a 3x3 convolution's has one GEMM in `dims`."""
    x = _activation(node)
    return KernelShape(node.op.overloadpacket.__name__, node.phase, tuple(gemm_dims(node)), is_depthwise(node),
                       None if x is None else Activation(x.shape, x.channels_last))


def _activation(node: OpNode):
    """The op's first 4-D floating input (its activation), else its first floating input, else None."""
    first = None
    for t in node.inputs:
        if t.is_float:
            if len(t.shape) == 4:
                return t
            first = first or t
    return first


def shape_factor(signature: KernelShape, cost: Cost, precision: Precision, kind: str, large_bytes_per_s: float) -> float:
    """Multiplier on a kind's large-kernel fraction from the shape and layout of the op's tensors
    (its kernel_signature; families.yaml kernel_shapes; module docstring). `large_bytes_per_s`: the kind's large-kernel
    rate on this chip, which the per-channel law of NCHW batch norm is capped by."""
    shapes = load_shapes()
    if cost.kernel == TRANSPOSE_KERNEL:
        return shapes.transpose_ratio
    x = signature.activation
    if x is None:
        return 1.0
    half = precision.float_bytes(cost.op_class, signature.name) == 2
    backward = signature.phase == "backward"
    if kind == "batch_norm" and len(x.shape) == 4 and not x.channels_last:
        rate = shapes.batch_norm_channel_gbps[f"{'half' if half else 'fp32'}_{'backward' if backward else 'forward'}"]
        return min(shapes.batch_norm_nchw_ratio, x.shape[1] * rate * 1e9 / large_bytes_per_s)
    if cost.op_class == "norm" and cost.kernel.endswith(".eval"):  # inference batch norm (elementwise kind)
        ratio = shapes.batch_norm_eval_ratio["half" if half else "fp32"]
        if len(x.shape) == 4 and not x.channels_last:
            ratio *= min(1.0, x.shape[2] * x.shape[3] / shapes.batch_norm_eval_plane)
        return ratio
    if kind == "norm":
        if backward:
            return shapes.norm_backward_ratio
        row = x.shape[-1] if x.shape else 1
        return row / (row + shapes.norm_row_half)
    if kind == "depthwise_conv":
        factor = shapes.depthwise_backward_ratio if backward else 1.0
        return factor * (shapes.depthwise_channels_last_ratio if x.channels_last else 1.0)
    return 1.0


def layout_transpose_bytes(node: OpNode, cost: Cost, precision: Precision) -> int:
    """Bytes of the NCHW <-> NHWC copies cuDNN makes around a 16-bit convolution (forward or
    backward) with a spatial kernel on NCHW tensors: each activation read and written once more
    (2 x the op's activation bytes); 0 for other ops, channels_last tensors, 1x1 kernels and depthwise
    convolutions. GPUs only: a CPU has no cuDNN (estimator.execution does not ask)."""
    if cost.op_class != "conv" or precision.matrix_bytes != 2 or is_depthwise(node):
        return 0
    name = node.op.overloadpacket.__name__
    weight_at = {"convolution": 1, "convolution_backward": 2}.get(name)
    if weight_at is None:
        return 0
    weight = node.inputs[weight_at] if len(node.inputs) > weight_at else None
    x = _activation(node)
    if weight is None or x is None or x.channels_last or len(weight.shape) != 4 or weight.shape[2] * weight.shape[3] == 1:
        return 0
    tensors = [t for i, t in enumerate(node.inputs) if i != weight_at] + list(node.outputs)
    activations = [t for t in tensors if t.is_float and len(t.shape) == 4 and t.shape != weight.shape]
    return 2 * precision.matrix_bytes * sum(t.numel for t in activations)


def gemm_efficiency(hardware: Hardware, family: Family, key: str) -> float:
    """Large-GEMM fraction of the peak at precision key `key`. fp32 GEMMs run on the CUDA cores at
    the family's measured SGEMM fraction (a chip's `achievable.vector` is its elementwise vector
    fraction, not an SGEMM one). The chip's own measured large 16-bit GEMM fraction
    (`achievable.matrix`) comes first for the tensor-core precisions, which scale it by the
    family's ratio of that precision to its 16-bit one."""
    measured = hardware.achievable
    if key == "fp32":
        return family.gemm_fraction("fp32")
    if measured.matrix < 1:
        half = hardware.half_matrix_key or "fp16"
        return min(1.0, measured.matrix * family.gemm_fraction(key) / family.gemm_fraction(half))
    return family.gemm_fraction(key)


def bandwidth_fraction(hardware: Hardware, family: Family, kind: str) -> float:
    """Large-kernel fraction of the DRAM bandwidth for a kind of kernel: the chip's measured
    STREAM fraction (`achievable.memory`) times the family's ratio of that kind to a copy."""
    measured = hardware.achievable.memory
    if measured < 1:
        return min(1.0, measured * family.bandwidth[kind] / family.bandwidth["copy"])
    return family.bandwidth[kind]


def bandwidth_kind(cost: Cost) -> str:
    """Which bandwidth fraction a non-GEMM kernel follows (a convolution here is a depthwise one)."""
    if cost.op_class == "conv":
        return "depthwise_conv"
    if cost.op_class == "norm" and cost.kernel.startswith(("native_batch_norm", "batch_norm", "cudnn_batch_norm")):
        return "elementwise" if cost.kernel.endswith(".eval") else "batch_norm"
    return BANDWIDTH_KIND.get(cost.op_class, "copy")
