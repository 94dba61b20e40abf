"""Matrix products. A (m, k) @ (k, n) product is m*k*n MACs = 2mkn FLOPs; a fused bias
(addmm, baddbmm, addmv) adds one FLOP per output element."""
from __future__ import annotations

import torch

from ..costs import Cost, cost_rule, read_write

_aten = torch.ops.aten


@cost_rule("mm", "_int_mm", op_class="matmul")
def mm(node, nbytes):
    (m, k), (_, n) = node.inputs[0].shape, node.inputs[1].shape
    return Cost(2 * m * k * n, *read_write(node, nbytes), "matmul")


@cost_rule("addmm", "addmm_", op_class="matmul")
def addmm(node, nbytes):
    # addmm(bias, a[m,k], b[k,n]): 2mkn for the product + mn for the bias add
    (m, k), (_, n) = node.inputs[1].shape, node.inputs[2].shape
    return Cost(2 * m * k * n + m * n, *read_write(node, nbytes), "matmul")


@cost_rule("bmm", op_class="matmul")
def bmm(node, nbytes):
    (b, m, k), (_, _, n) = node.inputs[0].shape, node.inputs[1].shape
    return Cost(2 * b * m * k * n, *read_write(node, nbytes), "matmul")


@cost_rule("baddbmm", "baddbmm_", op_class="matmul")
def baddbmm(node, nbytes):
    # baddbmm(bias, a[b,m,k], c[b,k,n]): 2bmkn + bmn for the bias add
    (b, m, k), (_, _, n) = node.inputs[1].shape, node.inputs[2].shape
    return Cost(2 * b * m * k * n + b * m * n, *read_write(node, nbytes), "matmul")


@cost_rule("mv", "dot", "vdot", op_class="matmul")
def mv_dot(node, nbytes):
    # (m, k) @ (k,) or (k,) . (k,): one MAC per element of the first operand
    return Cost(2 * node.inputs[0].numel, *read_write(node, nbytes), "matmul")


@cost_rule("addmv", "addmv_", op_class="matmul")
def addmv(node, nbytes):
    m, k = node.inputs[1].shape
    return Cost(2 * m * k + m, *read_write(node, nbytes), "matmul")


@cost_rule("_scaled_mm", op_class="matmul")
def scaled_mm(node, nbytes):
    # fp8 GEMM with scales: (m, k) @ (k, n), plus one scale multiply per output
    (m, k), (_, n) = node.inputs[0].shape, node.inputs[1].shape
    return Cost(2 * m * k * n + m * n, *read_write(node, nbytes), "matmul")


@cost_rule("_grouped_mm", op_class="matmul")
def grouped_mm(node, nbytes):
    # Mixture-of-experts GEMMs: G products over groups of rows given by `offs`. Every output
    # element contracts a's last dimension, except 2-D x 2-D (the weight gradient) where `offs`
    # splits the contraction itself, so each of the G outputs sums over its group only.
    # The FLOPs do not depend on how `offs` splits the rows (the routing):
    #   (M,K) x (G,K,N) -> (M,N): 2MKN;  (G,M,K) x (G,K,N) -> (G,M,N): 2GMKN;
    #   (M,K_total) x (K_total,N) -> (G,M,N): 2*M*K_total*N.
    a, b, out = node.inputs[0], node.inputs[1], node.outputs[0]
    groups = out.shape[0] if len(a.shape) == 2 and len(b.shape) == 2 else 1
    return Cost(2 * out.numel * a.shape[-1] // groups, *read_write(node, nbytes), "matmul")


@cost_rule("linalg_solve_triangular", "triangular_solve", op_class="matmul")
def triangular_solve(node, nbytes):
    # A (n, n) triangular, B (n, k): substitution does n(n+1)/2 multiply-adds per right-hand
    # column, about n^2 k FLOPs, per batch element. linalg_solve_triangular(A, B); the older
    # triangular_solve(B, A) takes them the other way round
    a, b = (node.inputs[0], node.inputs[1]) if node.op.overloadpacket is _aten.linalg_solve_triangular \
        else (node.inputs[1], node.inputs[0])
    n, k = a.shape[-1], b.shape[-1]
    batch = b.numel // (b.shape[-2] * k)
    return Cost(batch * n * n * k, *read_write(node, nbytes), "matmul")
