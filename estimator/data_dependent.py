"""Ops whose result depends on tensor values, run on fake tensors (which hold none).

Capture records a step from shapes alone. Four kinds of op need values or help:
  * a scalar read back to Python (``.item()``, ``bool(t)``, ``if t.any():``): a boolean reads
    as ordinary data would make it, the documented assumption: the result of ``all()`` reads
    True (every check passes: finite values, valid distribution parameters) and any other
    boolean False (``any()`` finds no special token, no NaN, nothing to skip); a number read
    back has no safe default, so capture stops with a message naming the op, the module and
    the fix;
  * an output whose size depends on values: a boolean-mask selection (``x[mask]``,
    ``masked_select``, e.g. the backward of SpecAugment's masking in Wav2Vec2) is assumed to
    select every element, the upper bound; ``nonzero``, ``unique`` and the like (e.g. an eager
    mixture-of-experts loop) stop with a message naming the op and the module
    (estimator.moe_routing costs transformers' own experts loops under a routing assumption);
  * ``_grouped_mm`` (mixture-of-experts GEMMs): its fake kernel accepts bf16 only, while the
    CPU and CUDA kernels take fp32 too; the output shape is the same for every dtype, so it is
    taken from bf16 copies and given the inputs' dtype. Its FLOPs do not depend on routing;
  * kernels whose CPU fake kernel goes through a value-dependent step, a slow Python
    decomposition or a real kernel, although their outputs follow from the inputs'
    (SHAPES_BY_FORMULA: weight norm's backward; batch norm forward and backward, whose
    decomposition costs a dozen fake ops per call, each missing FakeTensor's cache when the
    channel count changes, as in DenseNet and EfficientNet; convolutions; elementwise ops on
    one canonical layout; the fused optimizer updates, SGD's of which FakeTensor would run on
    real zero-filled copies of every parameter); each formula gives what the CPU kernel returns,
    checked in tests/test_data_dependent.py and tests/test_optimizer.py; and products whose fake
    kernels accept operands of mixed dtypes that the real kernels refuse.
Frequent ops with C++ meta kernels (META_KERNEL_OPS: views, mm, bmm, ...) skip the fake mode's
bookkeeping and run on the fake tensors' meta side directly.

Example:
    >>> out = run_fake(func, args, kwargs, where="model.layers.0.mlp")
"""
from __future__ import annotations

import torch
from torch._prims_common import make_channels_last_strides_for, make_contiguous_strides_for, suggest_memory_format
from torch._subclasses.fake_tensor import (DataDependentOutputException, DynamicOutputShapeException, FakeTensor,
                                          in_kernel_invocation_manager)
from torch.utils._pytree import tree_map_only

from .errors import CaptureError

aten = torch.ops.aten


def run_fake(func, args: tuple, kwargs: dict, where: str):
    """func(*args, **kwargs) on fake tensors, with the assumptions of the module doc."""
    if func is aten._grouped_mm.default and _needs_bf16_shape(args):
        return _grouped_mm_any_dtype(func, args, kwargs)
    if func.overloadpacket in SAME_DTYPE_OPS:
        _check_same_dtype(func, args, where)
    formula = SHAPES_BY_FORMULA.get(func)
    out = formula(*args, **kwargs) if formula is not None else None
    if out is not None:  # None: the formula leaves this call to the fake kernel
        return None if out is NO_OUTPUTS else out
    if func in META_KERNEL_OPS:
        direct = _on_meta_kernel(func, args, kwargs)
        if direct is not None:
            return direct
    try:
        out = func(*args, **kwargs)
    except DataDependentOutputException:
        if func is aten._local_scalar_dense.default and args[0].dtype == torch.bool:
            return getattr(args[0], "_roofline_from", None) is aten.all
        raise CaptureError(f"{where or 'the model'} reads a tensor's value back to Python ({func.overloadpacket}, "
                           "e.g. `.item()` or `int(t)`), which a shape-only capture cannot know; make the value a "
                           "Python number in the model (or a config field), or estimate a FILE.py:FUNC that "
                           "fixes it") from None
    except DynamicOutputShapeException:
        selected = _every_element_selected(func, args)
        if selected is not None:
            return selected
        raise CaptureError(f"{where or 'the model'} calls {func.overloadpacket}, whose output size depends on tensor "
                           "values (e.g. a mixture-of-experts loop over `nonzero`), which a shape-only capture "
                           "cannot know; write that part with fixed shapes (for transformers MoE models: their "
                           "grouped_mm or batched_mm experts) in a FILE.py:FUNC") from None
    if func.overloadpacket in (aten.all, aten._is_all_true) and isinstance(out, torch.Tensor):
        out._roofline_from = aten.all  # read back as True (module doc)
    return out


def _batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """aten.native_batch_norm's (out, save_mean, save_invstd) as the CPU kernel returns them:
    out in the input's suggested memory format; the statistics of C channels in training, empty
    in eval, in fp32 where a half-precision input meets fp32 parameters, else the input's dtype.
    None for an input without a channel dimension (the fake kernel's error then)."""
    if x.dim() < 2:
        return None
    channels = x.shape[1]
    params = (weight, bias, running_mean, running_var)
    for name, p in zip(("weight", "bias", "running_mean", "running_var"), params):
        if p is not None and p.numel() != channels:
            raise RuntimeError(f"{name} should contain {channels} elements not {p.numel()}")
    mixed = x.dtype in (torch.bfloat16, torch.float16) and any(p is not None and p.dtype == torch.float32
                                                               for p in params)
    stats = ((channels if training else 0),)
    dtype = torch.float32 if mixed else x.dtype
    mode = x.fake_mode
    return (fake_empty(mode, x.shape, x.dtype, memory_format=suggest_memory_format(x)),
            fake_empty(mode, stats, dtype), fake_empty(mode, stats, dtype))


def _batch_norm_backward(grad_out, x, weight, running_mean, running_var, save_mean, save_invstd, train, eps,
                         output_mask):
    """aten.native_batch_norm_backward's (grad_input, grad_weight, grad_bias), None where
    output_mask is False: grad_input in the input's suggested memory format, the parameters'
    gradients of C channels in the weight's dtype (the input's without a weight). None for an
    input without a channel dimension."""
    if x.dim() < 2:
        return None
    mode, channels = x.fake_mode, x.shape[1]
    dtype = x.dtype if weight is None else weight.dtype
    return (fake_empty(mode, x.shape, x.dtype, memory_format=suggest_memory_format(x)) if output_mask[0] else None,
            fake_empty(mode, (channels,), dtype) if output_mask[1] else None,
            fake_empty(mode, (channels,), dtype) if output_mask[2] else None)


def _convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """aten.convolution's output: the meta kernel's, in the memory format of the backend the
    CPU would pick for these operands (cuDNN-free: mkldnn, slow_conv2d, ...), as FakeTensor's
    own rule gives it, without its argument normalisation and cache key (a fifth of the time).
    None for 1-D convolutions and non-CPU tensors (the fake kernel then decides)."""
    if weight.dim() not in (4, 5) or not _cpu_fakes(x, weight, bias):
        return None
    backend = torch._C._select_conv_backend(x, weight, bias, stride, padding, dilation, transposed, output_padding,
                                            groups)
    fmt = torch._C._conv_determine_backend_memory_format(x, weight, backend)
    out = _meta_kernel(aten.convolution.default, x.fake_mode, x, weight, bias, stride, padding, dilation, transposed,
                       output_padding, groups)
    return _in_format(out, fmt)


def _convolution_backward(grad_out, x, weight, bias_sizes, stride, padding, dilation, transposed, output_padding,
                          groups, output_mask):
    """aten.convolution_backward's (grad_input, grad_weight, grad_bias), None where output_mask
    is False: the meta kernel's, the first two in the memory format of the backend the CPU picks
    (as for the forward), grad_bias as the kernel makes it."""
    if weight.dim() not in (4, 5) or not _cpu_fakes(grad_out, x, weight):
        return None
    backend = torch._C._select_conv_backend(x, weight, None, stride, padding, dilation, transposed, output_padding,
                                            groups, bias_sizes)
    fmt = torch._C._conv_determine_backend_memory_format(x, weight, backend)
    grad_x, grad_w, grad_b = _meta_kernel(aten.convolution_backward.default, x.fake_mode, grad_out, x, weight,
                                          bias_sizes, stride, padding, dilation, transposed, output_padding, groups,
                                          output_mask)
    return (None if grad_x is None else _in_format(grad_x, fmt), None if grad_w is None else _in_format(grad_w, fmt),
            grad_b)


NO_OUTPUTS = ()  # a formula's answer for an op that returns nothing (it works in place)


def _fused_optimizer_step(func):
    """The formula of a fused Adam or AdamW update (aten._fused_adamw_): in place, no outputs.
    Its meta kernel (which checks that every argument is a list of tensors) runs on the fake
    tensors' meta side, skipping FakeTensor's bookkeeping of a mutating op over lists of
    tensors: 46 ms a step for ResNet-50's 161 parameters, 0.44 s for Llama-3-70B's 723."""
    def formula(*args, **kwargs):
        tensors = [t for a in args if isinstance(a, (list, tuple)) for t in a]
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors) or not _cpu_fakes(*tensors):
            return None
        _meta_kernel(func, tensors[0].fake_mode, *args, **kwargs)
        return NO_OUTPUTS
    return formula


def _fused_sgd_step(params, grads, momentum_buffers, **options):
    """aten._fused_sgd_: in place, no outputs. It has no meta kernel, and FakeTensor's fallback
    runs the real CPU kernel on real zero-filled copies of every parameter, gradient and momentum
    buffer (1.4 GB for GPT-2's 124M parameters; Llama-3-8B could not be captured with SGD), so
    only its arguments are checked: equal-length lists of fake tensors of one mode."""
    tensors = [*params, *grads, *momentum_buffers]
    mode = getattr(tensors[0], "fake_mode", None) if tensors else None
    if (mode is None or len(grads) != len(params) or len(momentum_buffers) not in (0, len(params))
            or not all(type(t) is FakeTensor and t.fake_mode is mode for t in tensors)):
        return None
    return NO_OUTPUTS


def _same_layout_pointwise(*args, **kwargs):
    """An elementwise op (SAME_LAYOUT_POINTWISE_OPS) whose tensors are floating point, of one
    shape and dtype, and all with exactly the strides of a contiguous (or channels-last) tensor
    of that shape: one new tensor of that shape and dtype in that layout, as the CPU kernel
    writes it. Anything else (broadcasting, mixed dtypes, other strides, integers) is left to
    the fake kernel, as are its errors: kernels differ in the strides they give size-1
    dimensions of other layouts. FakeTensor runs these ops' Python references (a dozen fake ops
    for gelu's backward) whenever its cache misses."""
    values = (*args, *kwargs.values())
    tensors = [a for a in values if isinstance(a, torch.Tensor)]
    if not tensors or not _cpu_fakes(*tensors) or not tensors[0].is_floating_point():
        return None
    first = tensors[0]
    if any(t.shape != first.shape or t.dtype != first.dtype for t in tensors[1:]) or \
            not all(isinstance(a, (torch.Tensor, bool, int, float, str)) or a is None for a in values):
        return None
    for fmt, strides_for in ((torch.contiguous_format, make_contiguous_strides_for),
                             (torch.channels_last, make_channels_last_strides_for)):
        if fmt is torch.channels_last and first.dim() != 4:
            break
        strides = tuple(strides_for(first.shape))
        if all(t.stride() == strides for t in tensors):
            return fake_empty(first.fake_mode, first.shape, first.dtype, memory_format=fmt)
    return None


# elementwise ops of the zoo's steps, each checked against the real CPU kernel over layouts and
# dtypes in tests/test_data_dependent.py
SAME_LAYOUT_POINTWISE_OPS = (
    aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor, aten.relu.default, aten.gelu.default,
    aten.tanh.default, aten.hardtanh.default, aten.hardswish.default, aten.hardsigmoid.default,
    aten.threshold_backward.default, aten.gelu_backward.default, aten.tanh_backward.default,
    aten.sigmoid_backward.default, aten.hardtanh_backward.default, aten.hardswish_backward.default,
    aten.hardsigmoid_backward.default,
)


def _cpu_fakes(*tensors) -> bool:
    """Every tensor given (None skipped) is a CPU fake tensor of the first one's mode."""
    mode = tensors[0].fake_mode if type(tensors[0]) is FakeTensor else None
    return mode is not None and all(t is None or (type(t) is FakeTensor and t.fake_mode is mode
                                                  and t.device.type == "cpu") for t in tensors)


def _in_format(t: FakeTensor, fmt: torch.memory_format) -> FakeTensor:
    """`t` itself where it already is in `fmt`, else a new fake tensor of its shape in `fmt`
    (what ``t.to(memory_format=fmt)`` gives)."""
    if t.is_contiguous(memory_format=fmt):
        return t
    return fake_empty(t.fake_mode, t.shape, t.dtype, memory_format=fmt)


# frequent ops of the zoo's steps whose outputs come from a C++ meta kernel (views and other
# layout ops, products, sums) with no data dependence: run directly on the fake tensors' meta
# side and wrapped, they take less time than FakeTensorMode's dispatch even where its cache
# hits (a quarter for views, half for products; about 10% less capture time over the zoo in
# a fresh process). Ops whose meta kernel
# is a Python reference (most elementwise ops, addmm) stay with the mode, whose cache then
# saves running them. tests/test_data_dependent.py runs both ways on every such call of
# several zoo steps: the same shapes, strides, dtypes, offsets and aliasing, except views'
# strides of size-1 dimensions, taken from the C++ kernel as a real run computes them rather
# than from FakeTensor's Python reference. Those address no memory, but matmul reads them when
# it decides between mm and expand + bmm: a decoder's one-token step now runs the products a
# real run does (a test compares it with an eager run on real tensors), where FakeTensor's
# strides sent two per step down bmm. The graphs of all 35 zoo models, training and
# inference, are the same node for node either way.
META_KERNEL_OPS = frozenset((
    aten.view.default, aten._unsafe_view.default, aten.t.default, aten.transpose.int, aten.permute.default,
    aten.expand.default, aten.slice.Tensor, aten.unsqueeze.default, aten.detach.default, aten.clone.default,
    aten.mm.default, aten.bmm.default, aten.sum.dim_IntList, aten.sigmoid.default, aten.silu.default,
    aten.silu_backward.default,
))


def _on_meta_kernel(func, args: tuple, kwargs: dict):
    """func's meta kernel run on args and its new tensors wrapped as fake, or None where an
    argument is not a CPU fake tensor of one mode, or a list holds tensors (the mode's own
    dispatch then decides)."""
    mode = None
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            if type(a) is not FakeTensor or a.fake_mode is not (mode or a.fake_mode) or a.device.type != "cpu":
                return None
            mode = a.fake_mode
        elif isinstance(a, (list, tuple)) and any(isinstance(t, torch.Tensor) for t in a):
            return None
    return None if mode is None else _meta_kernel(func, mode, *args, **kwargs)


def _meta_kernel(func, mode, *args, **kwargs):
    """func run on CPU fake tensors of `mode` through its meta kernel, its new tensors wrapped as
    fakes (None, for an op without outputs, and a tuple's None entries kept)."""
    with in_kernel_invocation_manager(mode):
        out = func(*args, **kwargs)
    if out is None:
        return None
    wrap = lambda t: t if type(t) is FakeTensor else FakeTensor(mode, t, _CPU)  # noqa: E731
    return wrap(out) if isinstance(out, torch.Tensor) else type(out)(wrap(t) if isinstance(t, torch.Tensor) else t
                                                                      for t in out)


_CPU = torch.device("cpu")
_NO_PYTHON_DISPATCH = torch._C.DispatchKeySet(torch._C.DispatchKey.Python)


def fake_empty(mode, shape, dtype: torch.dtype, stride=None,
               memory_format: torch.memory_format = torch.contiguous_format) -> FakeTensor:
    """A CPU fake tensor of `mode` (with `stride`, else in `memory_format`): a meta tensor made
    past any dispatch mode and wrapped, a fifth of the time of a factory call dispatched through
    FakeTensorMode; inside the mode or outside it.

    >>> fake_empty(FakeTensorMode(), (2, 3), torch.float32, stride=(1, 2)).stride()
    (1, 2)
    """
    with torch._C._ExcludeDispatchKeyGuard(_NO_PYTHON_DISPATCH):
        meta = (torch.empty_strided(shape, stride, dtype=dtype, device="meta") if stride is not None
                else torch.empty(shape, dtype=dtype, device="meta", memory_format=memory_format))
    return FakeTensor(mode, meta, _CPU)


# ops whose fake kernel cannot give the output shape, or only slowly, though it follows from the
# inputs': a formula returns the outputs, or None to leave the call to the fake kernel
SHAPES_BY_FORMULA = {
    aten.native_batch_norm.default: _batch_norm,
    aten.native_batch_norm_backward.default: _batch_norm_backward,
    aten.convolution.default: _convolution,
    aten.convolution_backward.default: _convolution_backward,
    **{op: _fused_optimizer_step(op) for op in (aten._fused_adamw_.default, aten._fused_adam_.default)},
    aten._fused_sgd_.default: _fused_sgd_step,
    **{op: _same_layout_pointwise for op in SAME_LAYOUT_POINTWISE_OPS},
    # (grad_w, saved_v, saved_g, saved_norms, dim) -> (grad_v, grad_g); the CPU fake kernel
    # decomposes it through a boolean index
    aten._weight_norm_interface_backward.default: lambda grad_w, v, g, norms, dim: (torch.empty_like(v),
                                                                                    torch.empty_like(g)),
}


# products whose real kernels refuse operands of different dtypes, where the fake kernels let
# them through (an int64 input fed to a float Linear would be estimated, though it cannot run)
SAME_DTYPE_OPS = frozenset((aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.convolution))


def _check_same_dtype(func, args, where: str) -> None:
    dtypes = [a.dtype for a in args if isinstance(a, torch.Tensor)]
    if len(set(dtypes)) > 1:
        names = " and ".join(sorted({str(d).replace("torch.", "") for d in dtypes}))
        raise CaptureError(f"{where or 'the model'} multiplies {names} tensors ({func.overloadpacket}), which PyTorch "
                           "refuses: check the inputs' dtypes (token ids go to an embedding, pixels and features "
                           "are floating point)")


def _every_element_selected(func, args) -> torch.Tensor | None:
    """The output of a boolean-mask selection that selects every element, or None."""
    if func is aten.masked_select.default:
        x, mask = args[0], args[1]
        return x.new_empty(torch.broadcast_shapes(x.shape, mask.shape).numel())
    if func is aten.index.Tensor and len(args[1]) == 1 and isinstance(args[1][0], torch.Tensor) \
            and args[1][0].dtype == torch.bool:
        x, mask = args[0], args[1][0]
        return x.new_empty((mask.numel(), *x.shape[mask.dim():]))
    return None


def _needs_bf16_shape(args) -> bool:
    return any(isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.bfloat16 for t in args[:2])


def _grouped_mm_any_dtype(func, args, kwargs):
    dtype = args[0].dtype
    as_bf16 = lambda t: t.to(torch.bfloat16) if t.is_floating_point() else t  # noqa: E731
    out = func(*tree_map_only(torch.Tensor, as_bf16, args), **kwargs)
    return out.to(kwargs.get("out_dtype") or dtype)
