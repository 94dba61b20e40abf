"""Encoder-decoder Transformers: the WMT'14 "big" Transformer and T5-small.

Both take ONE (N, S) tensor of token ids and use it as the source and as the (already
shifted) target: the encoder reads it, the causal decoder reads it with teacher forcing, and
the output is the decoder's (N, S, vocab) logits. A real pair has a source and a target of
different lengths; using one tensor keeps the zoo's one-input API and costs the step of a
pair with S source and S target tokens.

transformer_big (Vaswani et al. 2017, "Attention Is All You Need", Table 3 "big"), laid out as
fairseq's transformer_vaswani_wmt_en_de_big trained with --share-all-embeddings:
  * d_model 1024, FFN 4096 (ReLU), 16 heads, 6 encoder + 6 decoder layers, post-norm
    (LayerNorm after each residual add, no final LayerNorm), biases in every Linear;
  * one embedding matrix for source tokens, target tokens and the output projection (no
    bias), over fairseq's joined 32,768-entry BPE dictionary of the WMT'16 En-De data
    (32k BPE merges, --nwordssrc/--nwordstgt 32768 --joined-dictionary);
  * sinusoidal positions (no parameters), embeddings scaled by sqrt(d_model);
  * dropout 0.3 on the embedding sums and on every sub-layer output (the paper's P_drop);
    fairseq's attention and ReLU dropouts are 0 for this architecture.
  Parameters: 6 x 12,596,224 (encoder layer) + 6 x 16,796,672 (decoder layer)
  + 32,768 x 1,024 (shared embedding) = 209,911,808. The paper's Table 3 says 213M with its
  "about 37000"-token vocabulary; 37,000 tokens give 214,245,376 (+0.6%). The paper's
  figures are rounded and not mutually consistent under one vocabulary: its base model (65M)
  would need ~40.7k tokens, its big model (213M) ~35.8k.

t5_small (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer"), T5 v1.0 as the Hugging Face 't5-small' checkpoint:
  * d_model 512, FFN 2048 (ReLU), 8 heads of 64, 6 + 6 layers, pre-norm with T5's
    LayerNorm (RMSNorm: scale only, eps 1e-6), no biases anywhere, no 1/sqrt(d_kv) scaling
    of the attention scores;
  * a learned relative position bias (32 buckets up to distance 128, one scalar per head)
    shared by all self-attention layers of a stack and added to their scores; the decoder's
    is unidirectional and causal; cross-attention has none. Hugging Face stores each
    stack's bias table in its first block; here it sits on the stack (same count);
  * input embedding, decoder embedding and LM head tied (32,128 x 512), the decoder output
    scaled by d_model**-0.5 before the tied head;
  * dropout 0.1 (config dropout_rate) where Hugging Face applies it: embeddings, attention
    probabilities, the FFN hidden layer, every sub-layer output and each stack's output.
  Parameters: 60,506,624, equal to transformers' T5ForConditionalGeneration(T5Config()).
  The relative bias has no length limit; 512, the pre-training input length (and the
  't5-small' tokenizer's model_max_length), is the documented limit here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .registry import ZooEntry, register


def _check_length(s: int, max_positions: int, why: str) -> None:
    if s > max_positions:
        raise ValueError(f"sequence length {s} exceeds the model's {max_positions} positions ({why})")


# ---- transformer_big --------------------------------------------------------------------------

@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 32768  # fairseq's joined WMT'16 En-De BPE dictionary
    max_positions: int = 1024  # fairseq's max_source_positions / max_target_positions
    layers: int = 6  # encoder layers, and as many decoder layers
    heads: int = 16
    dim: int = 1024
    ffn_dim: int = 4096
    dropout: float = 0.3


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (fairseq's layout)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, memory=None, causal=False):
        kv = x if memory is None else memory
        b, s, d = x.shape
        q = self.q_proj(x).view(b, s, self.heads, -1).transpose(1, 2)
        k = self.k_proj(kv).view(b, kv.shape[1], self.heads, -1).transpose(1, 2)
        v = self.v_proj(kv).view(b, kv.shape[1], self.heads, -1).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(y.transpose(1, 2).reshape(b, s, d))


def _feed_forward(cfg: TransformerConfig) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.ReLU(), nn.Linear(cfg.ffn_dim, cfg.dim))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.self_attn = Attention(cfg.dim, cfg.heads)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.dim)
        self.ffn = _feed_forward(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):  # post-norm: LayerNorm(x + Dropout(Sublayer(x)))
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x)))
        return self.final_layer_norm(x + self.dropout(self.ffn(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.self_attn = Attention(cfg.dim, cfg.heads)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.dim)
        self.encoder_attn = Attention(cfg.dim, cfg.heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(cfg.dim)
        self.ffn = _feed_forward(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, memory):
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, causal=True)))
        x = self.encoder_attn_layer_norm(x + self.dropout(self.encoder_attn(x, memory)))
        return self.final_layer_norm(x + self.dropout(self.ffn(x)))


def sinusoids(positions: int, dim: int) -> torch.Tensor:
    """The paper's positional encoding: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...)."""
    pos = torch.arange(positions, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(positions, dim)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq)
    return table


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)  # source, target and output
        self.register_buffer("positions", sinusoids(cfg.max_positions, cfg.dim), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.layers)])
        self.decoder = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.layers)])
        self.output_projection = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.output_projection.weight = self.embed_tokens.weight  # tied (--share-all-embeddings)

    def embed(self, ids):
        x = self.embed_tokens(ids) * math.sqrt(self.cfg.dim) + self.positions[:ids.shape[1]]
        return self.dropout(x)

    def forward(self, ids):
        """ids (N, S): the source sentence and the decoder's input; returns (N, S, vocab) logits."""
        _check_length(ids.shape[1], self.cfg.max_positions, "fairseq's max_source_positions")
        memory = self.embed(ids)
        for layer in self.encoder:
            memory = layer(memory)
        x = self.embed(ids)
        for layer in self.decoder:
            x = layer(x, memory)
        return self.output_projection(x)


# ---- t5_small ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class T5Config:
    vocab_size: int = 32128
    max_positions: int = 512  # the pre-training input length; the relative bias itself has no limit
    layers: int = 6  # encoder layers, and as many decoder layers
    heads: int = 8
    head_dim: int = 64
    dim: int = 512
    ffn_dim: int = 2048
    buckets: int = 32
    max_distance: int = 128
    dropout: float = 0.1


def relative_position_bucket(rel: torch.Tensor, bidirectional: bool, buckets: int, max_distance: int):
    """T5's bucket of each relative position (key - query), as mesh-tensorflow computes it.

    Half the buckets (per direction when bidirectional) hold the distances 0..n-1 exactly, the
    other half log-spaced distances up to max_distance; farther ones share the last bucket.
    A unidirectional (decoder) bias only sees the past: future positions fall in bucket 0.
    """
    if bidirectional:
        buckets //= 2
        offset = (rel > 0).long() * buckets
        distance = rel.abs()
    else:
        offset = 0
        distance = (-rel).clamp(min=0)
    exact = buckets // 2
    log_bucket = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact)
                          * (buckets - exact)).long()
    return offset + torch.where(distance < exact, distance, log_bucket.clamp(max=buckets - 1))


class T5Attention(nn.Module):
    """No biases, no score scaling; an additive (1, heads, S_q, S_k) bias where one is given."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.heads = cfg.heads
        self.dropout = cfg.dropout
        inner = cfg.heads * cfg.head_dim
        self.q = nn.Linear(cfg.dim, inner, bias=False)
        self.k = nn.Linear(cfg.dim, inner, bias=False)
        self.v = nn.Linear(cfg.dim, inner, bias=False)
        self.o = nn.Linear(inner, cfg.dim, bias=False)

    def forward(self, x, bias=None, memory=None):
        kv = x if memory is None else memory
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.heads, -1).transpose(1, 2)
        k = self.k(kv).view(b, kv.shape[1], self.heads, -1).transpose(1, 2)
        v = self.v(kv).view(b, kv.shape[1], self.heads, -1).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(b, s, -1))


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config, cross_attention: bool):
        super().__init__()
        self.self_attn_norm = nn.RMSNorm(cfg.dim, eps=1e-6)
        self.self_attn = T5Attention(cfg)
        if cross_attention:
            self.cross_attn_norm = nn.RMSNorm(cfg.dim, eps=1e-6)
            self.cross_attn = T5Attention(cfg)
        self.ff_norm = nn.RMSNorm(cfg.dim, eps=1e-6)
        self.wi = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.wo = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, bias, memory=None):  # pre-norm: x + Dropout(Sublayer(Norm(x)))
        x = x + self.dropout(self.self_attn(self.self_attn_norm(x), bias))
        if memory is not None:
            x = x + self.dropout(self.cross_attn(self.cross_attn_norm(x), memory=memory))
        h = self.wo(self.dropout(F.relu(self.wi(self.ff_norm(x)))))
        return x + self.dropout(h)


class T5Stack(nn.Module):
    """The encoder (bidirectional bias, no cross-attention) or the decoder (causal, cross-attention)."""

    def __init__(self, cfg: T5Config, decoder: bool):
        super().__init__()
        self.cfg = cfg
        self.decoder = decoder
        self.relative_attention_bias = nn.Embedding(cfg.buckets, cfg.heads)
        self.blocks = nn.ModuleList([T5Block(cfg, cross_attention=decoder) for _ in range(cfg.layers)])
        self.final_layer_norm = nn.RMSNorm(cfg.dim, eps=1e-6)
        self.dropout = nn.Dropout(cfg.dropout)

    def position_bias(self, s: int, device) -> torch.Tensor:
        pos = torch.arange(s, device=device)
        rel = pos[None, :] - pos[:, None]  # key position - query position
        buckets = relative_position_bucket(rel, not self.decoder, self.cfg.buckets, self.cfg.max_distance)
        bias = self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, heads, S, S)
        if self.decoder:
            bias = bias.masked_fill(rel > 0, float("-inf"))  # causal
        return bias

    def forward(self, x, memory=None):
        bias = self.position_bias(x.shape[1], x.device)  # computed once, used by every block
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, bias, memory)
        return self.dropout(self.final_layer_norm(x))


class T5(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.encoder = T5Stack(cfg, decoder=False)
        self.decoder = T5Stack(cfg, decoder=True)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.shared.weight  # tied, as in T5 v1.0

    def forward(self, ids):
        """ids (N, S): the encoder input and the decoder input; returns (N, S, vocab) logits."""
        _check_length(ids.shape[1], self.cfg.max_positions, "T5's pre-training input length")
        memory = self.encoder(self.shared(ids))
        x = self.decoder(self.shared(ids), memory)
        return self.lm_head(x * self.cfg.dim ** -0.5)  # the tied head's rescaling


register(ZooEntry("transformer_big", "seq2seq", "tokens", lambda: Transformer(TransformerConfig()),
                  "Vaswani et al. 2017 Table 3 'big' (213M, ~37k vocab); fairseq "
                  "transformer_vaswani_wmt_en_de_big, shared 32,768 BPE vocab: 209,911,808 by formula",
                  default_seq=128, vocab_size=32768, max_positions=1024))
register(ZooEntry("t5_small", "seq2seq", "tokens", lambda: T5(T5Config()),
                  "Hugging Face 't5-small' (T5 v1.0): 60,506,624 = T5ForConditionalGeneration(T5Config())",
                  default_seq=512, vocab_size=32128, max_positions=512))
