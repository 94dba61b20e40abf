"""Elementwise ops: FLOPs = (FLOPs per output element) x output elements.

Per-element weights: 1 for arithmetic, comparisons and cheap activations; transcendental
activations count the arithmetic of their usual formulas (sigmoid = 1/(1+exp(-x)): 4;
tanh-GELU: 8; exact GELU via erf: 5; SiLU = x*sigmoid(x): 5), an exp or erf counted as one
FLOP as hardware units evaluate them. Backward ops count the derivative's arithmetic.
Bytes: inputs (broadcast ones once) + output.
"""
from __future__ import annotations

import torch

from ..costs import Cost, cost_rule, read_write


def _with_inplace(*names: str) -> tuple[str, ...]:
    """The ops and their in-place variants (add_, relu_) where torch has one."""
    return names + tuple(n + "_" for n in names if hasattr(torch.ops.aten, n + "_"))


def _elementwise(flops_per_element: int):
    def rule(node, nbytes):
        out = node.outputs[0].numel if node.outputs else node.inputs[0].numel
        return Cost(flops_per_element * out, *read_write(node, nbytes), "elementwise")
    rule.__name__ = f"elementwise_{flops_per_element}_flops"
    return rule


UNARY_1 = _with_inplace("relu", "neg", "abs", "sqrt", "rsqrt", "reciprocal", "exp", "exp2", "expm1", "log",
                        "log2", "log10", "log1p", "sin", "cos", "tan", "erf", "erfc", "floor", "ceil", "round",
                        "trunc", "frac", "sign", "sgn", "clamp", "clamp_min", "clamp_max", "hardtanh",
                        "threshold", "leaky_relu", "relu6", "square", "pow", "bitwise_not", "logical_not",
                        "nan_to_num", "signbit", "isnan", "isinf", "asin", "acos", "atan", "sinh", "cosh",
                        # special functions, evaluated as one unit op each like exp and erf
                        "erfinv", "lgamma", "digamma", "polygamma", "mvlgamma", "i0", "special_i0e", "special_i1",
                        "special_i1e", "special_bessel_j0", "special_bessel_j1", "special_erfcx", "special_ndtri",
                        "special_log_ndtr", "special_entr", "atanh", "asinh", "acosh", "sinc", "deg2rad",
                        "rad2deg", "isfinite", "isposinf", "isneginf", "positive", "conj_physical", "angle",
                        "softshrink", "hardshrink", "celu", "selu")
BINARY_1 = _with_inplace("add", "sub", "rsub", "mul", "div", "maximum", "minimum", "fmod", "remainder",
                         "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor",
                         "bitwise_and", "bitwise_or", "bitwise_xor", "floor_divide", "atan2", "copysign",
                         "fmax", "fmin", "xlogy", "hypot", "where", "masked_fill", "threshold_backward",
                         "sigmoid_backward", "tanh_backward", "hardtanh_backward", "leaky_relu_backward",
                         "logaddexp", "logaddexp2", "heaviside", "nextafter", "ldexp", "float_power", "true_divide",
                         "bitwise_left_shift", "bitwise_right_shift", "gcd", "lcm", "special_xlog1py",
                         "special_zeta", "_prelu_kernel", "_prelu_kernel_backward")
TERNARY_2 = _with_inplace("addcmul", "addcdiv", "lerp", "hardsigmoid", "hardsigmoid_backward", "elu",
                          "rrelu_with_noise") + ("native_dropout_backward",)
ACTIVATIONS_4 = _with_inplace("sigmoid", "tanh", "softplus", "hardswish", "elu_backward", "logit",
                              "hardswish_backward", "softplus_backward", "log_sigmoid_forward",
                              "log_sigmoid_backward") + ("native_dropout", "polar")  # polar: r cos t, r sin t
ACTIVATIONS_5 = _with_inplace("gelu", "silu", "mish") + ("glu",)  # glu: a * sigmoid(b)
ACTIVATIONS_8 = ("gelu_backward", "silu_backward", "mish_backward", "glu_backward")

cost_rule(*UNARY_1, *BINARY_1, op_class="elementwise")(_elementwise(1))
cost_rule(*TERNARY_2, op_class="elementwise")(_elementwise(2))
cost_rule(*ACTIVATIONS_4, op_class="elementwise")(_elementwise(4))
cost_rule(*ACTIVATIONS_5, op_class="elementwise")(_elementwise(5))
cost_rule(*ACTIVATIONS_8, op_class="elementwise")(_elementwise(8))


@cost_rule("upsample_bilinear2d", "upsample_bilinear2d_backward", "_upsample_bilinear2d_aa",
           "_upsample_bilinear2d_aa_backward", op_class="elementwise")
def interpolate(node, nbytes):
    # bilinear: 4 neighbours weighted and summed, about 7 FLOPs per output element
    return Cost(7 * node.outputs[0].numel, *read_write(node, nbytes), "elementwise")


@cost_rule("upsample_linear1d", "upsample_linear1d_backward", op_class="elementwise")
def interpolate_linear(node, nbytes):
    # linear: 2 neighbours weighted and summed, about 3 FLOPs per output element (the
    # backward spreads each output gradient over the same 2 inputs)
    grid = node.inputs[0] if "backward" in node.name else node.outputs[0]
    return Cost(3 * grid.numel, *read_write(node, nbytes), "elementwise")


@cost_rule("upsample_trilinear3d", "upsample_trilinear3d_backward", op_class="elementwise")
def interpolate_trilinear(node, nbytes):
    # trilinear: 8 neighbours (2 x 2 x 2) weighted and summed, about 15 FLOPs per output element
    grid = node.inputs[0] if "backward" in node.name else node.outputs[0]
    return Cost(15 * grid.numel, *read_write(node, nbytes), "elementwise")


@cost_rule("grid_sampler_2d", "grid_sampler_3d", "grid_sampler_2d_backward", "grid_sampler_3d_backward",
           op_class="elementwise")
def grid_sample(node, nbytes):
    # bilinear (trilinear) sampling at a computed point: the point's coordinates from the grid
    # (about 6 FLOPs) plus 4 taps (8 in 3-D) weighted and summed, per output element and
    # channel; the backward also returns the grid's gradient: twice the forward
    grad_or_out = node.inputs[0] if "backward" in node.name else node.outputs[0]
    taps = 15 if "3d" in node.name else 7
    return Cost((2 if "backward" in node.name else 1) * (taps + 6) * grad_or_out.numel, *read_write(node, nbytes),
                "elementwise")


@cost_rule("upsample_bicubic2d", "upsample_bicubic2d_backward", "_upsample_bicubic2d_aa",
           "_upsample_bicubic2d_aa_backward", op_class="elementwise")
def interpolate_bicubic(node, nbytes):
    # bicubic: 16 neighbours (4 x 4), each weighted and summed, about 32 FLOPs per output
    # element; the backward spreads each output gradient over the same 16 inputs
    grid = node.inputs[0] if "backward" in node.name else node.outputs[0]
    return Cost(32 * grid.numel, *read_write(node, nbytes), "elementwise")
