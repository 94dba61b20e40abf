"""Reductions: one FLOP per input element read (a sum, max, mean...); variance-like
reductions (var, std, norms) three (subtract, square, add). Cumulative scans: one per element."""
from __future__ import annotations

import math

from ..costs import Cost, cost_rule, read_write


def _reduction(flops_per_element: int):
    def rule(node, nbytes):
        return Cost(flops_per_element * node.inputs[0].numel, *read_write(node, nbytes), "reduction")
    rule.__name__ = f"reduction_{flops_per_element}_flops"
    return rule


cost_rule("sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "prod", "any", "all",
          "_is_all_true", "_is_any_true", "cumsum", "cumsum_", "cumprod", "cummax", "cummin", "_cummax_helper",
          "_cummin_helper", "logsumexp", "aminmax", "nansum", "count_nonzero", "topk", "sort",
          op_class="reduction")(_reduction(1))
cost_rule("var", "std", "var_mean", "std_mean", "linalg_vector_norm", "norm", "_euclidean_dist", "cdist",
          op_class="reduction")(_reduction(3))


@cost_rule("histc", "bincount", op_class="reduction")
def histogram(node, nbytes):
    # each element: its bin (one multiply-add from min and bin width) and one increment
    return Cost(2 * node.inputs[0].numel, *read_write(node, nbytes), "reduction")


@cost_rule("isin", op_class="reduction")
def isin(node, nbytes):
    # torch compares every element with every test element when the test set is small (fewer
    # than 10 x n^0.145 of them, ATen's isin_default), else sorts both: (n + m) log2(n + m)
    elements, test = (t.numel for t in node.inputs[:2]) if len(node.inputs) > 1 else (node.inputs[0].numel, 1)
    if test < 10 * elements ** 0.145:
        return Cost(elements * test, *read_write(node, nbytes), "reduction")
    total = elements + test
    return Cost(int(total * math.log2(max(total, 2))), *read_write(node, nbytes), "reduction")
