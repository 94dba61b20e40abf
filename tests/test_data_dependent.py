"""Ops that depend on tensor values (estimator.data_dependent) and mixture-of-experts routing
(estimator.moe_routing): documented assumptions or one clear message, never a traceback."""
from __future__ import annotations

import pytest
import torch
import transformers as T
from torch import nn

import estimator  # noqa: F401  (registers the cost rules)
from estimator.capture import capture
from estimator.errors import CaptureError
from estimator.model_source import hf_model
from estimator.moe_routing import expert_loads
from estimator.precision import PRECISIONS
from estimator.roofline import step_costs


class _Checks(nn.Module):
    """Branches on values: an all() check that must pass and an any() search that finds nothing."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        y = self.proj(x)
        if not torch.isfinite(y).all():  # reads True: the step goes on
            raise ValueError("non-finite")
        if (y > 1e9).any():  # reads False: no extra layer
            y = self.proj(y)
        return y


def _ops(step) -> list[str]:
    return [n.op.overloadpacket.__name__ for n in step.nodes]


def test_boolean_checks_read_as_ordinary_data():
    step = capture(_Checks(), (torch.randn(4, 8),), mode="inference")
    assert _ops(step).count("addmm") == 1


class _Gather(nn.Module):
    def forward(self, x):
        return x[x > 0].sum()


class _Count(nn.Module):
    def forward(self, x):
        return x.new_zeros(int(x.sum().item()))


class _Nonzero(nn.Module):
    def forward(self, x):
        return x[torch.nonzero(x > 0)[:, 0]]


def test_mask_selection_is_an_upper_bound_and_other_sizes_stop_clearly():
    step = capture(_Gather(), (torch.randn(4, 8),), mode="inference")
    selected = next(n for n in step.nodes if n.op.overloadpacket is torch.ops.aten.index)
    assert selected.outputs[0].shape == (32,)  # every element selected
    with pytest.raises(CaptureError, match=r"reads a tensor's value back to Python \(aten._local_scalar_dense"):
        capture(_Count(), (torch.randn(4, 8),), mode="inference")
    with pytest.raises(CaptureError, match="calls aten.nonzero, whose output size depends on tensor values"):
        capture(_Nonzero(), (torch.randn(4, 8),), mode="inference")


def test_expert_loads_balanced_and_skewed():
    assert expert_loads(12, 4) == [3, 3, 3, 3]
    assert expert_loads(10, 4) == [3, 3, 2, 2]
    assert expert_loads(12, 4, skew=2.0) == [6, 2, 2, 2]
    assert expert_loads(40, 4, skew=4.0, tokens=20) == [20, 7, 7, 6]  # at most every token once
    for pairs, experts, skew in ((7, 3, 1.0), (100, 8, 3.0), (64, 64, 1.5)):
        assert sum(expert_loads(pairs, experts, skew)) == pairs
    with pytest.raises(CaptureError, match="--moe-skew must be at least 1"):
        expert_loads(4, 2, skew=0.5)


def _matmul_flops(step) -> int:
    return sum(c.flops for c in step_costs(step, PRECISIONS["fp32"]) if c.op_class == "matmul")


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_every_experts_implementation_does_the_same_products(mode):
    """grouped_mm, batched_mm and the eager loop (balanced or skewed) multiply each (token,
    expert) pair once: the same matmul FLOPs, from three different op sequences."""
    config = T.MixtralConfig(num_hidden_layers=1, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                             num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, vocab_size=128)
    flops, ops = {}, {}
    for implementation, skew in (("grouped_mm", 1.0), ("batched_mm", 1.0), ("eager", 1.0), ("eager", 3.0)):
        config._experts_implementation = implementation
        model, inputs, _ = hf_model(config, "MixtralForCausalLM", batch=2, seq=24)
        step = capture(model, inputs, mode=mode, optimizer=None, moe_skew=skew)
        flops[implementation, skew], ops[implementation, skew] = _matmul_flops(step), set(_ops(step))
    assert len(set(flops.values())) == 1, flops
    assert "_grouped_mm" in ops["grouped_mm", 1.0] and "_grouped_mm" not in ops["eager", 1.0]
    assert "nonzero" not in ops["eager", 1.0]  # the loop's sizes come from the routing assumption


def test_grouped_mm_flops_for_each_layout():
    from estimator.costs import rule_for
    from estimator.capture import OpNode
    from estimator.tensor_meta import TensorMeta

    aten = torch.ops.aten

    def cost(a, b, out):
        metas = [TensorMeta.of(torch.empty(s, device="meta")) for s in (a, b)]
        node = OpNode(aten._grouped_mm.default, "forward", "", "", tuple(metas), {}, tuple(metas),
                      (TensorMeta.of(torch.empty(out, device="meta")),))
        return rule_for(node).fn(node, lambda m: m.numel * 4).flops

    assert cost((10, 6), (4, 6, 5), (10, 5)) == 2 * 10 * 6 * 5  # tokens x experts' weights
    assert cost((4, 10, 6), (4, 6, 5), (4, 10, 5)) == 2 * 4 * 10 * 6 * 5  # batched
    assert cost((6, 10), (10, 5), (4, 6, 5)) == 2 * 6 * 10 * 5  # weight gradient: offs split the 10
