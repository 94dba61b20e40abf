"""DenseNet-BC (Huang et al. 2017), laid out as torchvision's densenet121 (same module names).

Each dense layer is BN-ReLU-1x1 conv (4 x growth) -> BN-ReLU-3x3 conv (growth) on the concatenation
of every earlier feature map in its block; transitions halve channels and resolution. Dropout is 0
in torchvision's weights, so it is left out. Parameter count matches torchvision (7,978,856).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .registry import ZooEntry, register
from .resnet import check_image_size


@dataclass(frozen=True)
class DenseNetConfig:
    name: str
    block_layers: tuple[int, ...]
    growth: int = 32
    stem: int = 64
    bottleneck: int = 4  # the 1x1 conv's width, in multiples of the growth rate
    num_classes: int = 1000


class DenseLayer(nn.Module):
    def __init__(self, in_ch: int, growth: int, bottleneck: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, bottleneck * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bottleneck * growth)
        self.conv2 = nn.Conv2d(bottleneck * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(F.relu(self.norm1(torch.cat(features, 1))))
        return self.conv2(F.relu(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, in_ch: int, n_layers: int, growth: int, bottleneck: int):
        super().__init__({f"denselayer{j + 1}": DenseLayer(in_ch + j * growth, growth, bottleneck)
                          for j in range(n_layers)})

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(OrderedDict(norm=nn.BatchNorm2d(in_ch), relu=nn.ReLU(inplace=True),
                                     conv=nn.Conv2d(in_ch, out_ch, 1, bias=False), pool=nn.AvgPool2d(2, 2)))


class DenseNet(nn.Module):
    min_image = 32  # the total stride

    def __init__(self, cfg: DenseNetConfig):
        super().__init__()
        self.cfg = cfg
        layers = OrderedDict(conv0=nn.Conv2d(3, cfg.stem, 7, 2, 3, bias=False), norm0=nn.BatchNorm2d(cfg.stem),
                             relu0=nn.ReLU(inplace=True), pool0=nn.MaxPool2d(3, 2, 1))
        ch = cfg.stem
        for i, n in enumerate(cfg.block_layers):
            layers[f"denseblock{i + 1}"] = DenseBlock(ch, n, cfg.growth, cfg.bottleneck)
            ch += n * cfg.growth
            if i + 1 < len(cfg.block_layers):
                layers[f"transition{i + 1}"] = Transition(ch, ch // 2)
                ch //= 2
        layers[f"norm{len(cfg.block_layers) + 1}"] = nn.BatchNorm2d(ch)
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(ch, cfg.num_classes)

    def forward(self, x):
        check_image_size(x, self.min_image, self.cfg.name)
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), 1)
        return self.classifier(x.flatten(1))


register(ZooEntry("densenet121", "cnn", "image", lambda: DenseNet(DenseNetConfig("densenet121", (6, 12, 24, 16))),
                  "torchvision DenseNet121_Weights.IMAGENET1K_V1 num_params (reference_counts.yaml)",
                  default_image=224, num_classes=1000))
