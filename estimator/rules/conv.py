"""Convolutions, forward and backward (any spatial rank, groups, transposed).

Forward: every output element is (C_in / groups) * prod(kernel) MACs. For a transposed
convolution the roles swap: every *input* element scatters into C_out / groups * prod(kernel)
outputs. The weight tensor already holds the per-group channel count, so with
w = (C_out, C_in/g, *k) (or (C_in, C_out/g, *k) transposed):
    FLOPs = 2 * N * prod(spatial) * w[0] * w[1] * prod(k),
spatial = output spatial dims (input dims when transposed). A bias adds N*C_out*prod(out).
"""
from __future__ import annotations

import math

from ..costs import Cost, cost_rule, read_write


def conv_flops(x_shape, w_shape, out_shape, transposed: bool) -> int:
    n = x_shape[0]
    spatial = (x_shape if transposed else out_shape)[2:]
    c0, c1, *kernel = w_shape
    return 2 * n * math.prod(spatial) * c0 * c1 * math.prod(kernel)


@cost_rule("convolution", "_convolution", "conv2d", "conv1d", "conv3d", "cudnn_convolution",
           "mkldnn_convolution", op_class="conv")
def convolution(node, nbytes):
    x, w = node.inputs[0], node.inputs[1]
    out = node.outputs[0]
    transposed = bool(node.args[6]) if node.op.__name__.startswith(("convolution", "_convolution")) else False
    flops = conv_flops(x.shape, w.shape, out.shape, transposed)
    if len(node.inputs) > 2:  # bias
        flops += out.numel
    return Cost(flops, *read_write(node, nbytes), "conv")


@cost_rule("convolution_backward", op_class="conv")
def convolution_backward(node, nbytes):
    # output_mask = (grad_input, grad_weight, grad_bias): only the gradients asked for run.
    # grad_input is a (transposed) conv of grad_out with w, grad_weight a conv of x with
    # grad_out: each costs exactly the forward conv's FLOPs. grad_bias sums grad_out.
    grad_out, x, w = node.inputs[:3]
    transposed, mask = bool(node.args[7]), node.args[10]
    fwd = conv_flops(x.shape, w.shape, grad_out.shape, transposed)
    flops = fwd * (int(bool(mask[0])) + int(bool(mask[1]))) + (grad_out.numel if mask[2] else 0)
    read = nbytes(grad_out) + (nbytes(w) if mask[0] else 0) + (nbytes(x) if mask[1] else 0)
    written = sum(nbytes(t) for t in node.outputs)
    return Cost(flops, read, written, "conv")
