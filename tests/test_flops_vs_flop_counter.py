"""Differential tests: our matmul, conv and attention FLOPs against torch.utils.flop_counter.

FlopCounterMode is an independent count of the same aten ops. Where the two conventions
differ, the expected value says so explicitly:

  * our addmm/baddbmm add one FLOP per output element for the fused bias, and a biased
    convolution one per output element; FlopCounterMode counts the products only;
  * our convolution_backward adds grad_out.numel for the bias gradient (a sum over grad_out);
  * FlopCounterMode has no formula for the CPU fused attention kernel (it counts 0);
  * FlopCounterMode's convolution_backward ignores `groups` for the weight gradient.

Every expected number is a formula in the test's own dimensions.
"""
from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.func import functional_call
from torch.nn import functional as F
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map_only
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

import estimator  # noqa: F401  (registers the cost rules)
import roofline_zoo
from estimator.capture import DefaultLoss, OpNode, capture
from estimator.costs import rule_for
from estimator.precision import PRECISIONS
from estimator.roofline import step_costs
from estimator.tensor_meta import TensorMeta

aten = torch.ops.aten
MATMUL_CONV_OPS = (aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.convolution, aten.convolution_backward)
CPU_ATTENTION_OPS = (aten._scaled_dot_product_flash_attention_for_cpu,
                     aten._scaled_dot_product_flash_attention_for_cpu_backward)
PHASES = ("forward", "backward")
FAST = settings(max_examples=25, deadline=None)


# --------------------------------------------------------------------------------------------
# The two sides: FlopCounterMode on our own fake-tensor run, and our captured step.

class _BiasAdds(TorchDispatchMode):
    """The FLOPs our rules count on top of FlopCounterMode's products, per op, from the shapes."""

    def __init__(self):
        super().__init__()
        self.flops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = func.overloadpacket
        if op in (aten.addmm, aten.baddbmm):  # the fused bias: one add per output element
            self.flops[op] += out.numel()
        elif op is aten.convolution and args[2] is not None:  # the bias: one add per output element
            self.flops[op] += out.numel()
        elif op is aten.convolution_backward and args[10][2]:  # grad_bias sums grad_out
            self.flops[op] += args[0].numel()
        return out


@dataclass
class Reference:
    counts: dict  # phase -> {op packet: FlopCounterMode FLOPs}
    bias_adds: dict  # phase -> {op packet: the FLOPs our bias convention adds}


def flop_counter_reference(model: nn.Module, inputs: tuple) -> Reference:
    """FlopCounterMode around the forward and, separately, around autograd.grad(loss, params),
    on fake CPU tensors (parameters swapped in with functional_call, as capture does)."""
    fake = lambda t, grad=False: torch.empty_strided(t.shape, t.stride(), dtype=t.dtype,  # noqa: E731
                                                     device="cpu").requires_grad_(grad)
    counts, bias_adds = {}, {}
    model.train()
    with FakeTensorMode(allow_non_fake_inputs=True):
        params = {n: fake(p, p.requires_grad) for n, p in model.named_parameters()}
        buffers = {n: fake(b) for n, b in model.named_buffers()}
        args = tree_map_only(torch.Tensor, fake, inputs)
        with FlopCounterMode(display=False) as counter, _BiasAdds() as extra:
            output = functional_call(model, {**params, **buffers}, args)
        counts["forward"], bias_adds["forward"] = counter.get_flop_counts()["Global"], extra.flops
        loss = DefaultLoss()(output)  # the loss capture uses; outside both counters
        with FlopCounterMode(display=False) as counter, _BiasAdds() as extra:
            torch.autograd.grad(loss, [p for p in params.values() if p.requires_grad], allow_unused=True)
        counts["backward"], bias_adds["backward"] = counter.get_flop_counts()["Global"], extra.flops
    return Reference(counts, bias_adds)


def our_flops(step, op_classes: tuple[str, ...]) -> dict:
    """{(phase, op packet): executed FLOPs} and {phase: FLOPs} over nodes of `op_classes`."""
    by_op, by_phase = Counter(), Counter()
    for node, cost in zip(step.nodes, step_costs(step, PRECISIONS["fp32"])):
        if cost.op_class in op_classes:
            by_op[node.phase, node.op.overloadpacket] += cost.flops
            by_phase[node.phase] += cost.flops
    return {"by_op": by_op, "by_phase": by_phase}


def our_useful_flops(step, op_class: str) -> Counter:
    """{phase: model FLOPs} over nodes of `op_class` (causal attention counts its unmasked pairs)."""
    by_phase = Counter()
    for node, cost in zip(step.nodes, step_costs(step, PRECISIONS["fp32"])):
        if cost.op_class == op_class:
            by_phase[node.phase] += cost.useful_flops
    return by_phase


# --------------------------------------------------------------------------------------------
# 1. Whole models: matmul + conv FLOPs per phase against FlopCounterMode.

def _hf(cls_name: str, config):
    import transformers
    with torch.device("meta"):
        return getattr(transformers, cls_name)(config)


def _hf_bert():
    # attention dropout (0.1) sends sdpa down the unfused math path: its bmm products are compared too
    from transformers import BertConfig
    return _hf("BertModel", BertConfig(num_hidden_layers=2, attn_implementation="sdpa")), \
        (torch.randint(0, 1000, (2, 128)),)


def _hf_llama():
    from transformers import LlamaConfig
    config = LlamaConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=512, vocab_size=1000, attn_implementation="sdpa")
    return _hf("LlamaForCausalLM", config), (torch.randint(0, 1000, (2, 128)),)


def _hf_vit():
    from transformers import ViTConfig
    return _hf("ViTForImageClassification", ViTConfig(num_hidden_layers=2, attn_implementation="sdpa")), \
        (torch.randn(2, 3, 224, 224),)


MODELS = {
    "resnet50": lambda: roofline_zoo.get("resnet50").build(batch=2),
    "vit_b_16": lambda: roofline_zoo.get("vit_b_16").build(batch=2),
    "gpt2": lambda: roofline_zoo.get("gpt2").build(batch=2, seq=128),
    "hf_bert": _hf_bert,
    "hf_llama": _hf_llama,
    "hf_vit": _hf_vit,
}


@functools.cache
def _model_run(name: str):
    """(model, captured train step, FlopCounterMode reference), once per model."""
    model, inputs = MODELS[name]()
    step = capture(model, inputs, mode="train")
    return model, step, flop_counter_reference(model, inputs)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", MODELS)
def test_model_matmul_conv_flops_match_flop_counter(name, phase):
    _, step, ref = _model_run(name)
    ours = our_flops(step, ("matmul", "conv"))
    assert {op for ph, op in ours["by_op"] if ph == phase} <= set(MATMUL_CONV_OPS)
    assert any(ref.counts[phase].get(op) for op in MATMUL_CONV_OPS)  # the comparison is not vacuous
    for op in MATMUL_CONV_OPS:  # exact, per op
        # FlopCounterMode counts the products; ours adds the bias adds (see _BiasAdds)
        expected = ref.counts[phase].get(op, 0) + ref.bias_adds[phase].get(op, 0)
        assert ours["by_op"][phase, op] == expected, f"{name} {phase} {op}"
    # and the phase total to the required 0.1%
    expected_total = sum(ref.counts[phase].get(op, 0) + ref.bias_adds[phase].get(op, 0) for op in MATMUL_CONV_OPS)
    assert ours["by_phase"][phase] == pytest.approx(expected_total, rel=1e-3)


# --------------------------------------------------------------------------------------------
# 2. Fused attention. The CPU kernel: FlopCounterMode counts 0; ours follows the docstring of
# estimator/rules/attention.py. The CUDA kernels: ours against FlopCounterMode's formulas.

@dataclass(frozen=True)
class AttentionDims:
    layers: int
    batch: int
    heads: int  # query heads
    seq: int
    head_dim: int
    causal: bool


def _attention_dims(name: str, model) -> AttentionDims:
    if name == "gpt2":
        c = model.cfg
        return AttentionDims(c.layers, 2, c.heads, 128, c.dim // c.heads, causal=True)
    if name == "vit_b_16":  # (224/16)^2 patches + the class token
        c = model.cfg
        return AttentionDims(c.layers, 2, c.heads, (c.image_size // c.patch_size) ** 2 + 1, c.dim // c.heads, False)
    c = model.config
    if name == "hf_llama":
        return AttentionDims(c.num_hidden_layers, 2, c.num_attention_heads, 128,
                             c.hidden_size // c.num_attention_heads, causal=True)
    if name == "hf_vit":
        return AttentionDims(c.num_hidden_layers, 2, c.num_attention_heads, (c.image_size // c.patch_size) ** 2 + 1,
                             c.hidden_size // c.num_attention_heads, causal=False)
    raise KeyError(name)


FUSED_ATTENTION_MODELS = ("gpt2", "vit_b_16", "hf_llama", "hf_vit")


@pytest.mark.parametrize("name", FUSED_ATTENTION_MODELS)
def test_flop_counter_counts_nothing_for_cpu_fused_attention(name):
    _, step, ref = _model_run(name)
    for op in CPU_ATTENTION_OPS:
        assert op not in flop_counter.flop_registry
        assert any(node.op.overloadpacket is op for node in step.nodes)  # the kernel did run
        for phase in PHASES:
            assert ref.counts[phase].get(op, 0) == 0


@pytest.mark.parametrize("name", FUSED_ATTENTION_MODELS)
def test_cpu_fused_attention_flops_match_formula(name):
    model, step, _ = _model_run(name)
    dims = _attention_dims(name, model)
    b, h, s, d = dims.batch, dims.heads, dims.seq, dims.head_dim
    per_score = {"forward": d + d,  # QK^T + PV: d + d_v MACs per (query, key) pair
                 "backward": 3 * d + 2 * d}  # recomputed QK^T, dV, dP, dQ, dK
    # causal: query i attends keys 0..i, the lower triangle of s*(s+1)/2 pairs
    pairs = s * (s + 1) // 2 if dims.causal else s * s
    flops = our_flops(step, ("attention",))
    useful = our_useful_flops(step, "attention")
    for phase in PHASES:
        assert sum(n.op.overloadpacket in CPU_ATTENTION_OPS and n.phase == phase for n in step.nodes) == dims.layers
        assert flops["by_phase"][phase] == dims.layers * 2 * b * h * s * s * per_score[phase]
        assert useful[phase] == dims.layers * 2 * b * h * pairs * per_score[phase]


def _op_node(op, phase: str, *args):
    """Run `op` on meta tensors (its meta kernel gives the outputs) and describe it as capture does."""
    out = op(*args)
    metas = lambda x: tuple(TensorMeta.of(t) for t in tree_leaves(x) if isinstance(t, torch.Tensor))  # noqa: E731
    node = OpNode(op, phase, "attn", "Attention", tree_map_only(torch.Tensor, TensorMeta.of, args), {},
                  metas(args), metas(out))
    return node, out


def _flash(q, k, v, causal):
    fwd, (o, lse, cq, ck, mq, mk, rng, unused, _) = _op_node(
        aten._scaled_dot_product_flash_attention.default, "forward", q, k, v, 0.0, causal)
    bwd, _ = _op_node(aten._scaled_dot_product_flash_attention_backward.default, "backward",
                      torch.empty_like(o), q, k, v, o, lse, cq, ck, mq, mk, 0.0, causal, rng, unused)
    return fwd, bwd


def _efficient(q, k, v, causal):
    fwd, (o, lse, seed, offset) = _op_node(
        aten._scaled_dot_product_efficient_attention.default, "forward", q, k, v, None, True, 0.0, causal)
    bwd, _ = _op_node(aten._scaled_dot_product_efficient_attention_backward.default, "backward",
                      torch.empty_like(o), q, k, v, torch.empty(0, device="meta"), o, lse, seed, offset, 0.0,
                      [True, True, True, False], causal)
    return fwd, bwd


def _cudnn(q, k, v, causal):
    fwd, (o, lse, cq, ck, mq, mk, seed, offset, _) = _op_node(
        aten._scaled_dot_product_cudnn_attention.default, "forward", q, k, v, None, True, 0.0, causal)
    bwd, _ = _op_node(aten._scaled_dot_product_cudnn_attention_backward.default, "backward",
                      torch.empty_like(o), q, k, v, o, lse, seed, offset, torch.empty(0, device="meta"),
                      cq, ck, mq, mk, 0.0, causal)
    return fwd, bwd


# (b, h, s_q, s_k, d, d_v); the flash kernel needs d_v == d
ATTENTION_SHAPES = [(2, 4, 16, 16, 8, 8), (1, 3, 5, 7, 16, 16), (2, 2, 9, 4, 32, 32), (1, 1, 1, 12, 8, 8)]
ATTENTION_SHAPES_DV = ATTENTION_SHAPES + [(2, 2, 6, 10, 8, 24)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel, shapes", [(_flash, ATTENTION_SHAPES), (_efficient, ATTENTION_SHAPES_DV),
                                            (_cudnn, ATTENTION_SHAPES_DV)], ids=["flash", "efficient", "cudnn"])
def test_cuda_sdpa_rules_match_flop_counter_formulas(kernel, shapes, causal):
    nbytes = lambda meta: meta.distinct * 4  # noqa: E731  (FLOPs do not depend on it)
    for b, h, s_q, s_k, d, d_v in shapes:
        q, k, v = (torch.empty(b, h, s, e, device="meta") for s, e in ((s_q, d), (s_k, d), (s_k, d_v)))
        fwd, bwd = kernel(q, k, v, causal)
        fwd_cost, bwd_cost = rule_for(fwd).fn(fwd, nbytes), rule_for(bwd).fn(bwd, nbytes)
        assert rule_for(fwd).op_class == rule_for(bwd).op_class == "attention"
        # executed FLOPs: FlopCounterMode's formulas (which ignore the causal mask, as kernels do)
        assert fwd_cost.flops == sdpa_flop_count(q.shape, k.shape, v.shape)
        assert bwd_cost.flops == sdpa_backward_flop_count((b, h, s_q, d_v), q.shape, k.shape, v.shape)
        # model FLOPs: only the (query, key) pairs of torch's is_causal mask tril(ones(s_q, s_k))
        pairs = int(torch.ones(s_q, s_k).tril().sum()) if causal else s_q * s_k
        assert fwd_cost.useful_flops == 2 * b * h * pairs * (d + d_v)
        assert bwd_cost.useful_flops == 2 * b * h * pairs * (3 * d + 2 * d_v)
        assert (fwd_cost.model_flops is None) == (bwd_cost.model_flops is None) == (not causal)


@pytest.mark.parametrize("s_q, s_k", [(4, 16), (16, 16), (16, 4)])
@pytest.mark.parametrize("mask_type", [1, 2], ids=["top-left", "bottom-right"])
def test_efficient_kernel_causal_alignment(s_q, s_k, mask_type):
    # _efficient_attention_forward's custom_mask_type 1 aligns the causal mask top-left
    # (tril(ones(s_q, s_k))), 2 bottom-right (tril(..., diagonal=s_k - s_q)); layout (b, s, h, d)
    b, h, d = 1, 2, 8
    q, k, v = (torch.empty(b, s, h, d, device="meta") for s in (s_q, s_k, s_k))
    node, _ = _op_node(aten._efficient_attention_forward.default, "forward", q, k, v, None, None, None,
                       s_q, s_k, 0.0, mask_type)
    cost = rule_for(node).fn(node, lambda meta: meta.distinct * 4)
    pairs = int(torch.ones(s_q, s_k).tril(diagonal=s_k - s_q if mask_type == 2 else 0).sum())
    assert cost.flops == 2 * b * h * s_q * s_k * 2 * d
    assert cost.model_flops == 2 * b * h * pairs * 2 * d


# --------------------------------------------------------------------------------------------
# 3. Depthwise convolution: FlopCounterMode's grad_weight ignores `groups`.

class _GatedConv(nn.Module):
    """conv(x * gate): the scalar gate parameter makes the conv's input need a gradient."""

    def __init__(self, conv: nn.Conv2d, input_needs_grad: bool):
        super().__init__()
        self.conv = conv
        self.gate = nn.Parameter(torch.ones((), device="meta"), requires_grad=input_needs_grad)

    def forward(self, x):
        return self.conv(x * self.gate)


@pytest.mark.parametrize("input_needs_grad", [False, True])
def test_depthwise_conv_backward(input_needs_grad):
    n, c, hw, k, groups = 1, 32, 56, 3, 32
    conv = nn.Conv2d(c, c, k, padding=1, groups=groups, bias=False, device="meta")  # output hw x hw
    model, inputs = _GatedConv(conv, input_needs_grad), (torch.randn(n, c, hw, hw),)
    ref = flop_counter_reference(model, inputs)
    ours = our_flops(capture(model, inputs, mode="train"), ("conv",))["by_phase"]

    # each output element takes (C_in / groups) * k * k MACs
    per_conv = 2 * n * hw * hw * c * (c // groups) * k * k
    # grad_weight as FlopCounterMode counts it: as if groups == 1
    grad_weight_dense = 2 * n * hw * hw * c * c * k * k
    grad_input = per_conv if input_needs_grad else 0  # a transposed conv with the same weight

    assert ref.counts["forward"][aten.convolution] == per_conv == ours["forward"]
    assert ref.counts["backward"][aten.convolution_backward] == grad_weight_dense + grad_input
    assert ours["backward"] == per_conv + grad_input
    assert (ref.counts["backward"][aten.convolution_backward] - grad_input) // per_conv == groups  # off by groups


# --------------------------------------------------------------------------------------------
# 4. Properties on random shapes: bare modules captured in "train" mode, inputs needing no grad.

@FAST
@given(lead=st.lists(st.integers(1, 8), min_size=0, max_size=3), k=st.integers(1, 64), n=st.integers(1, 64),
       bias=st.booleans())
def test_linear_flops(lead, k, n, bias):
    layer, inputs = nn.Linear(k, n, bias=bias, device="meta"), (torch.randn(*lead, k),)
    m = math.prod(lead)
    ours = our_flops(capture(layer, inputs, mode="train"), ("matmul",))["by_phase"]
    product = 2 * m * k * n  # (m, k) @ (k, n), m = the rows of x
    # torch lowers a biased linear (input flattened to m rows) to one addmm: + one bias add per output
    assert ours["forward"] == product + (m * n if bias else 0)
    assert ours["backward"] == product  # grad_weight = grad_out^T @ x only: x needs no grad
    ref = flop_counter_reference(layer, inputs)
    if not bias:
        assert ours["forward"] == sum(ref.counts["forward"].values())
    assert ours["backward"] == sum(ref.counts["backward"].values())


@st.composite
def conv2d_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3, 4]))
    c_in, c_out = groups * draw(st.integers(1, 4)), groups * draw(st.integers(1, 4))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    # the input is at least as large as the dilated kernel minus the padding
    size = tuple(draw(st.integers(max(1, dl * (kk - 1) + 1 - 2 * p), 20))
                 for kk, p, dl in zip(kernel, padding, dilation))
    return dict(n=draw(st.integers(1, 3)), c_in=c_in, c_out=c_out, groups=groups, kernel=kernel, stride=stride,
                padding=padding, dilation=dilation, size=size, bias=draw(st.booleans()))


@FAST
@given(case=conv2d_cases())
def test_conv2d_flops(case):
    conv = nn.Conv2d(case["c_in"], case["c_out"], case["kernel"], case["stride"], case["padding"], case["dilation"],
                     case["groups"], case["bias"], device="meta")
    inputs = (torch.randn(case["n"], case["c_in"], *case["size"]),)
    ours = our_flops(capture(conv, inputs, mode="train"), ("conv",))["by_phase"]
    # output size, as documented for nn.Conv2d
    out = [(x + 2 * p - dl * (kk - 1) - 1) // s + 1 for x, p, dl, kk, s in
           zip(case["size"], case["padding"], case["dilation"], case["kernel"], case["stride"])]
    outputs = case["n"] * case["c_out"] * math.prod(out)
    product = 2 * outputs * (case["c_in"] // case["groups"]) * math.prod(case["kernel"])  # MACs per output
    bias = outputs if case["bias"] else 0  # forward: + bias per output; backward: grad_bias sums grad_out
    assert ours["forward"] == product + bias
    assert ours["backward"] == product + bias  # grad_weight only: the input needs no grad
    if case["groups"] == 1:  # FlopCounterMode ignores groups in the backward (test above)
        ref = flop_counter_reference(conv, inputs)
        assert ours["forward"] - bias == ref.counts["forward"][aten.convolution]
        assert ours["backward"] - bias == ref.counts["backward"][aten.convolution_backward]


class _Attention(nn.Module):
    """sdpa of its inputs, each scaled by a parameter so that q, k and v need grad (the inputs do not)."""

    def __init__(self, d: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.wq, self.wk, self.wv = (nn.Parameter(torch.ones(d, device="meta")) for _ in range(3))

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q * self.wq, k * self.wk, v * self.wv, is_causal=self.causal,
                                              enable_gqa=True)


@FAST
@given(b=st.integers(1, 3), kv_heads=st.integers(1, 3), group=st.integers(1, 3), s_q=st.integers(1, 24),
       s_k=st.integers(1, 24), d=st.integers(1, 32), causal=st.booleans())
def test_sdpa_flops(b, kv_heads, group, s_q, s_k, d, causal):
    h = kv_heads * group  # grouped-query attention when group > 1
    inputs = (torch.randn(b, h, s_q, d), torch.randn(b, kv_heads, s_k, d), torch.randn(b, kv_heads, s_k, d))
    step = capture(_Attention(d, causal), inputs, mode="train")
    for op, phase in zip(CPU_ATTENTION_OPS, PHASES):  # the fused CPU kernel ran, once each way
        assert [n.op.overloadpacket for n in step.nodes if n.phase == phase and n.op.overloadpacket in
                CPU_ATTENTION_OPS] == [op]
    flops, useful = our_flops(step, ("attention",))["by_phase"], our_useful_flops(step, "attention")
    assert flops["forward"] == 2 * b * h * s_q * s_k * (d + d)  # QK^T + PV over every (query, key) pair
    assert flops["backward"] == 2 * b * h * s_q * s_k * (3 * d + 2 * d)  # QK^T again, dV, dP, dQ, dK
    # FlopCounterMode's formula for the CUDA kernels (it has none for this CPU one)
    assert flops["forward"] == sdpa_flop_count(*(x.shape for x in inputs))
    assert flops["backward"] == sdpa_backward_flop_count((b, h, s_q, d), *(x.shape for x in inputs))
    pairs = int(torch.ones(s_q, s_k).tril().sum()) if causal else s_q * s_k  # torch's is_causal mask
    assert useful["forward"] == 2 * b * h * pairs * (d + d)
    assert useful["backward"] == 2 * b * h * pairs * (3 * d + 2 * d)
    assert our_flops(step, ("matmul",))["by_phase"] == Counter()  # no unfused attention products
