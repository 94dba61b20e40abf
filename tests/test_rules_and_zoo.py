"""The rule registry's integrity, precision handling, and the zoo's published sizes."""
from __future__ import annotations

import pytest
import torch

import estimator  # noqa: F401  (registers the rules)
import roofline_zoo
from estimator.costs import ABSENT_OPS, RULES, Cost, cost_rule
from estimator.precision import PRECISIONS, get_precision
from estimator.errors import PrecisionError


def test_every_registered_op_exists_in_the_pinned_torch():
    assert ABSENT_OPS == [], f"rules name ops this torch lacks (typos?): {ABSENT_OPS}"
    assert len(RULES) > 300


def test_duplicate_registration_fails_at_import_time():
    with pytest.raises(ValueError, match="aten.mm has two cost rules"):
        cost_rule("mm", op_class="matmul")(lambda node, nbytes: Cost())
    with pytest.raises(ValueError, match="unknown op class"):
        cost_rule("mm", op_class="magic")


def test_cost_arithmetic():
    a = Cost(10, 4, 2, "matmul")
    b = Cost(6, 1, 1, "attention", model_flops=3)
    total = a + b
    assert (total.flops, total.bytes, total.useful_flops, total.op_class) == (16, 8, 13, "mixed")
    assert a.scale(3) == Cost(30, 12, 6, "matmul")


def test_precision_element_sizes_follow_autocast():
    amp = PRECISIONS["amp-bf16"]
    # autocast runs matmuls in half, keeps norms/softmax/loss/reductions in fp32
    assert amp.float_bytes("matmul") == 2 and amp.float_bytes("elementwise") == 2
    assert amp.float_bytes("norm") == 4 and amp.float_bytes("softmax") == 4
    assert PRECISIONS["bf16"].float_bytes("norm") == 2
    assert PRECISIONS["fp8"].float_bytes("matmul") == 1
    with pytest.raises(PrecisionError, match="did you mean 'bf16'"):
        get_precision("bf61")


def test_half_precision_halves_float_traffic_but_not_indices():
    model, inputs = roofline_zoo.get("gpt2").build(batch=1, seq=32)
    report = estimator.estimate(model, inputs, hardware="h100-sxm", precision="fp32", mode="inference")
    half = report.recost(precision="bf16")
    t32, t16 = report.totals(), half.totals()
    assert t16["forward_flops"] == t32["forward_flops"]
    # every floating tensor halves; the int64 token ids (32 x 8 bytes, read twice: wte lookup and
    # the embedding's indices) keep their size
    assert t16["forward_bytes"] < 0.5 * t32["forward_bytes"] + 1000


# (zoo name, exact published parameter count, source) from ../shared/reference/reference_counts.yaml
PUBLISHED = [
    ("resnet50", 25_557_032, "torchvision ResNet50_Weights.IMAGENET1K_V1 num_params"),
    ("vit_b_16", 86_567_656, "torchvision ViT_B_16_Weights.IMAGENET1K_V1 num_params"),
    ("gpt2", 124_439_808, "exact_param_counts_nlp 'gpt2 (small)', tied LM head"),
]


@pytest.mark.parametrize("name, params, source", PUBLISHED)
def test_zoo_parameter_counts_equal_published(name, params, source):
    model, _ = roofline_zoo.get(name).build()
    assert sum(p.numel() for p in model.parameters()) == params, source


# forward GMACs at batch 1 from torchvision's documented 'GFLOPS' (= GMACs) column
PUBLISHED_GMACS = [("resnet50", 4.089), ("vit_b_16", 17.564)]


@pytest.mark.parametrize("name, gmacs", PUBLISHED_GMACS)
def test_zoo_forward_matmul_flops_within_2_percent_of_published(name, gmacs):
    model, inputs = roofline_zoo.get(name).build(batch=1)
    report = estimator.estimate(model, inputs, hardware="a100-80gb-sxm", mode="inference")
    matmul_conv = sum(c.flops for c in report.costs if c.op_class in ("matmul", "conv", "attention"))
    assert matmul_conv == pytest.approx(2 * gmacs * 1e9, rel=0.02)  # 1 MAC = 2 FLOPs


def test_model_is_not_touched_by_capture():
    model, inputs = roofline_zoo.get("resnet50").build(batch=1, device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    estimator.capture(model, inputs, mode="train")
    assert not model.training  # the mode flag is restored
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats untouched
    assert all(p.grad is None for p in model.parameters())


def _pool_flops(module, x):
    """{aten op: FLOPs} of the pooling nodes of a training step through `module`."""
    from torch import nn

    from estimator.capture import capture
    from estimator.precision import PRECISIONS
    from estimator.roofline import step_costs

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool, self.scale = module, nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.pool(x * self.scale)

    step = capture(Net(), (x,), mode="train", optimizer="sgd")
    costs = step_costs(step, PRECISIONS["fp32"])
    return {n.op.overloadpacket.__name__: c.flops for n, c in zip(step.nodes, costs) if c.op_class == "pooling"}


def _brute_force_taps(n, k, s, p, o, d=1):
    return sum(1 for j in range(o) for t in range(k) if 0 <= j * s - p + t * d < n)


def test_pool_windows_are_clipped_to_the_input():
    """A window larger than its input (Hugging Face EfficientNet's final AvgPool2d with
    ceil_mode) adds the elements it covers, not kernel^2 per output: 7x7 over 4x4 is 16 adds."""
    from torch import nn
    flops = _pool_flops(nn.AvgPool2d(7, ceil_mode=True), torch.randn(2, 8, 4, 4))
    assert flops["avg_pool2d"] == 2 * 8 * (16 + 1)  # 16 adds and one divide per output
    assert flops["avg_pool2d_backward"] == 2 * 8 * (16 + 1)
    # padding and edges: ResNet's 3x3/2 max pool, padding 1, on 112x112 -> 56x56
    flops = _pool_flops(nn.MaxPool2d(3, 2, 1), torch.randn(1, 4, 112, 112))
    per_dim = _brute_force_taps(112, 3, 2, 1, 56)
    assert per_dim == 56 * 3 - 1
    assert flops["max_pool2d_with_indices"] == 4 * per_dim ** 2
    # a window inside the input everywhere is unchanged: outputs x (window + 1)
    flops = _pool_flops(nn.AvgPool2d(2), torch.randn(1, 3, 8, 8))
    assert flops["avg_pool2d"] == 3 * 16 * (4 + 1)


def test_dilated_and_strided_max_pool_taps_match_a_brute_force_count():
    from torch import nn

    from estimator.rules.pooling import covered_taps
    for n, k, s, p, d in ((10, 3, 1, 1, 2), (9, 4, 3, 2, 1), (5, 5, 5, 2, 1), (7, 2, 2, 0, 3)):
        x = torch.randn(1, 1, n, n)
        out = nn.functional.max_pool2d(x, k, s, p, d, ceil_mode=True)
        o = out.shape[-1]
        assert covered_taps(x.shape, out.shape, [k, k], [s, s], [p, p], [d, d]) == _brute_force_taps(n, k, s, p, o, d) ** 2


def test_fft_is_costed_by_the_5_n_log2_n_convention():
    """FNet's token mixing: fft2 of a (2, 16, 32) tensor is complex transforms over 16 and 32
    points: 5 x 1024 x (4 + 5) FLOPs forward, the same again in the backward; never a zero."""
    from torch import nn

    from estimator.capture import capture
    from estimator.precision import PRECISIONS
    from estimator.roofline import step_costs

    class FNetMixing(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(32, 32)

        def forward(self, x):
            return torch.fft.fft2(self.proj(x)).real

    step = capture(FNetMixing(), (torch.randn(2, 16, 32),), mode="train", optimizer=None)
    costs = step_costs(step, PRECISIONS["fp32"])
    ffts = [(n.phase, c) for n, c in zip(step.nodes, costs) if n.op.overloadpacket.__name__.startswith("_fft")]
    assert [phase for phase, _ in ffts] == ["forward", "backward"]
    assert all(c.flops == 5 * 1024 * 9 and c.bytes > 0 for _, c in ffts)
    assert not any(c.op_class == "unsupported" for c in costs)


def test_unsafe_split_is_a_view():
    from torch import nn

    from estimator.capture import capture
    from estimator.precision import PRECISIONS
    from estimator.roofline import step_costs

    class Splitter(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(8, 8)

        def forward(self, x):
            a, b = torch.unsafe_split(self.proj(x), 4, dim=-1)
            return a * b

    step = capture(Splitter(), (torch.randn(2, 8),), mode="inference")
    costs = step_costs(step, PRECISIONS["fp32"])
    classes = {n.op.overloadpacket.__name__: c.op_class for n, c in zip(step.nodes, costs)}
    assert classes["unsafe_split"] == "free" and "unsupported" not in classes.values()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_layers_are_costed_by_the_formula(bidirectional):
    """nn.LSTM captures as one mkldnn_rnn_layer per layer and direction: 2 G (I + H) per step
    and sequence for the gate GEMMs (G = 4H) plus 3G + 3H elementwise; the backward twice that.
    No op is unsupported (it used to count zero FLOPs)."""
    from torch import nn

    from estimator.capture import capture
    from estimator.precision import PRECISIONS
    from estimator.roofline import step_costs

    batch, steps, inputs, hidden = 4, 10, 16, 32
    model = nn.LSTM(inputs, hidden, num_layers=2, batch_first=True, bidirectional=bidirectional)
    step = capture(model, (torch.randn(batch, steps, inputs),), mode="train", optimizer=None)
    costs = step_costs(step, PRECISIONS["fp32"])
    assert not any(c.op_class == "unsupported" for c in costs)
    directions = 2 if bidirectional else 1
    g = 4 * hidden

    def layer(i):
        return batch * steps * (2 * g * (i + hidden) + 3 * g + 3 * hidden)
    expected = directions * (layer(inputs) + layer(directions * hidden))
    forward = sum(c.flops for n, c in zip(step.nodes, costs) if n.op.overloadpacket.__name__ == "mkldnn_rnn_layer")
    backward = sum(c.flops for n, c in zip(step.nodes, costs)
                   if n.op.overloadpacket.__name__ == "mkldnn_rnn_layer_backward")
    assert forward == expected and backward == 2 * expected


@pytest.mark.parametrize("cell, gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_stacks_on_a_gpu_are_one_cudnn_call(cell, gates):
    """Captured for a GPU, a recurrent stack is one roofline::rnn call forward and one
    roofline::rnn_backward (cuDNN's), whatever the CPU runs; FLOPs by the same formula with
    G = gates x H; on real tensors the stand-in computes what torch computes."""
    from torch import nn

    from estimator.capture import capture
    from estimator.device_dispatch import cuda_dispatch
    from estimator.precision import PRECISIONS
    from estimator.roofline import step_costs

    batch, steps, inputs, hidden = 3, 7, 10, 12
    model = getattr(nn, cell)(inputs, hidden, num_layers=2, batch_first=True, bidirectional=True)
    step = capture(model, (torch.randn(batch, steps, inputs),), mode="train", optimizer=None, dispatch="cuda")
    costs = step_costs(step, PRECISIONS["fp32"])
    fused = {n.name: c.flops for n, c in zip(step.nodes, costs) if n.op.namespace == "roofline"}
    g = gates * hidden

    def layer(i):
        return batch * steps * (2 * g * (i + hidden) + 3 * g + 3 * hidden)
    expected = 2 * (layer(inputs) + layer(2 * hidden))
    assert fused == {"roofline.rnn.default": expected, "roofline.rnn_backward.default": 2 * expected}
    assert not any(c.op_class == "unsupported" for c in costs)
    x = torch.randn(5, steps, inputs)
    reference = model(x)
    with cuda_dispatch():
        standing_in = model(x)
    assert torch.allclose(reference[0], standing_in[0], atol=1e-6)
    for h_ref, h_got in zip(*(r[1] if cell == "LSTM" else (r[1],) for r in (reference, standing_in))):
        assert torch.allclose(h_ref, h_got, atol=1e-6)


def test_special_functions_and_activations_have_rules():
    """Math a real model meets (erfinv in initialisers and flows, lgamma/digamma in
    distributions, GLU, SELU, log-sigmoid, PReLU, random fills): costed, never unsupported."""
    from torch import nn
    from torch.nn import functional as F

    from estimator.capture import capture
    from estimator.precision import PRECISIONS
    from estimator.roofline import step_costs

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj, self.prelu = nn.Linear(8, 8), nn.PReLU()

        def forward(self, x):
            y = torch.tanh(self.proj(x))
            y = torch.erfinv(0.5 * y) + torch.lgamma(y.abs() + 1) + torch.digamma(y.abs() + 1) + torch.special.i0(y)
            y = F.glu(torch.cat([y, y], -1)) + F.selu(y) + F.logsigmoid(y) + self.prelu(y) + torch.logaddexp(y, y)
            return y + torch.empty_like(y).uniform_() + torch.empty_like(y).normal_()

    step = capture(Mixed(), (torch.randn(4, 8),), mode="train", optimizer=None)
    costs = step_costs(step, PRECISIONS["fp32"])
    missing = sorted({n.op.overloadpacket.__name__ for n, c in zip(step.nodes, costs) if c.op_class == "unsupported"})
    assert missing == []
    assert all(c.flops > 0 for n, c in zip(step.nodes, costs) if c.op_class == "elementwise")


def test_interpolation_sampling_and_padding_ops_have_rules():
    """Ops the HF corpus and a sweep over transformers' auto classes met: linear, trilinear and
    nearest-exact resizing, grid sampling and replication padding, forward and backward, by
    taps per output element (memory ops move bytes only)."""
    from torch.nn import functional as F

    from estimator.capture import capture
    from estimator.precision import PRECISIONS
    from estimator.roofline import step_costs

    class Resampler(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c3 = torch.nn.Conv1d(4, 4, 1), torch.nn.Conv3d(2, 2, 1)

        def forward(self, x, grid, volume):
            y = self.c1(x)
            z = self.c3(volume)
            return (F.interpolate(y, scale_factor=2, mode="linear").sum()
                    + F.grid_sample(y.reshape(1, 4, 4, 8), grid, align_corners=False).sum()
                    + F.interpolate(z, scale_factor=2, mode="trilinear").sum()
                    + F.interpolate(z, scale_factor=2, mode="nearest-exact").sum()
                    + F.pad(y, (2, 2), mode="replicate").sum())

    step = capture(Resampler(), (torch.randn(1, 4, 32), torch.randn(1, 5, 5, 2), torch.randn(1, 2, 4, 4, 4)),
                   mode="train", optimizer=None)
    flops = {}
    for node, cost in zip(step.nodes, step_costs(step, PRECISIONS["fp32"])):
        assert cost.op_class != "unsupported", node.name
        flops[node.op.overloadpacket.__name__] = cost.flops
    assert flops["upsample_linear1d"] == flops["upsample_linear1d_backward"] == 3 * 4 * 64
    assert flops["grid_sampler_2d"] == 13 * 4 * 5 * 5 and flops["grid_sampler_2d_backward"] == 2 * 13 * 4 * 5 * 5
    assert flops["upsample_trilinear3d"] == flops["upsample_trilinear3d_backward"] == 15 * 2 * 8 ** 3
    assert flops["_upsample_nearest_exact3d"] == flops["replication_pad1d"] == 0


def test_triangular_solve_and_polar_have_rules():
    """linalg_solve_triangular (LaRA-style attention) costs n^2 k per solve; polar (Llama-4's
    rotary embedding) 4 FLOPs per element; both seen in the sweep over transformers' classes."""
    from estimator.capture import capture
    from estimator.precision import PRECISIONS
    from estimator.roofline import step_costs

    class Solver(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(6, 6)

        def forward(self, a, b):
            upper = torch.triu(self.proj(a)) + 3 * torch.eye(6)
            angles = self.proj(a)
            return torch.linalg.solve_triangular(upper, b, upper=True).sum() + torch.polar(angles.abs(), angles).abs().sum()

    step = capture(Solver(), (torch.randn(6, 6), torch.randn(6, 4)), mode="train", optimizer=None)
    costs = {n.op.overloadpacket.__name__: c for n, c in zip(step.nodes, step_costs(step, PRECISIONS["fp32"]))}
    assert not [name for name, c in costs.items() if c.op_class == "unsupported"]
    assert costs["linalg_solve_triangular"].flops == 6 * 6 * 4
    assert costs["polar"].flops == 4 * 36


def test_running_extrema_and_membership_have_rules():
    """cummax / cummin (one compare per element) and isin (ATen compares all pairs for a small
    test set, else sorts), met in Grounding DINO."""
    from estimator.capture import capture
    from estimator.precision import PRECISIONS
    from estimator.roofline import step_costs

    class Scans(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x, ids):
            y = self.proj(x)
            special = torch.isin(ids, torch.tensor([1, 2, 3]))
            return torch.cummax(y, 1).values.sum() + torch.cummin(y, 1).values.sum() + special.sum()

    step = capture(Scans(), (torch.randn(4, 8), torch.randint(0, 9, (4, 6))), mode="train", optimizer=None)
    costs = step_costs(step, PRECISIONS["fp32"])
    assert not [n.name for n, c in zip(step.nodes, costs) if c.op_class == "unsupported"]
    flops = {n.op.overloadpacket.__name__: c.flops for n, c in zip(step.nodes, costs)}
    assert flops["cummax"] == flops["cummin"] == 4 * 8
    assert flops["isin"] == 24 * 3  # 3 test values < 10 x 24^0.145: every pair compared


def test_unfold_backward_and_antialiased_bicubic_have_rules():
    """Tensor.unfold's gradient (UnivNet) adds each window's gradient back: one add per element;
    antialiased bicubic resizing's backward follows the bicubic rule (32 per output element)."""
    from torch.nn import functional as F

    from estimator.capture import capture
    from estimator.precision import PRECISIONS
    from estimator.roofline import step_costs

    class Windows(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return y.unfold(3, 4, 2).sum() + F.interpolate(y, scale_factor=2, mode="bicubic", antialias=True).sum()

    step = capture(Windows(), (torch.randn(1, 2, 8, 8),), mode="train", optimizer=None)
    costs = step_costs(step, PRECISIONS["fp32"])
    assert not [n.name for n, c in zip(step.nodes, costs) if c.op_class == "unsupported"]
    flops = {n.op.overloadpacket.__name__: c.flops for n, c in zip(step.nodes, costs)}
    assert flops["unfold_backward"] == 2 * 8 * 3 * 4  # three windows of 4 along the last axis
    assert flops["_upsample_bicubic2d_aa_backward"] == 32 * 2 * 16 * 16
