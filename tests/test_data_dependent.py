"""Ops that depend on tensor values (estimator.data_dependent) and mixture-of-experts routing
(estimator.moe_routing): documented assumptions or one clear message, never a traceback."""
from __future__ import annotations

import itertools

import pytest
import torch
import transformers as T
from torch import nn

import estimator  # noqa: F401  (registers the cost rules)
from estimator.capture import capture
from estimator.errors import CaptureError
from estimator.model_source import hf_model
from estimator.moe_routing import expert_loads
from estimator.precision import PRECISIONS
from estimator.roofline import step_costs


class _Checks(nn.Module):
    """Branches on values: an all() check that must pass and an any() search that finds nothing."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        y = self.proj(x)
        if not torch.isfinite(y).all():  # reads True: the step goes on
            raise ValueError("non-finite")
        if (y > 1e9).any():  # reads False: no extra layer
            y = self.proj(y)
        return y


def _ops(step) -> list[str]:
    return [n.op.overloadpacket.__name__ for n in step.nodes]


def test_boolean_checks_read_as_ordinary_data():
    step = capture(_Checks(), (torch.randn(4, 8),), mode="inference")
    assert _ops(step).count("addmm") == 1


class _Gather(nn.Module):
    def forward(self, x):
        return x[x > 0].sum()


class _Count(nn.Module):
    def forward(self, x):
        return x.new_zeros(int(x.sum().item()))


class _Nonzero(nn.Module):
    def forward(self, x):
        return x[torch.nonzero(x > 0)[:, 0]]


def test_mask_selection_is_an_upper_bound_and_other_sizes_stop_clearly():
    step = capture(_Gather(), (torch.randn(4, 8),), mode="inference")
    selected = next(n for n in step.nodes if n.op.overloadpacket is torch.ops.aten.index)
    assert selected.outputs[0].shape == (32,)  # every element selected
    with pytest.raises(CaptureError, match=r"reads a tensor's value back to Python \(aten._local_scalar_dense"):
        capture(_Count(), (torch.randn(4, 8),), mode="inference")
    with pytest.raises(CaptureError, match="calls aten.nonzero, whose output size depends on tensor values"):
        capture(_Nonzero(), (torch.randn(4, 8),), mode="inference")


def test_expert_loads_balanced_and_skewed():
    assert expert_loads(12, 4) == [3, 3, 3, 3]
    assert expert_loads(10, 4) == [3, 3, 2, 2]
    assert expert_loads(12, 4, skew=2.0) == [6, 2, 2, 2]
    assert expert_loads(40, 4, skew=4.0, tokens=20) == [20, 7, 7, 6]  # at most every token once
    for pairs, experts, skew in ((7, 3, 1.0), (100, 8, 3.0), (64, 64, 1.5)):
        assert sum(expert_loads(pairs, experts, skew)) == pairs
    with pytest.raises(CaptureError, match="--moe-skew must be at least 1"):
        expert_loads(4, 2, skew=0.5)


def _matmul_flops(step) -> int:
    return sum(c.flops for c in step_costs(step, PRECISIONS["fp32"]) if c.op_class == "matmul")


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_every_experts_implementation_does_the_same_products(mode):
    """grouped_mm, batched_mm and the eager loop (balanced or skewed) multiply each (token,
    expert) pair once: the same matmul FLOPs, from three different op sequences."""
    config = T.MixtralConfig(num_hidden_layers=1, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                             num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, vocab_size=128)
    flops, ops = {}, {}
    for implementation, skew in (("grouped_mm", 1.0), ("batched_mm", 1.0), ("eager", 1.0), ("eager", 3.0)):
        config._experts_implementation = implementation
        model, inputs, _ = hf_model(config, "MixtralForCausalLM", batch=2, seq=24)
        step = capture(model, inputs, mode=mode, optimizer=None, moe_skew=skew)
        flops[implementation, skew], ops[implementation, skew] = _matmul_flops(step), set(_ops(step))
    assert len(set(flops.values())) == 1, flops
    assert "_grouped_mm" in ops["grouped_mm", 1.0] and "_grouped_mm" not in ops["eager", 1.0]
    assert "nonzero" not in ops["eager", 1.0]  # the loop's sizes come from the routing assumption


def test_grouped_mm_flops_for_each_layout():
    from estimator.costs import rule_for
    from estimator.capture import OpNode
    from estimator.tensor_meta import TensorMeta

    aten = torch.ops.aten

    def cost(a, b, out):
        metas = [TensorMeta.of(torch.empty(s, device="meta")) for s in (a, b)]
        node = OpNode(aten._grouped_mm.default, "forward", "", "", tuple(metas), {}, tuple(metas),
                      (TensorMeta.of(torch.empty(out, device="meta")),))
        return rule_for(node).fn(node, lambda m: m.numel * 4).flops

    assert cost((10, 6), (4, 6, 5), (10, 5)) == 2 * 10 * 6 * 5  # tokens x experts' weights
    assert cost((4, 10, 6), (4, 6, 5), (4, 10, 5)) == 2 * 4 * 10 * 6 * 5  # batched
    assert cost((6, 10), (10, 5), (4, 6, 5)) == 2 * 6 * 10 * 5  # weight gradient: offs split the 10


def _batch_norm_cases():
    """(input, weight, bias, running_mean, running_var, training) over layouts, dtypes and flags."""
    layouts = {4: [lambda t: t, lambda t: t.contiguous(memory_format=torch.channels_last), lambda t: t[..., ::2]],
               5: [lambda t: t, lambda t: t.contiguous(memory_format=torch.channels_last_3d)],
               3: [lambda t: t, lambda t: t.transpose(1, 2).contiguous().transpose(1, 2)],
               2: [lambda t: t]}
    for shape in ((2, 3, 6, 6), (4, 3), (2, 3, 8), (2, 3, 2, 4, 4), (2, 5, 1, 1)):
        for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
            for param_dtype in {dtype, torch.float32}:
                for training in (False, True):
                    for affine in (False, True):
                        for stats in (False, True) if training else (True,):
                            for layout in layouts[len(shape)]:
                                def make(shape=shape, dtype=dtype, param_dtype=param_dtype, affine=affine,
                                         stats=stats, layout=layout):
                                    c = shape[1]
                                    param = lambda: torch.randn(c, dtype=param_dtype) if affine else None  # noqa: E731
                                    stat = lambda: torch.rand(c, dtype=param_dtype) + 0.5 if stats else None  # noqa: E731
                                    return layout(torch.randn(shape).to(dtype)), param(), param(), stat(), stat()
                                yield make, training


def _layout(t):
    return None if t is None else (tuple(t.shape), t.stride() if t.numel() > 1 else None, t.dtype)


def test_batch_norm_formulas_give_what_the_cpu_kernels_return():
    """native_batch_norm and its backward by formula (SHAPES_BY_FORMULA), against the real CPU
    kernels on real tensors: shapes, strides and dtypes of every output, over 2-D to 5-D inputs,
    contiguous, channels-last, permuted and sliced layouts, four dtypes, fp32 or matching
    parameters, training and eval, with and without affine parameters and running stats."""
    from estimator.data_dependent import SHAPES_BY_FORMULA
    from torch._subclasses.fake_tensor import FakeTensorMode

    aten = torch.ops.aten
    forward, backward = SHAPES_BY_FORMULA[aten.native_batch_norm.default], \
        SHAPES_BY_FORMULA[aten.native_batch_norm_backward.default]
    checked = 0
    for make, training in _batch_norm_cases():
        x, w, b, rm, rv = make()
        try:
            out = aten.native_batch_norm.default(x, w, b, rm, rv, training, 0.1, 1e-5)
        except RuntimeError as e:  # combinations the CPU kernel refuses (fp64 input, fp32 parameters)
            assert "mixed dtype" in str(e)
            continue
        grad = torch.randn_like(out[0])
        masks = [[True, affine, affine] for affine in {w is not None}] + [[True, False, False]]
        real_backward = [aten.native_batch_norm_backward.default(grad, x, w, rm, rv, out[1], out[2], training, 1e-5,
                                                                 mask) for mask in masks]
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            fx, fw, fb, frm, frv = (None if t is None else mode.from_tensor(t) for t in make())
            fake_out = forward(fx, fw, fb, frm, frv, training, 0.1, 1e-5)
            fake_backward = [backward(mode.from_tensor(grad), fx, fw, frm, frv, fake_out[1], fake_out[2], training,
                                      1e-5, mask) for mask in masks]
        assert [_layout(t) for t in fake_out] == [_layout(t) for t in out], (x.shape, x.stride(), x.dtype, training)
        for real, fake in zip(real_backward, fake_backward):
            assert [_layout(t) for t in fake] == [_layout(t) for t in real], (x.shape, x.dtype, training)
        checked += 1
    assert checked > 300


def _convolution_cases():
    """(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups) over
    2-D and 3-D, contiguous and channels-last inputs, groups, strides, padding, dilation,
    transposed, with and without bias, two dtypes, batch 1 and 3."""
    for nd in (2, 3):
        last = torch.channels_last if nd == 2 else torch.channels_last_3d
        for layout, groups, (stride, pad, dil), transposed, bias, dtype, batch in itertools.product(
                (torch.contiguous_format, last), (1, 2), ((1, 0, 1), (2, 1, 1), (1, 2, 2)), (False, True),
                (False, True), (torch.float32, torch.bfloat16), (1, 3)):
            x = torch.randn((batch, 4) + (7,) * nd, dtype=dtype).contiguous(memory_format=layout)
            w = torch.randn((4, 4 // groups) + (3,) * nd, dtype=dtype)
            yield (x, w, torch.randn(4, dtype=dtype) if bias else None, [stride] * nd, [pad] * nd, [dil] * nd,
                   transposed, [0] * nd, groups)


def test_convolution_formulas_give_what_the_cpu_kernels_and_fake_tensor_give():
    """convolution and its backward by formula (SHAPES_BY_FORMULA): the shapes, strides and
    dtypes of the real CPU kernels' outputs, and FakeTensorMode's own rule's, for every output
    mask."""
    from estimator.data_dependent import SHAPES_BY_FORMULA
    from torch._subclasses.fake_tensor import FakeTensorMode

    aten = torch.ops.aten
    forward = SHAPES_BY_FORMULA[aten.convolution.default]
    backward = SHAPES_BY_FORMULA[aten.convolution_backward.default]
    checked = 0
    for x, w, b, *options in _convolution_cases():
        real = aten.convolution.default(x, w, b, *options)
        grad = torch.randn_like(real)
        bias_sizes = None if b is None else [b.numel()]
        masks = ([True, True, b is not None], [True, False, False], [False, True, b is not None])
        real_backward = [aten.convolution_backward.default(grad, x, w, bias_sizes, *options, m) for m in masks]
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            fx, fw, fg = (mode.from_tensor(t) for t in (x, w, grad))
            fb = None if b is None else mode.from_tensor(b)
            ours = [forward(fx, fw, fb, *options)] + [backward(fg, fx, fw, bias_sizes, *options, m) for m in masks]
            theirs = [aten.convolution.default(fx, fw, fb, *options)] + \
                [aten.convolution_backward.default(fg, fx, fw, bias_sizes, *options, m) for m in masks]
        def flat(outs):
            return [_layout(t) for out in outs for t in (out if isinstance(out, tuple) else (out,))]
        assert flat(ours) == flat([real] + real_backward) == flat(theirs), (x.shape, x.stride(), options)
        checked += 1
    assert checked == 384


def _pointwise_arguments(op, a, b):
    aten = torch.ops.aten
    if op in (aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor, aten.tanh_backward.default,
              aten.sigmoid_backward.default, aten.hardswish_backward.default, aten.hardsigmoid_backward.default):
        return (a, b), {}
    extra = {aten.threshold_backward.default: ((a, b, 0.0), {}),
             aten.gelu_backward.default: ((a, b), {"approximate": "tanh"}),
             aten.hardtanh_backward.default: ((a, b, -1.0, 1.0), {}), aten.hardtanh.default: ((a, -1.0, 1.0), {})}
    return extra.get(op, ((a,), {}))


def test_pointwise_formula_gives_what_the_cpu_kernels_return():
    """Elementwise ops by formula (SAME_LAYOUT_POINTWISE_OPS): where the formula answers, the
    shape, strides and dtype of the real CPU kernel's output, over contiguous, channels-last,
    transposed and sliced inputs with size-1 dimensions, 1-D to 4-D, three dtypes; elsewhere it
    leaves the call to the fake kernel."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from estimator.data_dependent import SAME_LAYOUT_POINTWISE_OPS, SHAPES_BY_FORMULA

    layouts = [lambda t: t, lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t,
               lambda t: t.transpose(0, 1) if t.dim() > 1 else t, lambda t: t[..., ::2]]
    answered = checked = 0
    for op in SAME_LAYOUT_POINTWISE_OPS:
        for shape, dtype, (la, lb) in itertools.product(((2, 3, 5, 5), (8, 64, 1, 1), (4, 1, 5, 5), (3, 7), (6,)),
                                                        (torch.float32, torch.bfloat16, torch.float16),
                                                        itertools.product(layouts, repeat=2)):
            a, b = la(torch.randn(shape).to(dtype)), lb(torch.randn(shape).to(dtype))
            args, kwargs = _pointwise_arguments(op, a, b)
            try:
                real = op(*args, **kwargs)
            except RuntimeError:  # shapes the kernel refuses (a transposed operand of another shape)
                continue
            with FakeTensorMode() as mode:
                ours = SHAPES_BY_FORMULA[op](*(mode.from_tensor(x) if isinstance(x, torch.Tensor) else x
                                              for x in args), **kwargs)
            checked += 1
            if ours is not None:
                assert (ours.shape, ours.stride(), ours.dtype) == (real.shape, real.stride(), real.dtype), \
                    (op, shape, a.stride(), b.stride(), dtype)
                answered += 1
    assert answered > 1000 and checked > answered


def test_batch_norm_formula_keeps_a_channel_mismatch_an_error():
    bn = nn.BatchNorm2d(4)
    with pytest.raises(CaptureError, match="should contain 3 elements not 4"):
        capture(bn, (torch.randn(2, 3, 5, 5),), mode="inference")


def _layout_and_aliasing(t, inputs: list) -> tuple:
    """What a capture reads of an op's output: shape, dtype, offset, the inputs whose storage
    it shares, whether it is the first input itself, and the strides of its dimensions of
    size > 1 (a size-1 dimension's stride addresses no memory)."""
    storage = t.untyped_storage()._cdata
    aliases = tuple(i for i, a in enumerate(inputs) if a.untyped_storage()._cdata == storage)
    strides = tuple(s for s, d in zip(t.stride(), t.shape) if d > 1)
    return tuple(t.shape), strides, t.dtype, t.device, t.storage_offset(), aliases, t is inputs[0], type(t)


@pytest.mark.parametrize("name,mode", [("resnet18", "train"), ("gpt2", "train"), ("swin_tiny", "inference"),
                                       ("efficientnet_b0", "train"), ("t5_small", "train")])
def test_meta_kernel_path_gives_what_fake_tensor_mode_gives(monkeypatch, name, mode):
    """Every call that takes the direct meta-kernel path (META_KERNEL_OPS) is run through
    FakeTensorMode's own dispatch as well: the same outputs, call for call."""
    import roofline_zoo
    from estimator import data_dependent

    direct = data_dependent._on_meta_kernel
    compared = []

    def both_ways(func, args, kwargs):
        out = direct(func, args, kwargs)
        if out is not None:
            reference = func(*args, **kwargs)  # FakeTensorMode's dispatch: our mode is off in run_fake
            inputs = [a for a in args if isinstance(a, torch.Tensor)]
            ours = [_layout_and_aliasing(t, inputs) for t in (out if isinstance(out, tuple) else (out,))]
            theirs = [_layout_and_aliasing(t, inputs) for t in (reference if isinstance(reference, tuple)
                                                                 else (reference,))]
            assert ours == theirs, func
            compared.append(func)
        return out

    monkeypatch.setattr(data_dependent, "_on_meta_kernel", both_ways)
    model, inputs = roofline_zoo.get(name).build(batch=2 if mode == "train" else 1)
    capture(model, inputs, mode=mode)
    assert len(compared) > 40 and len(set(compared)) >= 3


def test_decode_step_runs_the_products_a_real_run_runs():
    """A Llama decode step (one token, a KV cache) captured on fake tensors issues the same
    products and views as the model run eagerly on real CPU tensors: views take their strides
    from the C++ kernel (the meta-kernel path), so matmul folds the [1, 1, hidden] activations
    into mm as eager PyTorch does (FakeTensor's Python view reference sent two of them down
    expand + bmm)."""
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    from estimator.serving import cache_argument, capture_decode

    config = T.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(0)
    model = T.LlamaForCausalLM(config).eval()

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func] += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad():
        cache = model(input_ids=torch.randint(0, 256, (1, 16)), use_cache=True).past_key_values
        real = Recorder()
        with real:
            model(input_ids=torch.randint(0, 256, (1, 1)), use_cache=True, position_ids=torch.full((1, 1), 16),
                  **{cache_argument(model): cache})
    captured = Counter(n.op for n in capture_decode(model, config, 1, 16, torch.float32, "cpu", "tiny").nodes)
    aten = torch.ops.aten
    for op in (aten.mm.default, aten.bmm.default, aten.expand.default, aten.view.default, aten._unsafe_view.default):
        assert captured[op] == real.ops[op], op
    assert captured[aten.mm.default] == 15
