"""ResNet v1.5 (He et al. 2016; stride in the 3x3 conv, as torchvision and NVIDIA use).

Laid out as torchvision's resnet18/34/50/101/152; parameter counts match torchvision exactly
(resnet50: 25,557,032).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import ZooEntry, register


def check_image_size(x: torch.Tensor, minimum: int, name: str) -> None:
    """Raise ValueError if the image is smaller than `minimum` px a side (shared by the zoo's CNNs)."""
    h, w = x.shape[-2:]
    if h < minimum or w < minimum:
        raise ValueError(f"image {h}x{w} is too small for {name}: it needs at least {minimum}x{minimum}")


@dataclass(frozen=True)
class ResNetConfig:
    name: str
    blocks_per_stage: tuple[int, int, int, int]
    bottleneck: bool
    num_classes: int = 1000


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, width, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # v1.5: stride here
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, out_ch, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class ResNet(nn.Module):
    min_image = 32  # the total stride: five halvings

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        block = Bottleneck if cfg.bottleneck else BasicBlock
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for i, (n_blocks, width) in enumerate(zip(cfg.blocks_per_stage, (64, 128, 256, 512))):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (j == 0 and i > 0) else 1
                blocks.append(block(in_ch, width, stride))
                in_ch = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, cfg.num_classes)

    def forward(self, x):
        check_image_size(x, self.min_image, self.cfg.name)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


# (name, blocks per stage, bottleneck blocks?); exact counts: torchvision's ResNet*_Weights.IMAGENET1K_V1
_CONFIGS = [
    ("resnet18", (2, 2, 2, 2), False),    # 11,689,512
    ("resnet34", (3, 4, 6, 3), False),    # 21,797,672
    ("resnet50", (3, 4, 6, 3), True),     # 25,557,032
    ("resnet101", (3, 4, 23, 3), True),   # 44,549,160
    ("resnet152", (3, 8, 36, 3), True),   # 60,192,808
]

for _name, _blocks, _bottleneck in _CONFIGS:
    _cfg = ResNetConfig(_name, _blocks, _bottleneck)
    register(ZooEntry(_name, "cnn", "image", lambda cfg=_cfg: ResNet(cfg),
                      f"torchvision ResNet{_name[6:]}_Weights.IMAGENET1K_V1 num_params (reference_counts.yaml)",
                      default_image=224, num_classes=1000))
