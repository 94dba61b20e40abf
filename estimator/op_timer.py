"""Time every aten op of a real step, at the level the capture records them.

`OpTimer` is a dispatch mode that wraps each aten op call in time.perf_counter (CUDA:
synchronize before and after), so its list of (op name, seconds) lines up with the nodes of a
`capture` of the same step. `align` pairs the two sequences by op name (difflib), because a
real run can differ from the fake one by an op or two (an allocation, a copy). The dispatch
mode's own Python cost is outside the timed call.

Example:
    >>> with OpTimer() as timer:
    ...     model(x)
    >>> timer.ops[0]
    ('aten.convolution.default', 0.0031)
"""
from __future__ import annotations

import difflib
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class OpTimer(TorchDispatchMode):
    """Records (op name, seconds) for every non-prim aten op run under it."""

    def __init__(self, sync=lambda: None):
        super().__init__()
        self.ops: list[tuple[str, float]] = []
        self._sync = sync

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self._sync()
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self._sync()
        seconds = time.perf_counter() - start
        if func.namespace != "prim":
            self.ops.append((str(func), seconds))
        return out


def cuda_sync(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def align(captured: list[str], timed: list[str]) -> list[tuple[int, int]]:
    """(index in captured, index in timed) of the ops both sequences share, in order."""
    matcher = difflib.SequenceMatcher(None, captured, timed, autojunk=False)
    return [(b.a + k, b.b + k) for b in matcher.get_matching_blocks() for k in range(b.size)]
