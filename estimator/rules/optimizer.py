"""The fused optimizer updates (see estimator.optimizer): one pass over parameters, gradients
and state, each tensor read once and the updated ones written once.

FLOPs per parameter element, counting each add, multiply, divide and square root as one:
  _fused_sgd_   without momentum: p -= lr * g                                       2
                with momentum: buf = m * buf + g (2), p -= lr * buf (2)              4
  _fused_adam_  m = b1 m + (1 - b1) g (3), v = b2 v + (1 - b2) g^2 (4),
                p -= lr * (m / bc1) / (sqrt(v / bc2) + eps) (6)                     13
  _fused_adamw_ the same plus the decoupled decay p *= 1 - lr * wd (1)               14
Bytes: reads params, grads and state; writes params and state (the step counters are scalars).
"""
from __future__ import annotations

from ..costs import Cost, cost_rule

ADAM_FLOPS = {"_fused_adam_": 13, "_fused_adamw_": 14}


def _elements(tensors) -> int:
    return sum(t.numel for t in tensors)


def _bytes(tensors, nbytes) -> int:
    return sum(nbytes(t) for t in tensors)


@cost_rule("_fused_sgd_", op_class="optimizer")
def fused_sgd(node, nbytes):
    params, grads, momentum = node.args[0], node.args[1], node.args[2] or []
    flops = (4 if momentum else 2) * _elements(params)
    read = _bytes(params, nbytes) + _bytes(grads, nbytes) + _bytes(momentum, nbytes)
    return Cost(flops, read, _bytes(params, nbytes) + _bytes(momentum, nbytes), "optimizer")


@cost_rule("_fused_adam_", "_fused_adamw_", op_class="optimizer")
def fused_adam(node, nbytes):
    params, grads, exp_avgs, exp_avg_sqs, max_sqs = node.args[:5]
    state = [*exp_avgs, *exp_avg_sqs, *(max_sqs or [])]
    flops = ADAM_FLOPS[node.op.overloadpacket.__name__] * _elements(params)
    read = _bytes(params, nbytes) + _bytes(grads, nbytes) + _bytes(state, nbytes)
    return Cost(flops, read, _bytes(params, nbytes) + _bytes(state, nbytes), "optimizer")
