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
