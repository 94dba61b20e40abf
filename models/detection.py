"""SSD300 with a ResNet-50 backbone (Liu et al. 2016, "SSD: Single Shot MultiBox Detector"),
laid out as NVIDIA DeepLearningExamples PyTorch/Detection/SSD (ssd/model.py).

  * backbone: torchvision's ResNet-50 v1.5 up to layer3 (conv1 ... layer3, no layer4, no
    head), with layer3's first block at stride 1 (its 3x3 conv and downsample), so a 300px
    image gives a 38x38x1024 first feature map;
  * five additional blocks (1x1 conv, BN, ReLU, 3x3 conv, BN, ReLU; no conv biases): three
    at stride 2 with padding, two unpadded, giving 19, 10, 5, 3 and 1 pixel maps with
    512, 512, 256, 256, 256 channels;
  * a 3x3 location conv (4 per default box) and a 3x3 class conv (81 COCO classes per
    box, background included) on each of the six maps, with 4, 6, 6, 6, 4, 4 default boxes
    per location: 8,732 boxes at 300px.
The output is (locations (N, 4, boxes), class scores (N, 81, boxes)), as NVIDIA's forward
returns them; box matching and hard-negative mining belong to the loss, not the model.

Parameters: 22,894,902 by construction, as NVIDIA's SSD300() counts them (NVIDIA states no
number): backbone 8,543,296 (torchvision resnet50's 25,557,032 less layer4's 14,964,736
and fc's 2,049,000), additional blocks 3,773,696, heads 10,577,910 (sum over the six maps
of boxes x (4 + 81) x (9 x channels + 1)).

The two unpadded 3x3 convs need a 5px map before them, so images below 257px fail.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import ZooEntry, register
from .resnet import Bottleneck

MIN_IMAGE = 257  # 257 -> 129 -> 65 -> 33 (38 at 300px) -> 17 -> 9 -> 5 -> 3 -> 1


@dataclass(frozen=True)
class SSDConfig:
    num_classes: int = 81  # COCO's 80 and the background
    boxes_per_location: tuple[int, ...] = (4, 6, 6, 6, 4, 4)
    feature_channels: tuple[int, ...] = (1024, 512, 512, 256, 256, 256)  # the six maps
    block_widths: tuple[int, ...] = (256, 256, 128, 128, 128)  # 1x1 convs of the extra blocks


def _backbone() -> nn.Sequential:
    """ResNet-50 conv1..layer3 (torchvision names inside), layer3 at stride 1."""
    def stage(in_ch: int, width: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [Bottleneck(in_ch, width, stride)]
        layers += [Bottleneck(width * 4, width, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
        stage(64, 64, 3, 1), stage(256, 128, 4, 2), stage(512, 256, 6, 1))  # layer3: stride 2 -> 1


def _extra_block(in_ch: int, width: int, out_ch: int, downsample: bool) -> nn.Sequential:
    stride, padding = (2, 1) if downsample else (1, 0)
    return nn.Sequential(
        nn.Conv2d(in_ch, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.Conv2d(width, out_ch, 3, stride, padding, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class SSD300(nn.Module):
    def __init__(self, cfg: SSDConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.feature_channels
        self.feature_extractor = _backbone()
        self.additional_blocks = nn.ModuleList([
            _extra_block(ch[i], cfg.block_widths[i], ch[i + 1], downsample=i < 3) for i in range(len(ch) - 1)])
        self.loc = nn.ModuleList([nn.Conv2d(c, n * 4, 3, padding=1)
                                  for c, n in zip(ch, cfg.boxes_per_location)])
        self.conf = nn.ModuleList([nn.Conv2d(c, n * cfg.num_classes, 3, padding=1)
                                   for c, n in zip(ch, cfg.boxes_per_location)])

    def forward(self, x):
        if min(x.shape[-2:]) < MIN_IMAGE:
            raise ValueError(f"image {tuple(x.shape[-2:])} is too small for SSD300: its last two "
                             f"unpadded 3x3 convs need at least {MIN_IMAGE}x{MIN_IMAGE} pixels")
        n = x.shape[0]
        x = self.feature_extractor(x)
        features = [x]
        for block in self.additional_blocks:
            x = block(x)
            features.append(x)
        locs = torch.cat([loc(f).reshape(n, 4, -1) for loc, f in zip(self.loc, features)], 2)
        confs = torch.cat([conf(f).reshape(n, self.cfg.num_classes, -1) for conf, f in zip(self.conf, features)], 2)
        return locs, confs


register(ZooEntry("ssd300", "detection", "image", lambda: SSD300(SSDConfig()),
                  "NVIDIA DeepLearningExamples PyTorch/Detection/SSD ssd/model.py SSD300(ResNet50): "
                  "22,894,902 by construction (no published count)",
                  default_image=300, num_classes=81))
