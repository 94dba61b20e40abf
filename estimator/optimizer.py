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
    states = [[torch.zeros_like(p) for p in params] for _ in range(STATE_TENSORS[name])]
    steps = [torch.ones((), device=p.device) for p in params]

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
