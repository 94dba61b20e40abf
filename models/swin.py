"""Swin Transformer (Liu et al. 2021), laid out as torchvision's swin_t.

Channels-last (B, H, W, C) throughout. A 4x4 patch embedding, then four stages of blocks that
attend within non-overlapping 7x7 windows, with a learned relative position bias per head;
every second block cyclically shifts the map by half a window first (torch.roll) and masks
attention between regions the shift made adjacent. Between stages, patch merging concatenates
each 2x2 neighbourhood and halves the channels with a Linear. Attention is
F.scaled_dot_product_attention with the bias (plus shift mask) as a float attn_mask.
No stochastic depth or dropout (identity at inference). swin_t: 28,288,354 parameters.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .registry import ZooEntry, register


@dataclass(frozen=True)
class SwinConfig:
    patch_size: int = 4
    dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    heads: tuple[int, ...] = (3, 6, 12, 24)
    window: int = 7
    mlp_ratio: int = 4
    num_classes: int = 1000


def to_windows(x, window: int):
    """(B, H, W, C) -> (B, windows, window*window, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, -1, window * window, c)


def from_windows(x, h: int, w: int, window: int):
    """Inverse of to_windows."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shift_mask(h: int, w: int, window: int, shifts: tuple[int, int], device) -> torch.Tensor:
    """(windows, window^2, window^2): -100 between tokens from different regions of the rolled map."""
    region = torch.zeros(1, h, w, 1, device=device)
    cuts = [(slice(0, -window), slice(-window, -s), slice(-s, None)) if s else (slice(None),) for s in shifts]
    for i, (rows, cols) in enumerate(itertools.product(*cuts)):
        region[:, rows, cols] = i
    region = to_windows(region, window)[0, :, :, 0]  # (windows, window^2)
    different = region.unsqueeze(1) != region.unsqueeze(2)
    return torch.zeros(different.shape, device=device).masked_fill(different, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention within windows, with a relative position bias; shifted if shift > 0."""

    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        # index of the table entry for each (query, key) pair of a window: their (dy, dx) offset
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        offset = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("relative_position_index", offset[..., 0] * (2 * window - 1) + offset[..., 1],
                             persistent=False)

    def forward(self, x):
        b, h, w, c = x.shape
        window = self.window
        pad_h, pad_w = -h % window, -w % window
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        # no shift along a side that one window covers
        shifts = tuple(self.shift if window < size else 0 for size in (hp, wp))
        if any(shifts):
            x = torch.roll(x, shifts=(-shifts[0], -shifts[1]), dims=(1, 2))
        x = to_windows(x, window)  # (b, windows, n, c)
        n_windows, n = x.shape[1], x.shape[2]
        q, k, v = self.qkv(x).view(b, n_windows, n, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = (t.reshape(b, n_windows * self.heads, n, c // self.heads) for t in (q, k, v))
        bias = self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1)  # (heads, n, n)
        bias = bias.expand(n_windows, -1, -1, -1)
        if any(shifts):
            bias = bias + shift_mask(hp, wp, window, shifts, x.device).unsqueeze(1)
        # a 4-D mask (broadcast over the batch) keeps SDPA on the fused kernel
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.reshape(1, n_windows * self.heads, n, n))
        y = y.view(b, n_windows, self.heads, n, -1).transpose(2, 3).reshape(b, n_windows, n, c)
        x = from_windows(self.proj(y), hp, wp, window)
        if any(shifts):
            x = torch.roll(x, shifts=shifts, dims=(1, 2))
        return x[:, :h, :w]


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window, shift)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Concatenate each 2x2 neighbourhood (4C channels), LayerNorm, Linear to 2C: halves H and W."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        h, w = x.shape[1], x.shape[2]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinTransformer(nn.Module):
    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, cfg.dim, cfg.patch_size, cfg.patch_size)
        self.patch_norm = nn.LayerNorm(cfg.dim)
        stages = []
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.heads)):
            dim = cfg.dim * 2 ** i
            stages += [SwinBlock(dim, heads, cfg.window, 0 if j % 2 == 0 else cfg.window // 2, cfg.mlp_ratio)
                       for j in range(depth)]
            if i < len(cfg.depths) - 1:
                stages.append(PatchMerging(dim))
        self.features = nn.Sequential(*stages)
        out_dim = cfg.dim * 2 ** (len(cfg.depths) - 1)
        self.norm = nn.LayerNorm(out_dim)
        self.head = nn.Linear(out_dim, cfg.num_classes)

    def forward(self, x):
        x = self.patch_norm(self.patch_embed(x).permute(0, 2, 3, 1))
        x = self.norm(self.features(x))
        return self.head(x.mean(dim=(1, 2)))


register(ZooEntry("swin_tiny", "vit", "image", lambda: SwinTransformer(SwinConfig()),
                  "torchvision Swin_T_Weights.IMAGENET1K_V1 num_params 28,288,354, 4.491 GMACs "
                  "(reference_counts.yaml)",
                  default_image=224, num_classes=1000))
