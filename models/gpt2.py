"""GPT-2 (Radford et al. 2019), nanoGPT-style, with the LM head tied to the token embedding.

Sizes as the Hugging Face checkpoints (GPT2LMHeadModel, tied head): gpt2 (small) 124,439,808,
gpt2-medium 354,823,168, gpt2-large 774,030,080, gpt2-xl 1,557,611,200 parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .registry import ZooEntry, register


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 50257
    max_positions: int = 1024
    layers: int = 12
    heads: int = 12
    dim: int = 768


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.heads = cfg.heads
        self.c_attn = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.c_proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.c_attn(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, s, d))


class Block(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, 4 * cfg.dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * cfg.dim, cfg.dim))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.wpe = nn.Embedding(cfg.max_positions, cfg.dim)
        self.h = nn.Sequential(*[Block(cfg) for _ in range(cfg.layers)])
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in the released checkpoints

    def forward(self, ids):
        s = ids.shape[1]
        if s > self.cfg.max_positions:
            raise ValueError(f"sequence length {s} exceeds the model's {self.cfg.max_positions} positions")
        pos = torch.arange(s, device=ids.device)
        x = self.h(self.wte(ids) + self.wpe(pos))
        return self.lm_head(self.ln_f(x))


register(ZooEntry("gpt2", "decoder", "tokens", lambda: GPT2(GPT2Config()),
                  "exact_param_counts_nlp 'gpt2 (small)' 124,439,808 (reference_counts.yaml)",
                  default_seq=1024, vocab_size=50257, max_positions=1024))
register(ZooEntry("gpt2_medium", "decoder", "tokens", lambda: GPT2(GPT2Config(layers=24, heads=16, dim=1024)),
                  "transformers GPT2LMHeadModel(n_embd=1024, n_layer=24, n_head=16) on meta: 354,823,168 "
                  "(Hugging Face 'gpt2-medium')",
                  default_seq=1024, vocab_size=50257, max_positions=1024))
register(ZooEntry("gpt2_large", "decoder", "tokens", lambda: GPT2(GPT2Config(layers=36, heads=20, dim=1280)),
                  "transformers GPT2LMHeadModel(n_embd=1280, n_layer=36, n_head=20) on meta: 774,030,080 "
                  "(Hugging Face 'gpt2-large')",
                  default_seq=1024, vocab_size=50257, max_positions=1024))
register(ZooEntry("gpt2_xl", "decoder", "tokens", lambda: GPT2(GPT2Config(layers=48, heads=25, dim=1600)),
                  "exact_param_counts_nlp 'gpt2-xl' 1,557,611,200 (reference_counts.yaml); equals transformers "
                  "GPT2LMHeadModel(n_embd=1600, n_layer=48, n_head=25) on meta",
                  default_seq=1024, vocab_size=50257, max_positions=1024))
