"""MobileNetV2 (Sandler et al. 2018) and MobileNetV3-Large (Howard et al. 2019), as torchvision.

Same module layout as torchvision's mobilenet_v2 / mobilenet_v3_large (features, classifier);
parameter counts match torchvision exactly (3,504,872 and 5,483,032). ConvBNAct, SqueezeExcitation
and make_divisible are shared with efficientnet.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .registry import ZooEntry, register
from .resnet import check_image_size


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round `v` to the nearest multiple of `divisor`, never going down by more than 10%."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNAct(nn.Sequential):
    """Conv (no bias, "same" padding) -> BatchNorm -> activation; torchvision's Conv2dNormActivation."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: Callable[..., nn.Module] | None = nn.ReLU, bn_eps: float = 1e-5):
        layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(out_ch, eps=bn_eps)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Hu et al. 2018: global pool -> 1x1 conv down -> act -> 1x1 conv up -> gate (torchvision.ops)."""

    def __init__(self, channels: int, squeeze: int, act: Callable[..., nn.Module] = nn.ReLU,
                 gate: Callable[..., nn.Module] = nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = act()
        self.scale_activation = gate()

    def forward(self, x):
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


# ---------------------------------------------------------------------------- MobileNetV2

@dataclass(frozen=True)
class MobileNetV2Config:
    name: str = "mobilenet_v2"
    # (expand ratio t, out channels c, repeats n, first stride s), the paper's Table 2
    blocks: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    stem: int = 32
    last_channel: int = 1280
    dropout: float = 0.2
    num_classes: int = 1000


class InvertedResidualV2(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int):
        super().__init__()
        hidden = in_ch * expand
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers = [ConvBNAct(in_ch, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]  # linear bottleneck
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    min_image = 32  # the total stride

    def __init__(self, cfg: MobileNetV2Config):
        super().__init__()
        self.cfg = cfg
        layers, in_ch = [ConvBNAct(3, cfg.stem, 3, 2, act=nn.ReLU6)], cfg.stem
        for t, c, n, s in cfg.blocks:
            for i in range(n):
                layers.append(InvertedResidualV2(in_ch, c, s if i == 0 else 1, t))
                in_ch = c
        layers.append(ConvBNAct(in_ch, cfg.last_channel, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.last_channel, cfg.num_classes))

    def forward(self, x):
        check_image_size(x, self.min_image, self.cfg.name)
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


# ---------------------------------------------------------------------------- MobileNetV3

@dataclass(frozen=True)
class MobileNetV3Config:
    name: str
    # (in, kernel, expanded, out, squeeze-excite?, hard-swish? (else ReLU), stride) per block
    blocks: tuple[tuple[int, int, int, int, bool, bool, int], ...]
    last_channel: int
    dropout: float = 0.2
    num_classes: int = 1000


_V3_BN_EPS = 1e-3


class InvertedResidualV3(nn.Module):
    def __init__(self, in_ch: int, kernel: int, expanded: int, out_ch: int, use_se: bool, use_hs: bool,
                 stride: int):
        super().__init__()
        act = nn.Hardswish if use_hs else nn.ReLU
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers = [ConvBNAct(in_ch, expanded, 1, act=act, bn_eps=_V3_BN_EPS)] if expanded != in_ch else []
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act, bn_eps=_V3_BN_EPS))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4), gate=nn.Hardsigmoid))
        layers.append(ConvBNAct(expanded, out_ch, 1, act=None, bn_eps=_V3_BN_EPS))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x) if self.use_res_connect else self.block(x)


class MobileNetV3(nn.Module):
    min_image = 32  # the total stride

    def __init__(self, cfg: MobileNetV3Config):
        super().__init__()
        self.cfg = cfg
        first, last = cfg.blocks[0][0], cfg.blocks[-1][3]
        self.features = nn.Sequential(
            ConvBNAct(3, first, 3, 2, act=nn.Hardswish, bn_eps=_V3_BN_EPS),
            *[InvertedResidualV3(*block) for block in cfg.blocks],
            ConvBNAct(last, 6 * last, 1, act=nn.Hardswish, bn_eps=_V3_BN_EPS),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(6 * last, cfg.last_channel), nn.Hardswish(inplace=True), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.last_channel, cfg.num_classes))

    def forward(self, x):
        check_image_size(x, self.min_image, self.cfg.name)
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


_RE, _HS = False, True
MOBILENET_V3_LARGE = MobileNetV3Config("mobilenet_v3_large", (  # the paper's Table 1
    (16, 3, 16, 16, False, _RE, 1),
    (16, 3, 64, 24, False, _RE, 2),
    (24, 3, 72, 24, False, _RE, 1),
    (24, 5, 72, 40, True, _RE, 2),
    (40, 5, 120, 40, True, _RE, 1),
    (40, 5, 120, 40, True, _RE, 1),
    (40, 3, 240, 80, False, _HS, 2),
    (80, 3, 200, 80, False, _HS, 1),
    (80, 3, 184, 80, False, _HS, 1),
    (80, 3, 184, 80, False, _HS, 1),
    (80, 3, 480, 112, True, _HS, 1),
    (112, 3, 672, 112, True, _HS, 1),
    (112, 5, 672, 160, True, _HS, 2),
    (160, 5, 960, 160, True, _HS, 1),
    (160, 5, 960, 160, True, _HS, 1),
), last_channel=1280)

register(ZooEntry("mobilenet_v2", "cnn", "image", lambda: MobileNetV2(MobileNetV2Config()),
                  "torchvision MobileNet_V2_Weights.IMAGENET1K_V1 num_params (reference_counts.yaml)",
                  default_image=224, num_classes=1000))
register(ZooEntry("mobilenet_v3_large", "cnn", "image", lambda: MobileNetV3(MOBILENET_V3_LARGE),
                  "torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1 num_params (reference_counts.yaml)",
                  default_image=224, num_classes=1000))
