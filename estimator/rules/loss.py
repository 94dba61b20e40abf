"""Losses. cross_entropy reaches dispatch as _log_softmax + nll_loss (softmax rules cost the
first). nll_loss gathers one log-probability per sample and averages: 2 FLOPs per sample;
its backward writes a zeroed (N, C) gradient with one scaled entry per sample.
Elementwise losses (MSE, L1, BCE...) cost a few FLOPs per element and a mean."""
from __future__ import annotations

from ..costs import Cost, cost_rule, read_write


@cost_rule("nll_loss_forward", "nll_loss2d_forward", "nll_loss", "nll_loss_nd", op_class="loss")
def nll_loss(node, nbytes):
    target = node.inputs[1]
    return Cost(2 * target.numel, *read_write(node, nbytes), "loss")


@cost_rule("nll_loss_backward", "nll_loss2d_backward", op_class="loss")
def nll_loss_backward(node, nbytes):
    target = node.args[2]
    return Cost(2 * target.numel, *read_write(node, nbytes), "loss")


def _elementwise_loss(flops_per_element: int):
    def rule(node, nbytes):
        return Cost(flops_per_element * node.inputs[0].numel, *read_write(node, nbytes), "loss")
    rule.__name__ = f"loss_{flops_per_element}_flops"
    return rule


# mse: subtract, square, add = 3; l1: subtract, abs, add = 3; smooth-l1/huber: about 5;
# bce: two logs, two multiplies, add = 6; bce with logits adds a log-sigmoid: 8
cost_rule("mse_loss", "l1_loss", "mse_loss_backward", op_class="loss")(_elementwise_loss(3))
cost_rule("smooth_l1_loss", "huber_loss", "smooth_l1_loss_backward", "huber_loss_backward",
          op_class="loss")(_elementwise_loss(5))
cost_rule("binary_cross_entropy", "binary_cross_entropy_backward", op_class="loss")(_elementwise_loss(6))
cost_rule("binary_cross_entropy_with_logits", op_class="loss")(_elementwise_loss(8))
