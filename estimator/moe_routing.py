"""Mixture-of-experts layers of transformers under a routing assumption.

transformers (5.x) runs its experts one of three ways, chosen by ``config._experts_implementation``:
``grouped_mm`` (the default where torch has it) and ``batched_mm`` do work whose shapes do not
depend on the routing (every (token, expert) pair once), so they are captured as they are. The
``eager`` loop visits each expert with the tokens routed to it, found by ``nonzero``: sizes a
shape-only capture cannot know. Capture replaces that loop by the same loop with each expert's
token count set by the routing assumption:

  * balanced (``skew`` 1, the default): each of the E experts gets T*k/E of the T*k
    (token, expert) pairs (rounded, the remainder to the first experts);
  * skewed (``skew`` s > 1): the busiest expert gets s times the mean, at most every token once
    (T), and the others share the rest evenly. A top-k router sends a token to k different
    experts, so no expert can get more than T pairs.

The per-expert work is what eager runs: gather the expert's tokens, its gate/up and down
projections (F.linear), the activation, the routing-weight product and an index_add into the
output. Only experts classes made by transformers' ``use_experts_implementation`` (they carry
``has_gate``, ``has_bias``, ``is_transposed``) are replaced; other data-dependent MoE code stops
with a clear message (estimator.data_dependent).

Example:
    >>> expert_loads(pairs=12, experts=4, skew=1.0)
    [3, 3, 3, 3]
    >>> expert_loads(pairs=12, experts=4, skew=2.0)
    [6, 2, 2, 2]
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from .errors import CaptureError


def expert_loads(pairs: int, experts: int, skew: float = 1.0, tokens: int | None = None) -> list[int]:
    """(token, expert) pairs per expert under the assumption of the module doc."""
    if skew < 1:
        raise CaptureError(f"--moe-skew must be at least 1 (1 = balanced routing; 2 = the busiest expert gets twice "
                           f"the mean), got {skew}")
    if experts == 1:
        return [pairs]
    if skew == 1:
        share, extra = divmod(pairs, experts)
        return [share + (i < extra) for i in range(experts)]
    hot = min(round(skew * pairs / experts), pairs, tokens if tokens is not None else pairs)
    rest, extra = divmod(pairs - hot, experts - 1)
    return [hot] + [rest + (i < extra) for i in range(experts - 1)]


def _is_transformers_experts(module: nn.Module) -> bool:
    config = getattr(module, "config", None)
    return (getattr(config, "_experts_implementation", None) in ("eager", None) and hasattr(module, "has_gate")
            and hasattr(module, "num_experts") and hasattr(module, "down_proj"))


@contextlib.contextmanager
def routed_experts(model: nn.Module, skew: float = 1.0):
    """Within the block, transformers' eager experts loops run under the routing assumption."""
    expert_loads(2, 2, skew)  # checks skew before anything runs
    replaced = [m for m in model.modules() if _is_transformers_experts(m)]
    for module in replaced:
        module.forward = _loop_forward(module, skew)
    try:
        yield
    finally:
        for module in replaced:
            del module.forward  # the class's own forward again


def _loop_forward(module: nn.Module, skew: float):
    def forward(hidden_states, top_k_index, top_k_weights):
        return _experts_loop(module, hidden_states, top_k_index, top_k_weights, skew)
    return forward


def _linear(module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x, weight.transpose(0, 1) if module.is_transposed else weight, bias)


def _experts_loop(module, hidden_states, top_k_index, top_k_weights, skew: float) -> torch.Tensor:
    tokens, top_k = top_k_index.shape
    final = torch.zeros_like(hidden_states)
    with torch.no_grad():  # eager's routing bookkeeping: one-hot mask and the experts hit
        mask = F.one_hot(top_k_index, num_classes=module.num_experts + 1).permute(2, 1, 0)
        torch.greater(mask.sum(dim=(-1, -2)), 0)
    up = module.gate_up_proj if module.has_gate else module.up_proj
    up_bias = (module.gate_up_proj_bias if module.has_gate else module.up_proj_bias) if module.has_bias else None
    for expert, rows in enumerate(expert_loads(tokens * top_k, module.num_experts, skew, tokens)):
        if rows == 0:
            continue
        token_idx = torch.zeros(rows, dtype=torch.long, device=hidden_states.device)  # stands in for where()
        top_k_pos = torch.zeros(rows, dtype=torch.long, device=hidden_states.device)
        state = hidden_states[token_idx]
        out = _linear(module, state, up[expert], up_bias[expert] if up_bias is not None else None)
        out = module._apply_gate(out) if module.has_gate else module.act_fn(out)
        down_bias = module.down_proj_bias[expert] if module.has_bias else None
        out = _linear(module, out, module.down_proj[expert], down_bias)
        if module.has_post_expert_norm:
            out = module.post_expert_norm(out)
        out = out * top_k_weights[token_idx, top_k_pos, None]
        final.index_add_(0, token_idx, out.to(final.dtype))
    return final
