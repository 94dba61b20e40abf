"""The zoo's encoder-decoder, detection and segmentation models: transformer_big, t5_small,
ssd300, unet.

Covers: parameter counts (exact where a source gives one: Hugging Face's T5, torchvision's
ResNet-50; otherwise the architecture's formula, written out here), T5's outputs equal to
Hugging Face's on the same weights, forward FLOPs equal to formulas over the architectures,
the errors for inputs the models cannot take, and a training step of each with a cost rule
for every op.
"""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import estimator
import roofline_zoo
from estimator.errors import CaptureError
from roofline_zoo.seq2seq import T5, T5Config

MATRIX_CLASSES = ("matmul", "attention", "conv")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights once


def _forward_matrix_flops(name: str, **sizes) -> int:
    model, inputs = roofline_zoo.get(name).build(**sizes)
    report = estimator.estimate(model, inputs, hardware="a100-80gb-sxm", mode="inference")
    assert not report.unsupported()
    return sum(c.flops for c in report.costs if c.op_class in MATRIX_CLASSES)


# ---- transformer_big -------------------------------------------------------------------------

D, FFN, LAYERS = 1024, 4096, 6
ATTN = 4 * (D * D + D)  # q, k, v, out projections with biases
FEED_FORWARD = D * FFN + FFN + FFN * D + D
LAYER_NORM = 2 * D
ENCODER_LAYER = ATTN + FEED_FORWARD + 2 * LAYER_NORM  # 12,596,224
DECODER_LAYER = 2 * ATTN + FEED_FORWARD + 3 * LAYER_NORM  # 16,796,672 (self + cross attention)
NON_EMBEDDING = LAYERS * (ENCODER_LAYER + DECODER_LAYER)  # 176,357,376; sinusoids have no parameters


def test_transformer_big_parameters_by_formula_and_against_the_paper():
    model, _ = roofline_zoo.get("transformer_big").build()
    # fairseq's joined 32,768-token BPE dictionary, one matrix for source, target and output
    assert _params(model) == NON_EMBEDDING + 32768 * D == 209_911_808
    # Vaswani et al. Table 3: 213M with a shared vocabulary of "about 37000" tokens; their
    # figures are rounded (at 37,000 tokens the formula gives 214.2M, +0.6%)
    assert (NON_EMBEDDING + 37000 * D) / 213e6 == pytest.approx(1, abs=0.006)
    assert _params(model) / 213e6 == pytest.approx(1, abs=0.015)


def test_transformer_big_forward_flops_are_2n_per_token_plus_logits_and_attention():
    n, s = 2, 64
    attention = 18 * 4 * s * s * D  # 6 encoder, 6 causal (executed in full), 6 cross: QK^T and PV
    expected = n * (s * (2 * NON_EMBEDDING + 2 * D * 32768) + attention)
    assert _forward_matrix_flops("transformer_big", batch=n, seq=s) == pytest.approx(expected, rel=1e-3)


# ---- t5_small --------------------------------------------------------------------------------

T5_NON_EMBEDDING = (6 * (4 * 512 * 512 + 2 * 512 * 2048 + 2 * 512)  # encoder blocks
                    + 6 * (8 * 512 * 512 + 2 * 512 * 2048 + 3 * 512)  # decoder blocks
                    + 2 * (32 * 8 + 512))  # per stack: relative bias table, final norm


def test_t5_small_parameters_equal_hugging_face():
    transformers = pytest.importorskip("transformers")
    model, _ = roofline_zoo.get("t5_small").build()
    with torch.device("meta"):
        hf = transformers.T5ForConditionalGeneration(transformers.T5Config())  # t5-small's config
    assert _params(model) == _params(hf) == T5_NON_EMBEDDING + 32128 * 512 == 60_506_624


def _hf_name(ours: str) -> str:
    """Our T5 parameter name -> Hugging Face's."""
    ff = "2" if ours.startswith("decoder") else "1"
    renames = [
        (r"^(\w+)\.relative_attention_bias", r"\1.block.0.layer.0.SelfAttention.relative_attention_bias"),
        (r"\.blocks\.", ".block."),
        (r"\.self_attn_norm\.", ".layer.0.layer_norm."),
        (r"\.self_attn\.", ".layer.0.SelfAttention."),
        (r"\.cross_attn_norm\.", ".layer.1.layer_norm."),
        (r"\.cross_attn\.", ".layer.1.EncDecAttention."),
        (r"\.ff_norm\.", f".layer.{ff}.layer_norm."),
        (r"\.(wi|wo)\.", rf".layer.{ff}.DenseReluDense.\1."),
    ]
    for pattern, repl in renames:
        ours = re.sub(pattern, repl, ours)
    return ours


def test_t5_outputs_equal_hugging_face_on_the_same_weights():
    # a small T5 v1.0 (same code paths as t5-small), 300 tokens: past max_distance 128, so the
    # log-spaced buckets of both directions are exercised
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)).eval()
    ours = T5(T5Config(vocab_size=100, layers=2, heads=4, head_dim=8, dim=32, ffn_dim=64)).eval()
    hf_state = hf.state_dict()
    ours.load_state_dict({name: hf_state[_hf_name(name)] for name in ours.state_dict()})
    ids = torch.randint(0, 100, (2, 300))
    with torch.no_grad():
        expected = hf(input_ids=ids, decoder_input_ids=ids).logits
        torch.testing.assert_close(ours(ids), expected, rtol=1e-5, atol=1e-5)


def test_t5_small_forward_flops_are_2n_per_token_plus_logits_and_attention():
    n, s = 2, 64
    attention = 18 * 4 * s * s * 512  # QK^T and PV of 8 heads x 64 in 18 attention layers
    expected = n * (s * (2 * T5_NON_EMBEDDING + 2 * 512 * 32128) + attention)
    assert _forward_matrix_flops("t5_small", batch=n, seq=s) == pytest.approx(expected, rel=2e-3)


# ---- ssd300 ----------------------------------------------------------------------------------

def _bottleneck(in_ch: int, width: int, downsample: bool) -> int:
    # 1x1, 3x3, 1x1 convs without bias, a BN (2 per channel) after each, optional 1x1 + BN
    out = 4 * width
    convs = in_ch * width + 9 * width * width + width * out
    return convs + 2 * (2 * width + out) + (in_ch * out + 2 * out) * downsample


def _resnet_stage(in_ch: int, width: int, blocks: int) -> int:
    return _bottleneck(in_ch, width, True) + (blocks - 1) * _bottleneck(4 * width, width, False)


SSD_BACKBONE = 3 * 64 * 49 + 2 * 64 + _resnet_stage(64, 64, 3) + _resnet_stage(256, 128, 4) + _resnet_stage(512, 256, 6)
SSD_CHANNELS, SSD_BOXES = (1024, 512, 512, 256, 256, 256), (4, 6, 6, 6, 4, 4)
SSD_EXTRA = sum(a * w + 2 * w + 9 * w * b + 2 * b  # 1x1 conv, BN, 3x3 conv, BN
                for a, w, b in zip(SSD_CHANNELS[:-1], (256, 256, 128, 128, 128), SSD_CHANNELS[1:]))
SSD_HEADS = sum(n * (4 + 81) * (9 * c + 1) for c, n in zip(SSD_CHANNELS, SSD_BOXES))  # 3x3 convs with bias


def test_ssd300_parameters_by_construction():
    model, _ = roofline_zoo.get("ssd300").build()
    # the backbone is torchvision's resnet50 (25,557,032) without layer4 and fc
    assert SSD_BACKBONE + _resnet_stage(1024, 512, 3) + 2048 * 1000 + 1000 == 25_557_032
    assert (SSD_BACKBONE, SSD_EXTRA, SSD_HEADS) == (8_543_296, 3_773_696, 10_577_910)
    assert _params(model) == SSD_BACKBONE + SSD_EXTRA + SSD_HEADS == 22_894_902


@pytest.mark.parametrize("image, boxes", [(300, 8732), (257, 6766)])
def test_ssd300_boxes_per_image(image, boxes):
    # 300px: maps of 38, 19, 10, 5, 3, 1 pixels; 257px (the smallest): 33, 17, 9, 5, 3, 1
    model, (x,) = roofline_zoo.get("ssd300").build(batch=2, image=image)
    locs, confs = model.eval()(x)
    assert locs.shape == (2, 4, boxes) and confs.shape == (2, 81, boxes)


def _conv_flops_by_module(model: nn.Module, x: torch.Tensor) -> int:
    """2 x MACs (+ the bias adds) of every Conv2d / ConvTranspose2d, from the shapes it sees."""
    total = 0

    def hook(m, inputs, out):
        nonlocal total
        transposed = isinstance(m, nn.ConvTranspose2d)  # each input pixel scatters, else each output gathers
        pixels = inputs[0].numel() // m.in_channels if transposed else out.numel() // m.out_channels
        total += 2 * pixels * m.weight.numel() + (out.numel() if m.bias is not None else 0)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    model.eval()(x)
    for h in handles:
        h.remove()
    return total


def _bottleneck_macs(in_ch: int, width: int, res_in: int, stride: int, downsample: bool) -> int:
    res = (res_in - 1) // stride + 1  # the 3x3 conv (padding 1) carries the stride
    return (res_in ** 2 * in_ch * width + res ** 2 * 9 * width * width + res ** 2 * width * 4 * width
            + res ** 2 * in_ch * 4 * width * downsample)


def _stage_macs(in_ch: int, width: int, blocks: int, res_in: int, stride: int) -> int:
    res = (res_in - 1) // stride + 1
    return (_bottleneck_macs(in_ch, width, res_in, stride, True)
            + (blocks - 1) * _bottleneck_macs(4 * width, width, res, 1, False))


def test_ssd300_forward_flops_by_formula():
    maps = (38, 19, 10, 5, 3, 1)  # the six feature maps at 300px
    macs = 150 ** 2 * 3 * 64 * 49  # conv1, then a 3x3/2 max pool to 75
    macs += _stage_macs(64, 64, 3, 75, 1) + _stage_macs(256, 128, 4, 75, 2) + _stage_macs(512, 256, 6, 38, 1)
    macs += sum(r_in ** 2 * a * w + r_out ** 2 * 9 * w * b  # extra blocks: 1x1 at r_in, 3x3 to r_out
                for r_in, r_out, a, w, b in zip(maps[:-1], maps[1:], SSD_CHANNELS[:-1], (256, 256, 128, 128, 128),
                                                SSD_CHANNELS[1:]))
    head_outputs = [r * r * n * (4 + 81) for r, n in zip(maps, SSD_BOXES)]
    macs += sum(o * 9 * c for o, c in zip(head_outputs, SSD_CHANNELS))
    expected = 2 * macs + sum(head_outputs)  # + the heads' bias adds
    assert expected == pytest.approx(2 * 20.15e9, rel=1e-3)  # 20.15 GMACs per 300px image
    model, (x,) = roofline_zoo.get("ssd300").build(batch=1)
    assert _conv_flops_by_module(model, x) == expected
    assert _forward_matrix_flops("ssd300", batch=1) == expected


# ---- unet ------------------------------------------------------------------------------------

UNET_WIDTHS = (64, 128, 256, 512, 1024)


def _double_conv(a: int, b: int) -> int:
    return 9 * a * b + 9 * b * b + 4 * b  # two 3x3 convs without bias, two BNs


def test_unet_parameters_by_construction():
    model, _ = roofline_zoo.get("unet").build()
    pairs = list(zip(UNET_WIDTHS[:-1], UNET_WIDTHS[1:]))
    down = _double_conv(3, 64) + sum(_double_conv(a, b) for a, b in pairs)
    up = sum(4 * b * a + a + _double_conv(b, a) for a, b in pairs)  # 2x2 transposed conv b -> a = b/2
    assert _params(model) == down + up + 64 * 2 + 2 == 31_037_698  # 1x1 head to 2 classes


def test_unet_forward_flops_by_formula():
    s = 128
    w = UNET_WIDTHS
    pixels = [(s >> level) ** 2 for level in range(5)]
    expected = pixels[0] * 2 * 9 * (3 * 64 + 64 * 64)
    for level in range(1, 5):
        a, b = w[level - 1], w[level]
        expected += pixels[level] * 2 * 9 * (a * b + b * b)  # down: double conv a -> b
        expected += pixels[level] * 2 * 4 * b * a + pixels[level - 1] * a  # up: transposed conv + bias
        expected += pixels[level - 1] * 2 * 9 * (b * a + a * a)  # up: double conv b -> a
    expected += pixels[0] * (2 * 64 * 2 + 2)  # 1x1 head with bias
    model, (x,) = roofline_zoo.get("unet").build(batch=1, image=s)
    assert _conv_flops_by_module(model, x) == expected
    assert _forward_matrix_flops("unet", batch=1, image=s) == expected


# ---- inputs the models cannot take -----------------------------------------------------------

@pytest.mark.parametrize("name, sizes, message", [
    ("transformer_big", {"seq": 1025}, "sequence length 1025 exceeds the model's 1024 positions"),
    ("t5_small", {"seq": 513}, "sequence length 513 exceeds the model's 512 positions"),
    ("ssd300", {"image": 256}, r"image \(256, 256\) is too small for SSD300.*257x257"),
    ("unet", {"image": 250}, "image 250x250 does not fit the U-Net.*multiples of 16"),
    ("unet", {"image": 8}, "image 8x8 does not fit the U-Net.*multiples of 16"),
])
def test_bad_inputs_raise_value_error(name, sizes, message):
    model, inputs = roofline_zoo.get(name).build(batch=2, **sizes)
    with pytest.raises(ValueError, match=message):
        model.eval()(*inputs)
    with pytest.raises(CaptureError, match=message):  # and through the estimator, as one line
        estimator.capture(model, inputs, mode="inference")


def test_ssd300_training_needs_two_images():
    # the last map is 1x1: with one image its batch norm sees one value per channel, which
    # torch refuses in training (as NVIDIA's model does)
    model, inputs = roofline_zoo.get("ssd300").build(batch=1)
    with pytest.raises(CaptureError, match="Expected more than 1 value per channel when training"):
        estimator.capture(model, inputs, mode="train")


# ---- a training step of each -----------------------------------------------------------------

@pytest.mark.parametrize("name, sizes", [
    ("transformer_big", {"batch": 1, "seq": 32}),
    ("t5_small", {"batch": 1, "seq": 32}),
    ("ssd300", {"batch": 2}),  # 300px; see test_ssd300_training_needs_two_images
    ("unet", {"batch": 1, "image": 64}),
])
def test_training_step_has_a_cost_rule_for_every_op(name, sizes):
    model, inputs = roofline_zoo.get(name).build(**sizes)
    report = estimator.estimate(model, inputs, hardware="a100-80gb-sxm", mode="train")
    assert not report.unsupported(), report.unsupported()
    totals = report.totals()
    assert totals["parameters"] == totals["trainable_parameters"] == _params(model)
    assert 1.8 < totals["backward_flops"] / totals["forward_flops"] < 2.2  # backward ~ 2x forward
    assert {n.phase for n in report.nodes} == {"forward", "loss", "backward", "optimizer"}
