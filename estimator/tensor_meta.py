"""Shape and dtype of a tensor as the cost rules see it: no data, no device.

Example:
    >>> TensorMeta.of(torch.empty(2, 3)).numel
    6
    >>> TensorMeta.of(torch.empty(3).expand(2, 3)).distinct
    3
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """`distinct` counts the elements in memory: a broadcast (stride-0) dimension is read once."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    distinct: int

    @staticmethod
    def of(t: torch.Tensor) -> "TensorMeta":
        shape = tuple(int(d) for d in t.shape)
        distinct = math.prod(d for d, s in zip(shape, t.stride()) if s != 0)
        return TensorMeta(shape, t.dtype, distinct)

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
