"""Pooling. Windowed pools: one FLOP (compare or add) per input element a window covers, per
output, plus one divide per output for averages. Windows are clipped to the input: taps that
fall on padding or past the edge (a window larger than its input, ceil_mode) do no work, so a
7x7 average over a 4x4 input costs 16 adds, not 49. Adaptive average pools read each input
once: one add per input element, one divide per output. Backward: max pool scatters one add
per output gradient; avg pool spreads each output gradient over its covered window.

Example: avg_pool2d over (1, 8, 4, 4) with kernel 7, ceil_mode: 8 x 16 adds + 8 divides."""
from __future__ import annotations

import math

from ..costs import Cost, cost_rule, read_write


def _per_dim(value, dims: int, default) -> list[int]:
    if value is None or (isinstance(value, (list, tuple)) and not value):
        value = default
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return [int(v) for v in (values * dims if len(values) == 1 else values)]


def covered_taps(in_shape, out_shape, kernel, stride=None, padding=0, dilation=1) -> int:
    """Window taps that land on input elements, summed over every output (batch and channels
    included): per spatial dim, for output j and tap t, position j*stride - padding + t*dilation
    inside [0, n); dims multiply (the window is a box)."""
    dims = len(kernel) if isinstance(kernel, (list, tuple)) else 2
    k = _per_dim(kernel, dims, kernel)
    s = _per_dim(stride, dims, k)
    p = _per_dim(padding, dims, 0)
    d = _per_dim(dilation, dims, 1)
    taps = 1
    for i in range(dims):
        n, o = in_shape[-dims + i], out_shape[-dims + i]
        taps *= sum(1 for j in range(o) for t in range(k[i]) if 0 <= j * s[i] - p[i] + t * d[i] < n)
    return math.prod(out_shape[:-dims]) * taps


def _arg(node, i, default=None):
    return node.args[i] if len(node.args) > i else default


@cost_rule("max_pool2d_with_indices", "max_pool3d_with_indices", "max_pool1d", "max_pool2d", "max_pool3d",
           op_class="pooling")
def max_pool(node, nbytes):
    # max_pool*(self, kernel_size, stride, padding, dilation, ceil_mode)
    taps = covered_taps(node.inputs[0].shape, node.outputs[0].shape, node.args[1], _arg(node, 2), _arg(node, 3, 0),
                        _arg(node, 4, 1))
    return Cost(taps, *read_write(node, nbytes), "pooling")


@cost_rule("avg_pool1d", "avg_pool2d", "avg_pool3d", op_class="pooling")
def avg_pool(node, nbytes):
    # avg_pool*(self, kernel_size, stride, padding, ceil_mode, ...)
    taps = covered_taps(node.inputs[0].shape, node.outputs[0].shape, node.args[1], _arg(node, 2), _arg(node, 3, 0))
    return Cost(taps + node.outputs[0].numel, *read_write(node, nbytes), "pooling")


@cost_rule("max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward", op_class="pooling")
def max_pool_backward(node, nbytes):
    return Cost(node.inputs[0].numel, *read_write(node, nbytes), "pooling")


@cost_rule("avg_pool2d_backward", "avg_pool3d_backward", op_class="pooling")
def avg_pool_backward(node, nbytes):
    # avg_pool*_backward(grad_output, self, kernel_size, stride, padding, ...): each output
    # gradient is divided once and added into its covered window
    taps = covered_taps(node.inputs[1].shape, node.inputs[0].shape, node.args[2], _arg(node, 3), _arg(node, 4, 0))
    return Cost(taps + node.inputs[0].numel, *read_write(node, nbytes), "pooling")


@cost_rule("_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_avg_pool1d", "adaptive_max_pool2d",
           "adaptive_max_pool3d", op_class="pooling")
def adaptive_pool(node, nbytes):
    return Cost(node.inputs[0].numel + node.outputs[0].numel, *read_write(node, nbytes), "pooling")


@cost_rule("_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward", "adaptive_max_pool2d_backward",
           "adaptive_max_pool3d_backward", op_class="pooling")
def adaptive_pool_backward(node, nbytes):
    return Cost(node.outputs[0].numel, *read_write(node, nbytes), "pooling")
