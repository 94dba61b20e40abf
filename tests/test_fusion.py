"""estimator.fusion: a LayerNorm + GELU chain as one kernel, eager attention as one attention kernel
forward and backward (no s x s tensor in memory), convexity on a diamond, and FLOPs kept / bytes
not increased on zoo and Hugging Face models. Bytes are derived in the comments at amp-bf16:
matmul outputs and elementwise tensors take 2 bytes, norm tensors 4 (autocast keeps norms in fp32)."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import roofline_zoo
from estimator.capture import capture
from estimator.fusion import FusedKernel, fusion_groups
from estimator.precision import get_precision
from estimator.roofline import step_costs

AMP = get_precision("amp-bf16")


def kernels(step) -> tuple[FusedKernel, ...]:
    return fusion_groups(step, step_costs(step, AMP), AMP)


def ops(step, kernel: FusedKernel) -> list[str]:
    return [step.nodes[i].op.overloadpacket.__name__ for i in kernel.members]


def only(found: list[FusedKernel]) -> FusedKernel:
    assert len(found) == 1, found
    return found[0]


# ---- hand-made graphs, bytes derived ------------------------------------------------------------

B, S, D = 4, 8, 32  # batch, sequence, width of the LayerNorm + GELU chain


def test_layer_norm_gelu_chain_is_one_kernel_reading_its_input_once():
    # Linear -> LayerNorm -> GELU -> Linear, inference. The two addmm stay library kernels; LN and
    # GELU fuse (the views around the addmms do not split them). The fused kernel reads x (the
    # first addmm's output, bf16: 2 B S D), LN's weight and bias (parameters, read at the norm's
    # fp32: 2 * 4 D) and writes GELU's output once (bf16: 2 B S D); LN's output stays in registers
    # and its mean and rstd, read by nothing in inference, are not written.
    model = nn.Sequential(nn.Linear(D, D), nn.LayerNorm(D), nn.GELU(), nn.Linear(D, D))
    step = capture(model, (torch.randn(B, S, D),), mode="inference")
    found = kernels(step)
    assert [k.op_class for k in found] == ["matmul", "fused", "matmul"]
    chain = found[1]
    assert ops(step, chain) == ["native_layer_norm", "gelu"]
    assert chain.bytes_read == 2 * B * S * D + 2 * 4 * D
    assert chain.bytes_written == 2 * B * S * D
    costs = step_costs(step, AMP)
    assert chain.flops == sum(costs[i].flops for i in chain.members)


H, SEQ, DH = 2, 128, 8  # heads, sequence, head width: s x s (16384) dwarfs s x dh (1024) per head


class EagerAttention(nn.Module):
    """softmax(q k^T / sqrt(dh)) v with dropout on the probabilities, written out op by op."""

    def __init__(self, project: bool):
        super().__init__()
        self.qkv = nn.Linear(H * DH, 3 * H * DH) if project else None
        self.drop = nn.Dropout(0.1)

    def forward(self, *x):
        q, k, v = x if self.qkv is None else self.qkv(x[0]).view(-1, SEQ, 3, H, DH).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-2, -1)) * DH ** -0.5
        out = torch.matmul(self.drop(torch.softmax(scores, dim=-1)), v)
        return out if self.qkv is None else out.transpose(1, 2).reshape(-1, SEQ, H * DH)


def test_eager_attention_is_one_kernel_without_the_scores():
    # inference on q, k, v inputs (B, H, SEQ, DH): bmm -> mul -> softmax -> bmm is one attention
    # kernel, as Inductor's SDPA pattern makes it: it reads q, k and v (read by the matmuls: bf16)
    # and writes the output once; the B H SEQ^2 scores and probabilities never reach memory.
    step = capture(EagerAttention(project=False), tuple(torch.randn(B, H, SEQ, DH) for _ in range(3)),
                   mode="inference")
    attention = only([k for k in kernels(step) if k.op_class == "attention"])
    assert ops(step, attention) == ["bmm", "mul", "_softmax", "bmm"]
    qkv_bytes = 2 * B * H * SEQ * DH
    assert (attention.bytes_read, attention.bytes_written) == (3 * qkv_bytes, qkv_bytes)
    assert attention.bytes_read + attention.bytes_written < 2 * B * H * SEQ * SEQ  # less than the scores alone
    costs = step_costs(step, AMP)
    assert attention.flops == sum(c.flops for c in costs)  # every costed op of the step is in it


def test_eager_attention_backward_is_one_kernel_that_recomputes_the_probabilities():
    # train, q, k, v projected by one Linear and made contiguous by clones (their own kernels).
    # Forward: reads q, k, v, writes the output; the probabilities and the dropout mask (made
    # inside) are not saved. Backward (dP = dO v^T, dropout and softmax backward, the scale,
    # dQ = dS k, dK = dS^T q, dV = P^T dO): reads dO, q, k, v, writes dq, dk, dv.
    step = capture(EagerAttention(project=True), (torch.randn(B, SEQ, H * DH),), mode="train")
    found = [k for k in kernels(step) if k.op_class == "attention"]
    forward, backward = sorted(found, key=lambda k: k.members[0])
    assert ops(step, forward) == ["bmm", "mul", "_softmax", "bernoulli_", "div_", "mul", "bmm"]
    assert sorted(ops(step, backward)) == ["_softmax_backward_data", "bmm", "bmm", "bmm", "bmm", "mul", "mul"]
    qkv_bytes = 2 * B * H * SEQ * DH
    assert (forward.bytes_read, forward.bytes_written) == (3 * qkv_bytes, qkv_bytes)
    assert (backward.bytes_read, backward.bytes_written) == (4 * qkv_bytes, 3 * qkv_bytes)


class Diamond(nn.Module):
    """a = relu(x); out = a + sigmoid(a @ w): a matmul on one branch between two fusible ops."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(D, D))

    def forward(self, x):
        a = torch.relu(x)
        return a + torch.sigmoid(a @ self.w)


def test_fusion_stays_convex_around_a_matmul():
    # relu feeds add directly and through mm -> sigmoid. {relu, add} or {relu, sigmoid, add}
    # would be a kernel that feeds the mm and waits for it: a cycle. The add joins its closest
    # producer, sigmoid; relu stays alone.
    step = capture(Diamond(), (torch.randn(B, D),), mode="inference")
    assert [ops(step, k) for k in kernels(step)] == [["relu"], ["mm"], ["sigmoid", "add"]]


# ---- real models: FLOPs kept, bytes not increased ---------------------------------------------

def gpt2_like(mode: str):
    t = pytest.importorskip("transformers")
    config = t.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32,
                          bos_token_id=0, eos_token_id=0, attn_implementation="eager")
    with torch.device("meta"):
        model = t.GPT2LMHeadModel(config)
    return capture(model, {"input_ids": torch.randint(0, 100, (2, 16), device="meta")}, mode=mode)


@functools.lru_cache(maxsize=None)
def step_of(name: str):
    if name == "resnet18 train":
        model, inputs = roofline_zoo.get("resnet18").build(batch=2, device="meta")
        return capture(model, inputs, mode="train")
    return gpt2_like(name.split()[1])


@pytest.mark.parametrize("name", ["resnet18 train", "gpt2-like inference", "gpt2-like train"])
def test_fusion_keeps_flops_and_does_not_add_bytes(name):
    step = step_of(name)
    costs = [c for c in step_costs(step, AMP) if c.op_class != "free"]
    found = kernels(step)
    assert sum(k.flops for k in found) == sum(c.flops for c in costs)
    assert sum(k.model_flops for k in found) == sum(c.useful_flops for c in costs)
    assert sum(k.bytes_read + k.bytes_written for k in found) <= sum(c.bytes for c in costs)
    assert len(found) < len(costs)
    members = sorted(i for k in found for i in k.members)  # every costed node in exactly one kernel
    assert members == [i for i, c in enumerate(step_costs(step, AMP)) if c.op_class != "free"]


@pytest.mark.parametrize("mode, per_layer", [("inference", 1), ("train", 2)])
def test_gpt2_eager_attention_is_found_in_every_layer(mode, per_layer):
    # two layers: one attention kernel each in inference, a forward and a backward one in training
    found = [k for k in kernels(step_of(f"gpt2-like {mode}")) if k.op_class == "attention"]
    assert len(found) == 2 * per_layer
