"""Llama-style decoders (Touvron et al. 2023; Llama 3, Mistral 7B, Mixtral 8x7B), laid out as
Hugging Face's LlamaForCausalLM / MistralForCausalLM / MixtralForCausalLM.

Pre-RMSNorm blocks, rotary position embeddings (rotate-half form, cos/sin tables precomputed
for max_positions), grouped-query attention (F.scaled_dot_product_attention with
enable_gqa=True), a SwiGLU MLP (down(silu(gate(x)) * up(x))) and an untied LM head. Mistral's
4096-token sliding window is not modelled: attention is full causal (the same for sequences up
to 4096). Mixtral replaces the MLP with a top-2 of 8 mixture of experts (see MoE).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .registry import ZooEntry, register


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    max_positions: int  # max_position_embeddings
    layers: int
    heads: int
    kv_heads: int
    dim: int
    ffn_dim: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    experts: int = 0  # 0: a dense SwiGLU MLP; else a mixture of `experts` SwiGLU MLPs
    experts_per_token: int = 2


def rope_tables(head_dim: int, positions: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, (positions, head_dim), halves repeated (rotate-half form)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(positions).float(), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.dim // cfg.heads
        self.q_proj = nn.Linear(cfg.dim, cfg.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.heads * self.head_dim, cfg.dim, bias=False)

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))


class MLP(nn.Module):
    """SwiGLU (Shazeer 2020)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MoE(nn.Module):
    """Mixtral's sparse MLP: a router sends each token to its top k of E SwiGLU experts and sums
    their outputs weighted by the renormalised router probabilities.

    Routing assumption (which token goes where is data, and fake tensors hold none): the router
    (Linear, softmax, topk) runs as written, but the expert work assumes perfectly balanced
    routing with static shapes. The tokens*k routed copies of the tokens are split into E equal
    chunks, one per expert (capacity exactly tokens*k/E); when E does not divide tokens*k the
    copies are zero-padded up to the next multiple and the padding is costed as expert work.
    Only routed work is counted: k of E experts per token (2 of 8 for Mixtral).
    """

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.top_k = cfg.experts_per_token
        self.gate = nn.Linear(cfg.dim, cfg.experts, bias=False)  # the router
        self.experts = nn.ModuleList(MLP(cfg) for _ in range(cfg.experts))

    def forward(self, x):
        b, s, d = x.shape
        tokens = x.reshape(b * s, d)
        weights, _ = self.gate(tokens).softmax(dim=-1).topk(self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        routed = tokens.repeat_interleave(self.top_k, dim=0)  # (tokens*k, d): k copies of each token
        n, e = routed.shape[0], len(self.experts)
        if n % e:
            routed = F.pad(routed, (0, 0, 0, e - n % e))
        chunks = routed.view(e, -1, d)
        out = torch.cat([expert(chunk) for expert, chunk in zip(self.experts, chunks)])[:n]
        return (out.view(b * s, self.top_k, d) * weights.unsqueeze(-1)).sum(dim=1).view(b, s, d)


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.input_layernorm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = MoE(cfg) if cfg.experts else MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.dim // cfg.heads, cfg.max_positions, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, ids):
        s = ids.shape[1]
        if s > self.cfg.max_positions:
            raise ValueError(f"sequence length {s} exceeds the model's {self.cfg.max_positions} positions "
                             "(max_position_embeddings)")
        x = self.embed_tokens(ids)
        cos, sin = self.rope_cos[:s], self.rope_sin[:s]
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.norm(x))


LLAMA2_7B = LlamaConfig(vocab_size=32000, max_positions=4096, layers=32, heads=32, kv_heads=32, dim=4096,
                        ffn_dim=11008)
LLAMA3_8B = LlamaConfig(vocab_size=128256, max_positions=8192, layers=32, heads=32, kv_heads=8, dim=4096,
                        ffn_dim=14336, rope_theta=500000.0)
LLAMA3_70B = LlamaConfig(vocab_size=128256, max_positions=8192, layers=80, heads=64, kv_heads=8, dim=8192,
                         ffn_dim=28672, rope_theta=500000.0)
MISTRAL_7B = LlamaConfig(vocab_size=32000, max_positions=32768, layers=32, heads=32, kv_heads=8, dim=4096,
                         ffn_dim=14336)
MIXTRAL_8X7B = LlamaConfig(vocab_size=32000, max_positions=32768, layers=32, heads=32, kv_heads=8, dim=4096,
                           ffn_dim=14336, rope_theta=1e6, experts=8, experts_per_token=2)

register(ZooEntry("llama2_7b", "decoder", "tokens", lambda: Llama(LLAMA2_7B),
                  "exact_param_counts_nlp 'Llama-2-7B' 6,738,415,616 (reference_counts.yaml); equals "
                  "transformers LlamaForCausalLM on meta",
                  default_seq=4096, vocab_size=32000, max_positions=4096))
register(ZooEntry("llama3_8b", "decoder", "tokens", lambda: Llama(LLAMA3_8B),
                  "exact_param_counts_nlp 'Llama-3-8B' 8,030,261,248 (reference_counts.yaml); equals "
                  "transformers LlamaForCausalLM on meta",
                  default_seq=8192, vocab_size=128256, max_positions=8192))
register(ZooEntry("llama3_70b", "decoder", "tokens", lambda: Llama(LLAMA3_70B),
                  "exact_param_counts_nlp 'Llama-3-70B' 70,553,706,496 (reference_counts.yaml); equals "
                  "transformers LlamaForCausalLM on meta",
                  default_seq=8192, vocab_size=128256, max_positions=8192))
register(ZooEntry("mistral_7b", "decoder", "tokens", lambda: Llama(MISTRAL_7B),
                  "exact_param_counts_nlp 'Mistral-7B-v0.1' 7,241,732,096 (reference_counts.yaml); equals "
                  "transformers MistralForCausalLM on meta",
                  default_seq=8192, vocab_size=32000, max_positions=32768))
register(ZooEntry("mixtral_8x7b", "decoder", "tokens", lambda: Llama(MIXTRAL_8X7B),
                  "transformers MixtralForCausalLM(MixtralConfig()) on meta: 46,702,792,704 (Hugging Face "
                  "Mixtral-8x7B-v0.1 config: 8 experts, top-2, 32 q / 8 kv heads)",
                  default_seq=32768, vocab_size=32000, max_positions=32768))
