"""Softmax and log-softmax, forward and backward, per element of the input.

softmax: max 1, subtract 1, exp 1, sum 1, divide 1 = 5; log_softmax: max, subtract, exp, sum,
subtract log-sum = 5. Backward of softmax: g*y 1, row sum 1, subtract 1, multiply 1 = 4;
of log_softmax: exp(y) 1, row sum 1, multiply-subtract 2 = 4.
"""
from __future__ import annotations

from ..costs import Cost, cost_rule, read_write


@cost_rule("_softmax", "_log_softmax", "_safe_softmax", "softmax", "log_softmax", op_class="softmax")
def softmax(node, nbytes):
    return Cost(5 * node.inputs[0].numel, *read_write(node, nbytes), "softmax")


@cost_rule("_softmax_backward_data", "_log_softmax_backward_data", op_class="softmax")
def softmax_backward(node, nbytes):
    return Cost(4 * node.inputs[0].numel, *read_write(node, nbytes), "softmax")
