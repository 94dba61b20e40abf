"""EfficientNet-B0..B4 (Tan & Le 2019), laid out as torchvision's efficientnet_b*.

Channels scale by make_divisible(c * width, 8), block repeats by ceil(n * depth); the squeeze-excite
width is max(1, block input channels // 4) as in torchvision. Stochastic depth is left out: it is
the identity at inference and has no parameters. Counts match torchvision exactly (b0: 5,288,548).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from .mobilenet import ConvBNAct, SqueezeExcitation, make_divisible
from .registry import ZooEntry, register
from .resnet import check_image_size

# (expand ratio, kernel, first stride, in channels, out channels, repeats) for B0, the paper's Table 1
B0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
             (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


@dataclass(frozen=True)
class EfficientNetConfig:
    name: str
    width: float  # channel multiplier
    depth: float  # block-repeat multiplier
    dropout: float
    num_classes: int = 1000


class MBConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        self.use_res_connect = stride == 1 and in_ch == out_ch
        hidden = make_divisible(in_ch * expand)
        layers = [ConvBNAct(in_ch, hidden, 1, act=nn.SiLU)] if hidden != in_ch else []
        layers += [ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcitation(hidden, max(1, in_ch // 4), act=nn.SiLU),
                   ConvBNAct(hidden, out_ch, 1, act=None)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x) if self.use_res_connect else self.block(x)


class EfficientNet(nn.Module):
    min_image = 32  # the total stride

    def __init__(self, cfg: EfficientNetConfig):
        super().__init__()
        self.cfg = cfg
        def ch(c: int) -> int:
            return make_divisible(c * cfg.width)

        stem = ch(B0_STAGES[0][3])
        layers, in_ch = [ConvBNAct(3, stem, 3, 2, act=nn.SiLU)], stem
        for expand, kernel, stride, _, out, repeats in B0_STAGES:
            stage = []
            for i in range(math.ceil(repeats * cfg.depth)):
                stage.append(MBConv(in_ch, ch(out), kernel, stride if i == 0 else 1, expand))
                in_ch = ch(out)
            layers.append(nn.Sequential(*stage))
        layers.append(ConvBNAct(in_ch, 4 * in_ch, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout, inplace=True), nn.Linear(4 * in_ch, cfg.num_classes))

    def forward(self, x):
        check_image_size(x, self.min_image, self.cfg.name)
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


# (name, width, depth, dropout, eval image size), torchvision's efficientnet_b0..b4 and their weights' crops
_CONFIGS = [
    ("efficientnet_b0", 1.0, 1.0, 0.2, 224),  # 5,288,548
    ("efficientnet_b1", 1.0, 1.1, 0.2, 240),  # 7,794,184
    ("efficientnet_b2", 1.1, 1.2, 0.3, 288),  # 9,109,994
    ("efficientnet_b3", 1.2, 1.4, 0.3, 300),  # 12,233,232
    ("efficientnet_b4", 1.4, 1.8, 0.4, 380),  # 19,341,616
]

for _name, _width, _depth, _dropout, _image in _CONFIGS:
    _cfg = EfficientNetConfig(_name, _width, _depth, _dropout)
    register(ZooEntry(_name, "cnn", "image", lambda cfg=_cfg: EfficientNet(cfg),
                      f"torchvision EfficientNet_B{_name[-1]}_Weights.IMAGENET1K_V1 num_params (reference_counts.yaml)",
                      default_image=_image, num_classes=1000))
