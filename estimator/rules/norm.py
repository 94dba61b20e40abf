"""Normalisation layers, forward and backward, per element of the normalised input x.

Forward with statistics (batch norm in training, layer / group / RMS norm): mean 1 + variance
3 (subtract, square, add) + normalise 2 + affine 2 = 8 FLOPs per element (RMS norm: no mean
and no shift, 5). Batch norm in eval uses running statistics: normalise + affine = 4.
Backward, all gradients asked for: grad_bias 1, grad_weight 2, grad_input
rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)) about 8: 11 per element; each gradient the
output mask drops removes its part. Unfused RMSNorm (x * rsqrt(mean(x^2) + eps) * w, as in
Hugging Face Llama) is costed op by op by the elementwise and reduction rules.
"""
from __future__ import annotations

from ..costs import Cost, cost_rule, read_write


def _norm(node, nbytes, flops_per_element: int) -> Cost:
    return Cost(flops_per_element * node.inputs[0].numel, *read_write(node, nbytes), "norm")


def _backward(node, nbytes, mask, x) -> Cost:
    per_element = 8 * bool(mask[0]) + 2 * bool(mask[1]) + 1 * bool(mask[2])
    return Cost(per_element * x.numel, *read_write(node, nbytes), "norm")


@cost_rule("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
           "cudnn_batch_norm", "miopen_batch_norm", op_class="norm")
def batch_norm(node, nbytes):
    # args: (input, weight, bias, running_mean, running_var, training, ...); the
    # _native_batch_norm_legit overload without running stats has training at index 3
    training = next((a for a in node.args[3:6] if isinstance(a, bool)), True)
    return _norm(node, nbytes, 8 if training else 4)


@cost_rule("_native_batch_norm_legit_no_training", op_class="norm")
def batch_norm_eval(node, nbytes):
    return _norm(node, nbytes, 4)


@cost_rule("native_batch_norm_backward", "batch_norm_backward", op_class="norm")
def batch_norm_backward(node, nbytes):
    return _backward(node, nbytes, node.args[9], node.args[1])


@cost_rule("cudnn_batch_norm_backward", "miopen_batch_norm_backward", op_class="norm")
def batch_norm_backward_vendor(node, nbytes):
    return _backward(node, nbytes, (True, True, True), node.args[0])


@cost_rule("native_layer_norm", "native_group_norm", op_class="norm")
def layer_or_group_norm(node, nbytes):
    return _norm(node, nbytes, 8)


@cost_rule("native_layer_norm_backward", op_class="norm")
def layer_norm_backward(node, nbytes):
    return _backward(node, nbytes, node.args[7], node.args[1])


@cost_rule("native_group_norm_backward", op_class="norm")
def group_norm_backward(node, nbytes):
    return _backward(node, nbytes, node.args[9], node.args[1])


@cost_rule("_fused_rms_norm", "rms_norm", op_class="norm")
def rms_norm(node, nbytes):
    # mean of squares 2, rsqrt scale 1, weight 1, plus the add of eps amortised: 5 per element
    return _norm(node, nbytes, 5)


@cost_rule("_fused_rms_norm_backward", op_class="norm")
def rms_norm_backward(node, nbytes):
    # output_mask = (grad_input, grad_weight); grad_input about 7 per element, grad_weight 2
    mask = node.args[5]
    per_element = 7 * bool(mask[0]) + 2 * bool(mask[1])
    return Cost(per_element * node.args[1].numel, *read_write(node, nbytes), "norm")


@cost_rule("_weight_norm_interface", op_class="norm")
def weight_norm(node, nbytes):
    # w = v * g / ||v|| over all but `dim`: square and add (2), then scale (2) per element of v
    return _norm(node, nbytes, 4)


@cost_rule("_weight_norm_interface_backward", op_class="norm")
def weight_norm_backward(node, nbytes):
    # grad_g = sum(grad_w * v) / ||v|| (2 per element); grad_v = g/||v|| (grad_w - v * grad_g/||v||) (4)
    return Cost(6 * node.args[1].numel, *read_write(node, nbytes), "norm")
