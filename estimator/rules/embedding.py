"""Embedding lookups (a gather: no FLOPs, traffic = indices + the rows read + the output) and
their backward (a scatter-add of every output-gradient row into a zeroed weight gradient)."""
from __future__ import annotations

from ..costs import Cost, cost_rule


@cost_rule("embedding", op_class="embedding")
def embedding(node, nbytes):
    indices, out = node.inputs[1], node.outputs[0]
    # only the looked-up rows are read, not the whole table
    return Cost(0, nbytes(indices) + nbytes(out), nbytes(out), "embedding")


@cost_rule("embedding_dense_backward", "embedding_backward", op_class="embedding")
def embedding_backward(node, nbytes):
    grad, indices = node.inputs[0], node.inputs[1]
    weight_grad = node.outputs[0]
    # zero the (num_weights, d) gradient, then one add per gradient element
    return Cost(grad.numel, nbytes(grad) + nbytes(indices), 2 * nbytes(weight_grad), "embedding")
