"""Vision Transformer (Dosovitskiy et al. 2021), laid out as torchvision's ViT.

Attention is a fused qkv Linear and F.scaled_dot_product_attention; the parameter count
equals torchvision's nn.MultiheadAttention layout (vit_b_16: 86,567,656; vit_l_16:
304,326,632). DeiT-S (Touvron et al. 2021) is the same network at width 384 with 6 heads;
timm's deit_small_patch16_224 has the same tensors (22,050,664 parameters).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .registry import ZooEntry, register


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 224
    patch_size: int = 16
    layers: int = 12
    heads: int = 12
    dim: int = 768
    mlp_dim: int = 3072
    num_classes: int = 1000


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, s, d))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.attn = SelfAttention(cfg.dim, cfg.heads)
        self.ln_2 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.mlp_dim), nn.GELU(), nn.Linear(cfg.mlp_dim, cfg.dim))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.conv_proj = nn.Conv2d(3, cfg.dim, cfg.patch_size, cfg.patch_size)
        n_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.class_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, n_patches + 1, cfg.dim))
        self.layers = nn.Sequential(*[EncoderBlock(cfg) for _ in range(cfg.layers)])
        self.ln = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        if x.shape[1] != self.pos_embedding.shape[1]:
            raise ValueError(f"image gives {x.shape[1] - 1} patches but the model was built for "
                             f"{self.pos_embedding.shape[1] - 1} ({self.cfg.image_size}px)")
        x = self.layers(x + self.pos_embedding)
        return self.head(self.ln(x)[:, 0])


register(ZooEntry("vit_b_16", "vit", "image", lambda: VisionTransformer(ViTConfig()),
                  "torchvision ViT_B_16_Weights.IMAGENET1K_V1 num_params (reference_counts.yaml)",
                  default_image=224, num_classes=1000))
register(ZooEntry("vit_l_16", "vit", "image",
                  lambda: VisionTransformer(ViTConfig(layers=24, heads=16, dim=1024, mlp_dim=4096)),
                  "torchvision ViT_L_16_Weights.IMAGENET1K_V1 num_params 304,326,632 (reference_counts.yaml)",
                  default_image=224, num_classes=1000))
register(ZooEntry("deit_small", "vit", "image",
                  lambda: VisionTransformer(ViTConfig(layers=12, heads=6, dim=384, mlp_dim=1536)),
                  "timm deit_small_patch16_224: 22.05M params, 4.61 GMACs (reference_counts.yaml); "
                  "exact 22,050,664 by arithmetic over the timm layout",
                  default_image=224, num_classes=1000))
