"""Shape and dtype of a tensor as the cost rules see it: no data, no device.

Example:
    >>> TensorMeta.of(torch.empty(2, 3)).numel
    6
    >>> TensorMeta.of(torch.empty(3).expand(2, 3)).distinct
    3
    >>> TensorMeta.of(torch.empty(2, 8, 4, 4).to(memory_format=torch.channels_last)).channels_last
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """`distinct` counts the elements in memory: a broadcast (stride-0) dimension is read once.
    `channels_last`: a 4-D (N, C, H, W) tensor laid out N, H, W, C in memory (channels innermost,
    torch.channels_last), which decides the GPU kernels of convolutions and batch norm."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    distinct: int
    channels_last: bool = False

    @staticmethod
    def of(t: torch.Tensor) -> "TensorMeta":
        shape = tuple(int(d) for d in t.shape)
        stride = t.stride()
        distinct = math.prod(d for d, s in zip(shape, stride) if s != 0)
        # channels innermost (stride 1 on C, C > 1) while W is not: NHWC in memory
        channels_last = len(shape) == 4 and shape[1] > 1 and stride[1] == 1 and stride[3] == shape[1]
        return TensorMeta(shape, t.dtype, distinct, channels_last)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype.is_floating_point

    def __repr__(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        return f"{dt}{list(self.shape)}"
