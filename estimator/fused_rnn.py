"""A recurrent layer stack as one op, the way cuDNN runs it on a GPU.

On a CPU, nn.GRU and nn.RNN run step by step (a few small ops per time step and layer) and
nn.LSTM one oneDNN kernel per layer: capture records what the CPU runs. On a GPU, cuDNN runs
the whole stack as one call (``_cudnn_rnn``) and its backward as one more. These two ops,
``roofline::rnn`` and ``roofline::rnn_backward``, stand for those calls in a step captured for a
GPU (estimator.device_dispatch.cuda_dispatch records nn.LSTM / nn.GRU / nn.RNN through them);
estimator.rules.rnn costs them by the formula. Run on real tensors, ``roofline::rnn`` computes
what torch's own function computes, so a model is never changed by being captured.

Example:
    >>> out, h_n, c_n = torch.ops.roofline.rnn(x, weights, h0, None, "gru", True, 2, False, True)
"""
from __future__ import annotations

import torch
from torch import Tensor

MODES = {"lstm": torch.lstm, "gru": torch.gru, "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}


@torch.library.custom_op("roofline::rnn", mutates_args=())
def rnn(input: Tensor, weights: list[Tensor], hx: Tensor, cx: Tensor | None, mode: str, has_biases: bool,
        num_layers: int, bidirectional: bool, batch_first: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(output, h_n, c_n); c_n is h_n's copy for cells without one (GRU, RNN)."""
    state = (hx, cx) if mode == "lstm" else hx
    out = MODES[mode](input, state, weights, has_biases, num_layers, 0.0, False, bidirectional, batch_first)
    h_n, c_n = (out[1], out[2]) if mode == "lstm" else (out[1], out[1])  # torch.lstm: (output, h_n, c_n)
    return out[0].clone(), h_n.clone(), c_n.clone()  # a custom op's outputs may not alias each other


@rnn.register_fake
def _rnn_fake(input, weights, hx, cx, mode, has_biases, num_layers, bidirectional, batch_first):
    directions = 2 if bidirectional else 1
    output = input.new_empty((*input.shape[:-1], directions * hx.shape[-1]))
    return output, torch.empty_like(hx), torch.empty_like(cx if cx is not None else hx)


@torch.library.custom_op("roofline::rnn_backward", mutates_args=())
def rnn_backward(input: Tensor, weights: list[Tensor], hx: Tensor, output: Tensor, grad_output: Tensor,
                 mode: str, has_biases: bool, num_layers: int, bidirectional: bool,
                 batch_first: bool) -> tuple[Tensor, Tensor, list[Tensor]]:
    """(grad_input, grad_hx, grad_weights), computed by autograd through torch's own function."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in (input, hx, *weights)]
        cx = torch.zeros_like(leaves[1]) if mode == "lstm" else None
        out = rnn(leaves[0], leaves[2:], leaves[1], cx, mode, has_biases, num_layers, bidirectional, batch_first)
        grads = torch.autograd.grad(out[0], leaves, grad_output, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, leaves)]
    return grads[0], grads[1], grads[2:]


@rnn_backward.register_fake
def _rnn_backward_fake(input, weights, hx, output, grad_output, mode, has_biases, num_layers, bidirectional,
                       batch_first):
    return torch.empty_like(input), torch.empty_like(hx), [torch.empty_like(w) for w in weights]


def _setup(ctx, inputs, output):
    input, weights, hx, cx, mode, has_biases, num_layers, bidirectional, batch_first = inputs
    ctx.save_for_backward(input, hx, output[0], *weights)
    ctx.config = (mode, has_biases, num_layers, bidirectional, batch_first)


def _backward(ctx, grad_output, grad_h_n, grad_c_n):
    input, hx, output, *weights = ctx.saved_tensors
    grad_input, grad_hx, grad_weights = rnn_backward(input, weights, hx, output, grad_output, *ctx.config)
    return grad_input, grad_weights, grad_hx, None, None, None, None, None, None


rnn.register_autograd(_backward, setup_context=_setup)
