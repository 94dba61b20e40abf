"""ConvNeXt (Liu et al. 2022), laid out as torchvision's convnext_tiny.

Blocks are 7x7 depthwise conv -> LayerNorm -> Linear(4x) -> GELU -> Linear, scaled by a learnt
per-channel layer scale; their parts are named (dwconv, norm, mlp) where torchvision numbers them
in one Sequential. Stochastic depth is left out (identity at inference, no parameters).
Parameter count matches torchvision exactly (convnext_tiny: 28,589,128).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .registry import ZooEntry, register
from .resnet import check_image_size


@dataclass(frozen=True)
class ConvNeXtConfig:
    name: str
    widths: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    layer_scale: float = 1e-6
    num_classes: int = 1000


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))

    def forward(self, x):
        y = self.mlp(self.norm(self.dwconv(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)  # channels last
        return x + self.layer_scale * y


class ConvNeXt(nn.Module):
    min_image = 32  # 4x4 patchify stem, then three unpadded 2x2 downsamples

    def __init__(self, cfg: ConvNeXtConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        layers = [nn.Sequential(nn.Conv2d(3, w[0], 4, 4), LayerNorm2d(w[0], eps=1e-6))]
        for i, (width, depth) in enumerate(zip(w, cfg.depths)):
            layers.append(nn.Sequential(*[CNBlock(width, cfg.layer_scale) for _ in range(depth)]))
            if i + 1 < len(w):
                layers.append(nn.Sequential(LayerNorm2d(width, eps=1e-6), nn.Conv2d(width, w[i + 1], 2, 2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(w[-1], eps=1e-6), nn.Flatten(1), nn.Linear(w[-1], cfg.num_classes))

    def forward(self, x):
        check_image_size(x, self.min_image, self.cfg.name)
        return self.classifier(self.avgpool(self.features(x)))


register(ZooEntry("convnext_tiny", "cnn", "image",
                  lambda: ConvNeXt(ConvNeXtConfig("convnext_tiny", (96, 192, 384, 768), (3, 3, 9, 3))),
                  "torchvision ConvNeXt_Tiny_Weights.IMAGENET1K_V1 num_params (reference_counts.yaml)",
                  default_image=224, num_classes=1000))
