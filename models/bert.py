"""BERT (Devlin et al. 2019) and DistilBERT (Sanh et al. 2019), laid out as Hugging Face's models.

Post-LayerNorm encoder: learned word + position (+ token type) embeddings, then blocks of
self-attention and a GELU MLP, each followed by a residual add and LayerNorm. BERT adds the
pooler (tanh Linear on the [CLS] token); DistilBERT has 6 layers, no token types, no pooler.
No masked-LM head: the counts are the bare encoders', as the published ones (bert-base-uncased
109,482,240; bert-large-uncased 335,141,888; distilbert-base-uncased 66,362,880).

The output is a dict like transformers' BaseModelOutput, so the default training loss is the
mean of the hidden states (and pooled output), not a cross-entropy over hidden features.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .registry import ZooEntry, register


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    max_positions: int = 512
    token_types: int = 2  # 0: no token-type embedding (DistilBERT)
    pooler: bool = True
    layers: int = 12
    heads: int = 12
    dim: int = 768
    ffn_dim: int = 3072


class SelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.heads = cfg.heads
        self.query = nn.Linear(cfg.dim, cfg.dim)
        self.key = nn.Linear(cfg.dim, cfg.dim)
        self.value = nn.Linear(cfg.dim, cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = (proj(x).view(b, s, self.heads, d // self.heads).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, s, d))


class Layer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ln_1 = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(), nn.Linear(cfg.ffn_dim, cfg.dim))
        self.ln_2 = nn.LayerNorm(cfg.dim, eps=1e-12)

    def forward(self, x):
        x = self.ln_1(x + self.attn(x))
        return self.ln_2(x + self.mlp(x))


class Bert(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.dim)
        self.token_type_embeddings = nn.Embedding(cfg.token_types, cfg.dim) if cfg.token_types else None
        self.ln = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.layers = nn.Sequential(*[Layer(cfg) for _ in range(cfg.layers)])
        self.pooler = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.Tanh()) if cfg.pooler else None

    def forward(self, ids):
        s = ids.shape[1]
        if s > self.cfg.max_positions:
            raise ValueError(f"sequence length {s} exceeds the model's {self.cfg.max_positions} positions")
        x = self.word_embeddings(ids) + self.position_embeddings(torch.arange(s, device=ids.device))
        if self.token_type_embeddings is not None:  # one segment: every token has type 0
            x = x + self.token_type_embeddings(torch.zeros_like(ids))
        x = self.layers(self.ln(x))
        if self.pooler is None:
            return {"last_hidden_state": x}
        return {"last_hidden_state": x, "pooler_output": self.pooler(x[:, 0])}


register(ZooEntry("bert_base", "encoder", "tokens", lambda: Bert(BertConfig()),
                  "exact_param_counts_nlp 'bert-base-uncased' 109,482,240 incl. pooler (reference_counts.yaml); "
                  "equals transformers BertModel(BertConfig()) on meta",
                  default_seq=512, vocab_size=30522, max_positions=512))
register(ZooEntry("bert_large", "encoder", "tokens",
                  lambda: Bert(BertConfig(layers=24, heads=16, dim=1024, ffn_dim=4096)),
                  "exact_param_counts_nlp 'bert-large-uncased' 335,141,888 incl. pooler (reference_counts.yaml); "
                  "equals transformers BertModel on meta",
                  default_seq=512, vocab_size=30522, max_positions=512))
register(ZooEntry("distilbert", "encoder", "tokens",
                  lambda: Bert(BertConfig(token_types=0, pooler=False, layers=6)),
                  "transformers DistilBertModel(DistilBertConfig()) on meta: 66,362,880 "
                  "(Hugging Face 'distilbert-base-uncased')",
                  default_seq=512, vocab_size=30522, max_positions=512))
