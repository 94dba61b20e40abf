"""The optimizer update as eager PyTorch runs it by default on a GPU: the foreach implementation.

`torch.optim.SGD/Adam/AdamW(params)` on CUDA tensors default to foreach=True (fused=False): the
update is a sequence of `torch._foreach_*` ops, each one pass over the parameters (or their state)
launched as multi-tensor kernels. The capture records the single fused op (estimator.optimizer);
eager execution replaces it by these passes. Per parameter element, in fp32 tensors read + written
(from torch/optim/sgd.py, adam.py, adamw.py, `_multi_tensor_*`, capturable=False, amsgrad=False,
maximize=False; our update has no weight decay for SGD and Adam, decoupled decay for AdamW):

  sgd           params += -lr * grads                                           (2 read, 1 written)
  sgd-momentum  bufs *= m (1, 1); bufs += grads (2, 1); params += -lr * bufs (2, 1)
  adam          exp_avgs.lerp_(grads) (2, 1); exp_avg_sqs *= b2 (1, 1);
                exp_avg_sqs += (1 - b2) g g (2, 1); denom = sqrt(exp_avg_sqs) (1, 1);
                denom /= bc2 (1, 1); denom += eps (1, 1); params.addcdiv_(exp_avgs, denom) (3, 1)
  adamw         params *= 1 - lr wd (1, 1), then as adam
A pass launches one kernel per chunk of tensors: multi_tensor_apply starts a new launch when it
holds MAX_TENSORS[depth] tensor lists or MAX_BLOCKS blocks of CHUNK elements
(aten/src/ATen/native/cuda/MultiTensorApply.cuh: depth_to_max_tensors {110, 64, 48, 36, 30},
depth_to_max_blocks 320, kChunkSize 65536). Each `_foreach_*` call is one op on the host.

Example:
    >>> [p.read for p in PASSES["sgd-momentum"]]
    [1, 2, 2]
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Pass:
    read: int  # tensors read per parameter element
    written: int  # tensors written per parameter element

    @property
    def depth(self) -> int:
        """Tensor lists the multi-tensor kernel walks (distinct read and written lists)."""
        return max(self.read, self.written)


_ADAM = (Pass(2, 1), Pass(1, 1), Pass(2, 1), Pass(1, 1), Pass(1, 1), Pass(1, 1), Pass(3, 1))
PASSES: dict[str, tuple[Pass, ...]] = {
    "sgd": (Pass(2, 1),),
    "sgd-momentum": (Pass(1, 1), Pass(2, 1), Pass(2, 1)),
    "adam": _ADAM,
    "adamw": (Pass(1, 1),) + _ADAM,
}
MAX_TENSORS = {1: 110, 2: 64, 3: 48, 4: 36, 5: 30}
MAX_BLOCKS = 320
CHUNK = 65536


def launches(tensors: int, elements: int, depth: int) -> int:
    """Kernel launches of one foreach pass over `tensors` tensors holding `elements` elements: a
    launch ends at MAX_TENSORS tensors or MAX_BLOCKS chunks (each tensor at least one chunk)."""
    if tensors == 0:
        return 0
    chunks = max(tensors, math.ceil(elements / CHUNK))
    return max(math.ceil(tensors / MAX_TENSORS[min(depth, 5)]), math.ceil(chunks / MAX_BLOCKS))
