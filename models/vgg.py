"""VGG (Simonyan & Zisserman 2015), configuration D without batch norm, as torchvision's vgg16.

Parameter count matches torchvision exactly (vgg16: 138,357,544).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .registry import ZooEntry, register
from .resnet import check_image_size


@dataclass(frozen=True)
class VGGConfig:
    name: str
    stages: tuple[tuple[int, int], ...]  # (3x3 convs, width) per stage; each stage ends in a 2x2 max pool
    dropout: float = 0.5
    num_classes: int = 1000


class VGG(nn.Module):
    min_image = 32  # five unpadded 2x2 max pools

    def __init__(self, cfg: VGGConfig):
        super().__init__()
        self.cfg = cfg
        layers, in_ch = [], 3
        for n_convs, width in cfg.stages:
            for _ in range(n_convs):
                layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(in_ch * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
            nn.Linear(4096, cfg.num_classes),
        )

    def forward(self, x):
        check_image_size(x, self.min_image, self.cfg.name)
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


register(ZooEntry("vgg16", "cnn", "image",
                  lambda: VGG(VGGConfig("vgg16", ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)))),
                  "torchvision VGG16_Weights.IMAGENET1K_V1 num_params (reference_counts.yaml)",
                  default_image=224, num_classes=1000))
