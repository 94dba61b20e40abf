"""U-Net (Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation"), laid out as milesial/Pytorch-UNet with bilinear=False (its UNet(n_channels=3,
n_classes=2), the Carvana setting of its train.py and hubconf).

  * widths 64-128-256-512-1024; each level a double 3x3 conv (conv, BN, ReLU, twice) with
    padding=1 and no conv bias (milesial's current unet_parts.py; the paper's convs are
    unpadded and have no BN);
  * 2x2 max pooling down, 2x2 stride-2 transposed convs up (halving the channels), the skip
    concatenated before the up path's double conv; a 1x1 conv to the class logits.
With padding the output is the input's size, (N, classes, H, W), and every skip lines up
exactly when H and W are multiples of 16 (four poolings), which the model requires:
milesial's pad-to-fit is therefore not needed. 256x256 is the zoo's default (the paper's
572x572 is not a multiple of 16; it suits the unpadded original).

Parameters for 3 input channels and 2 classes: 31,037,698 by construction:
  * double conv (a -> b): 9ab + 9b^2 + 4b (two convs, two BNs);
  * up (a -> a/2): transposed conv 4a(a/2) + a/2, then double conv (a -> a/2);
  * output 1x1 conv: 64 x classes + classes.
(31,037,763 is the same network with 3 classes; milesial's older convs with biases add 5,888.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import ZooEntry, register


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 3
    num_classes: int = 2
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class Down(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = double_conv(in_ch, out_ch)

    def forward(self, x):
        return self.conv(self.pool(x))


class Up(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, in_ch // 2, 2, stride=2)
        self.conv = double_conv(in_ch, out_ch)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.inc = double_conv(cfg.in_channels, w[0])
        self.downs = nn.ModuleList([Down(a, b) for a, b in zip(w[:-1], w[1:])])
        self.ups = nn.ModuleList([Up(b, a) for a, b in reversed(list(zip(w[:-1], w[1:])))])
        self.outc = nn.Conv2d(w[0], cfg.num_classes, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        multiple = 2 ** len(self.downs)
        if h % multiple or w % multiple or min(h, w) < multiple:
            raise ValueError(f"image {h}x{w} does not fit the U-Net: height and width must be "
                             f"positive multiples of {multiple} (one halving per pooling)")
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)


register(ZooEntry("unet", "segmentation", "image", lambda: UNet(UNetConfig()),
                  "milesial/Pytorch-UNet UNet(3, 2, bilinear=False), BN and padded convs without bias: "
                  "31,037,698 by construction",
                  default_image=256, num_classes=2))
