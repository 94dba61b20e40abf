"""Kernel keys: which measured efficiency curve an op's time follows.

A key is the aten op's name ("native_batch_norm", "gelu_backward"), with a variant where one
op runs very different kernels: "convolution.depthwise" (one input channel per group,
groups > 1) and "convolution.pointwise" (1x1 kernel, groups = 1), the same for
"convolution_backward"; and "native_batch_norm.eval" (running statistics: one scale and
shift, where training mode first reduces the batch). A hardware YAML may hold a
curve per key (`achievable.kernels`, written by `roofline calibrate`); an op whose key has
no curve follows its op class's roofs.

Example:
    >>> kernel_key(conv_node_with_groups_equal_channels)
    'convolution.depthwise'
"""
from __future__ import annotations

import torch

from .capture import OpNode

VARIANTS = {"convolution": ("depthwise", "pointwise"), "convolution_backward": ("depthwise", "pointwise"),
            "native_batch_norm": ("eval",)}
_CONV_WEIGHT_GROUPS = {"convolution": (1, 8), "convolution_backward": (2, 9)}  # arg positions
_BATCH_NORM_TRAINING = 5  # arg position of `training` in native_batch_norm


def kernel_key(node: OpNode) -> str:
    name = node.op.overloadpacket.__name__
    if name == "native_batch_norm":
        return name if node.args[_BATCH_NORM_TRAINING] else f"{name}.eval"
    where = _CONV_WEIGHT_GROUPS.get(name)
    if where is None:
        return name
    weight, groups = node.args[where[0]], node.args[where[1]]
    if groups > 1 and weight.shape[1] == 1:
        return f"{name}.depthwise"
    if groups == 1 and all(k == 1 for k in weight.shape[2:]):
        return f"{name}.pointwise"
    return name


def is_known_key(key: str) -> bool:
    """An aten op name, optionally with one of its VARIANTS (for YAML validation)."""
    base, _, variant = key.partition(".")
    if variant and variant not in VARIANTS.get(base, ()):
        return False
    return isinstance(getattr(torch.ops.aten, base, None), torch._ops.OpOverloadPacket)
