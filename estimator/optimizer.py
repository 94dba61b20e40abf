"""The optimizer step of a training step: which optimizers exist and how capture records them.

After the backward, capture runs the optimizer update as the single fused aten op torch has
for it (aten._fused_adamw_, _fused_adam_, _fused_sgd_: one pass over the parameters, their
gradients and the optimizer state, the kernel torch's `fused=True` optimizers launch), on the
fake parameters and gradients, in phase "optimizer". Its cost rule (estimator/rules/optimizer.py)
charges each tensor once. Under amp-* precisions the parameters, gradients and state it touches
are fp32 master copies (op class "optimizer" stays fp32, see estimator.precision).

  sgd           p -= lr * g                                  state: none
  sgd-momentum  buf = momentum * buf + g; p -= lr * buf      state: 1 tensor per parameter
  adam, adamw   two moments (AdamW: decoupled weight decay)  state: 2 tensors per parameter

Example:
    >>> step = capture(model, inputs, mode="train", optimizer="sgd-momentum")
    >>> [n.op for n in step.nodes if n.phase == "optimizer"]
    [<OpOverload(op='aten._fused_sgd_', overload='default')>]
"""
from __future__ import annotations

from typing import Callable

import torch
from torch._prims_common import is_non_overlapping_and_dense_or_false
from torch._subclasses.fake_tensor import FakeTensor

from .data_dependent import fake_empty
from .errors import RooflineError

STATE_TENSORS = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}
OPTIMIZERS = tuple(STATE_TENSORS)
DEFAULT_OPTIMIZER = "adamw"
CLASS_NAMES = {"sgd": "SGD", "sgd-momentum": "SGD", "adam": "Adam", "adamw": "AdamW"}


def check_optimizer(name: str) -> str:
    if name not in STATE_TENSORS:
        raise RooflineError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    return name


def prepare_fused_step(name: str, params: list[torch.Tensor]) -> Callable[[list[torch.Tensor]], None]:
    """Make the state of optimizer `name` for `params` (fake tensors) and return update(grads),
    which runs one fused update of the parameters."""
    states = [[_moment_like(p) for p in params] for _ in range(STATE_TENSORS[name])]
    steps = [_step_count(p) for p in params]

    def update(grads: list[torch.Tensor]) -> None:
        if name in ("sgd", "sgd-momentum"):
            torch._fused_sgd_(params, grads, states[0] if states else [], weight_decay=0.0,
                              momentum=0.9 if states else 0.0, lr=0.1, dampening=0.0, nesterov=False,
                              maximize=False, is_first_step=False)
            return
        fused = torch._fused_adamw_ if name == "adamw" else torch._fused_adam_
        fused(params, grads, states[0], states[1], [], steps, lr=1e-3, beta1=0.9, beta2=0.999,
              weight_decay=0.01 if name == "adamw" else 0.0, eps=1e-8, amsgrad=False, maximize=False)
    return update


def _moment_like(p: torch.Tensor) -> torch.Tensor:
    """A state tensor of `p`'s shape, dtype and strides (torch.zeros_like's): made directly
    where `p` is a dense CPU fake tensor, a fifth of the time of a factory call through
    FakeTensorMode, for each of a 70B model's 723 parameters and its two moments (the values
    are never read)."""
    if _direct(p) and is_non_overlapping_and_dense_or_false(p):
        return fake_empty(p.fake_mode, p.shape, p.dtype, stride=p.stride())
    return torch.zeros_like(p)


def _step_count(p: torch.Tensor) -> torch.Tensor:
    """`p`'s step count: a scalar of the default dtype on its device (made directly, as above)."""
    if _direct(p):
        return fake_empty(p.fake_mode, (), torch.get_default_dtype())
    return torch.ones((), device=p.device)


def _direct(p: torch.Tensor) -> bool:
    return type(p) is FakeTensor and p.device.type == "cpu"
