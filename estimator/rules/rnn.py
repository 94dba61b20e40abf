"""Recurrent layers run as fused kernels: oneDNN's mkldnn_rnn_layer per layer and direction on a
CPU (as nn.LSTM captures), cuDNN's one call per stack on a GPU (roofline::rnn, see
estimator.fused_rnn; nn.GRU and nn.RNN on a CPU run step by step, as their ops). FLOPs from the formula: every time step of
every sequence multiplies its input (I) and previous hidden state (H) by the gate weights (G
rows: 4H for an LSTM, 3H for a GRU): 2 G (I + H) per step and sequence, plus the gates'
elementwise work, about 3 G + 3 H (bias adds, activations, the cell update). The backward
computes the input, hidden and weight gradients: twice the forward. Bytes: the op's tensors,
read and written once (weights are read once per layer call, not per step).

Example: an LSTM layer, I 16, H 32, 10 steps of batch 4: 2 x 40 x 128 x 48 = 491,520 GEMM FLOPs.
"""
from __future__ import annotations

import torch

from .. import fused_rnn  # noqa: F401  (defines torch.ops.roofline.rnn / rnn_backward)
from ..costs import RULES, Cost, RegisteredRule, cost_rule, read_write


def _rnn_flops(x, w_ih, w_hh) -> int:
    steps = x.numel // x.shape[-1]  # time steps x sequences
    gates, inputs = w_ih.shape
    hidden = w_hh.shape[1]
    return steps * (2 * gates * (inputs + hidden) + 3 * gates + 3 * hidden)


@cost_rule("mkldnn_rnn_layer", op_class="matmul")
def rnn_layer(node, nbytes):
    x, w_ih, w_hh = node.inputs[:3]
    return Cost(_rnn_flops(x, w_ih, w_hh), *read_write(node, nbytes), "matmul")


@cost_rule("mkldnn_rnn_layer_backward", op_class="matmul")
def rnn_layer_backward(node, nbytes):
    x, w_ih, w_hh = node.inputs[:3]
    return Cost(2 * _rnn_flops(x, w_ih, w_hh), *read_write(node, nbytes), "matmul")


def _stack_flops(node) -> int:
    """Every layer and direction of a roofline::rnn stack: (w_ih, w_hh[, b_ih, b_hh]) per one."""
    x, weights = node.args[0], node.args[1]
    per_cell = 4 if node.args[5 if node.op.overloadpacket is torch.ops.roofline.rnn else 6] else 2
    steps = x.numel // x.shape[-1]
    return sum(steps * (2 * w_ih.shape[0] * (w_ih.shape[1] + w_hh.shape[1]) + 3 * w_ih.shape[0] + 3 * w_hh.shape[1])
               for w_ih, w_hh in zip(weights[::per_cell], weights[1::per_cell]))


def rnn_stack(node, nbytes):
    return Cost(_stack_flops(node), *read_write(node, nbytes), "matmul")


def rnn_stack_backward(node, nbytes):
    return Cost(2 * _stack_flops(node), *read_write(node, nbytes), "matmul")


RULES[torch.ops.roofline.rnn] = RegisteredRule(rnn_stack, "matmul")
RULES[torch.ops.roofline.rnn_backward] = RegisteredRule(rnn_stack_backward, "matmul")
