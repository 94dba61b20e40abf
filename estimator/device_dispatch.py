"""Capture what a CUDA device would run where the CPU dispatcher picks a different kernel.

The step is captured on CPU fake tensors, so the CPU's kernel choices would leak into GPU
predictions. The one that matters most: scaled_dot_product_attention with dropout falls back on
the CPU to the unfused math path (scores of s x s written, softmaxed, dropped out and saved for
the backward), while CUDA runs a fused flash or memory-efficient kernel that applies dropout
inside the kernel from a random seed (nothing of size s x s reaches memory; the backward
regenerates the mask). Under `cuda_dispatch()` such a call is recorded as the fused kernel: the
same call with dropout_p=0, which the CPU also runs fused, with the same FLOPs and bytes as
the CUDA kernel with dropout (the seed and offset are two scalars).

Recurrent layers: nn.LSTM, nn.GRU and nn.RNN run on a CPU one time step (or one layer) at a
time, while cuDNN runs the whole stack as one call; under `cuda_dispatch()` they are recorded
as that one call and its one backward (estimator.fused_rnn). Packed sequences keep the CPU path.

Example:
    >>> with cuda_dispatch():
    ...     y = F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)  # recorded as the fused kernel
"""
from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from .fused_rnn import MODES as RNN_MODES

DISPATCHES = ("cpu", "cuda")


RNN_FUNCTIONS = {fn: mode for mode, fn in RNN_MODES.items()}


class cuda_dispatch(TorchFunctionMode):
    """SDPA with dropout recorded as CUDA's fused kernel, recurrent stacks as cuDNN's one call
    (module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in RNN_FUNCTIONS and len(args) == 9 and isinstance(args[3], bool) and not kwargs:
            return _fused_rnn(RNN_FUNCTIONS[func], *args)
        if func is F.scaled_dot_product_attention:
            if len(args) > 4:  # dropout_p given by position: (q, k, v, attn_mask, dropout_p, ...)
                args = (*args[:4], 0.0, *args[5:])
            else:
                kwargs["dropout_p"] = 0.0
        return func(*args, **kwargs)


def _fused_rnn(mode, input, state, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    """torch.<mode>(...) without packed sequences, as one roofline::rnn call."""
    hx, cx = state if mode == "lstm" else (state, None)
    output, h_n, c_n = torch.ops.roofline.rnn(input, list(params), hx, cx, mode, has_biases, num_layers,
                                              bidirectional, batch_first)
    return (output, h_n, c_n) if mode == "lstm" else (output, h_n)  # as torch.lstm / torch.gru return


def dispatch_for(kinds) -> str:
    """'cuda' when every chip is an accelerator, else 'cpu' (the CPU's own kernels)."""
    return "cpu" if any(kind == "cpu" for kind in kinds) else "cuda"
