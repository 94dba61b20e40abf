"""Pooling. Windowed pools: one FLOP (compare or add) per window element per output, plus one
divide per output for averages. Adaptive average pools read each input once: one add per input
element, one divide per output. Backward: max pool scatters one add per output gradient; avg
pool spreads each output gradient over its window."""
from __future__ import annotations

import math

from ..costs import Cost, cost_rule, read_write


def _window(kernel) -> int:
    return math.prod(kernel) if isinstance(kernel, (list, tuple)) else int(kernel) ** 2


@cost_rule("max_pool2d_with_indices", "max_pool3d_with_indices", "max_pool1d", "max_pool2d", "max_pool3d",
           op_class="pooling")
def max_pool(node, nbytes):
    return Cost(node.outputs[0].numel * _window(node.args[1]), *read_write(node, nbytes), "pooling")


@cost_rule("avg_pool1d", "avg_pool2d", "avg_pool3d", op_class="pooling")
def avg_pool(node, nbytes):
    return Cost(node.outputs[0].numel * (_window(node.args[1]) + 1), *read_write(node, nbytes), "pooling")


@cost_rule("max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward", op_class="pooling")
def max_pool_backward(node, nbytes):
    return Cost(node.inputs[0].numel, *read_write(node, nbytes), "pooling")


@cost_rule("avg_pool2d_backward", "avg_pool3d_backward", op_class="pooling")
def avg_pool_backward(node, nbytes):
    # avg_pool*_backward(grad_output, self, kernel_size, ...): each output gradient is
    # divided once and added into its window
    return Cost(node.inputs[0].numel * (_window(node.args[2]) + 1), *read_write(node, nbytes), "pooling")


@cost_rule("_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_avg_pool1d", "adaptive_max_pool2d",
           "adaptive_max_pool3d", op_class="pooling")
def adaptive_pool(node, nbytes):
    return Cost(node.inputs[0].numel + node.outputs[0].numel, *read_write(node, nbytes), "pooling")


@cost_rule("_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward", "adaptive_max_pool2d_backward",
           "adaptive_max_pool3d_backward", op_class="pooling")
def adaptive_pool_backward(node, nbytes):
    return Cost(node.outputs[0].numel, *read_write(node, nbytes), "pooling")
