"""Recurrent layers run as one fused kernel per layer and direction (oneDNN's mkldnn_rnn_layer on
CPU, as nn.LSTM captures; cuDNN's RNN on a GPU). FLOPs from the formula: every time step of
every sequence multiplies its input (I) and previous hidden state (H) by the gate weights (G
rows: 4H for an LSTM, 3H for a GRU): 2 G (I + H) per step and sequence, plus the gates'
elementwise work, about 3 G + 3 H (bias adds, activations, the cell update). The backward
computes the input, hidden and weight gradients: twice the forward. Bytes: the op's tensors,
read and written once (weights are read once per layer call, not per step).

Example: an LSTM layer, I 16, H 32, 10 steps of batch 4: 2 x 40 x 128 x 48 = 491,520 GEMM FLOPs.
"""
from __future__ import annotations

from ..costs import Cost, cost_rule, read_write


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
