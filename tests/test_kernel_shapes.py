"""Kernel kinds whose speed follows their shape and layout (families.yaml kernel_shapes), checked
against the device times measured on a real H200 (validation/h200/gpu_kernel_kinds.jsonl, pure
device time from CUDA graphs): batch norm by channels and layout, layer norm by row length,
depthwise convolutions, cuDNN's layout transposes around half convolutions, autocast's casts."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from estimator.capture import capture
from estimator.hardware import load_hardware
from estimator.precision import PRECISIONS
from estimator.report import evaluate
from estimator.tensor_meta import TensorMeta

MEASURED = Path(__file__).resolve().parents[1] / "validation" / "h200" / "gpu_kernel_kinds.jsonl"
H200 = load_hardware("h200")


def measured(op: str) -> list[dict]:
    return [r for r in map(json.loads, MEASURED.read_text().splitlines())
            if r["kind"] == "device" and r["op"] == op and "error" not in r]


def dims(what: str) -> dict:
    out = {k: int(v) for k, v in re.findall(r"\b([nck])(\d+)\b", what)}
    m = re.search(r"(\d+)x(\d+)", what)
    out["a"], out["b"] = int(m.group(1)), int(m.group(2))
    return out


def forward_device_s(module: nn.Module, x: torch.Tensor, precision: str, op_class: str, train: bool) -> float:
    """Predicted device seconds of the forward nodes of `op_class` of module(x) on the H200."""
    if train:
        module.train()
    else:
        module.eval()
    step = capture(module, (x,), mode="train" if train else "inference", optimizer="sgd")
    report = evaluate(step, H200, precision)
    return sum(t.device_s for node, cost, t in zip(step.nodes, report.costs, report.times)
               if node.phase == "forward" and cost.op_class == op_class)


def test_channels_last_is_read_from_strides():
    x = torch.empty(2, 8, 4, 4)
    assert not TensorMeta.of(x).channels_last
    assert TensorMeta.of(x.to(memory_format=torch.channels_last)).channels_last
    assert not TensorMeta.of(torch.empty(2, 1, 4, 4).to(memory_format=torch.channels_last)).channels_last
    assert not TensorMeta.of(torch.empty(8, 4)).channels_last


@pytest.mark.parametrize("record", measured("bn_train_fwd") + measured("bn_eval_fwd"),
                         ids=lambda r: f"{r['op']} {r['what']}")
def test_batch_norm_matches_the_h200(record):
    """Training batch norm on NCHW streams one channel per CTA (16 channels: 2.3 ms, 40x an
    eval-mode pass); predictions land within a factor 1.6 of every measured shape and layout."""
    d = dims(record["what"])
    dtype = torch.float16 if record["what"].startswith("fp16") else torch.float32
    x = torch.empty(d["n"], d["c"], d["a"], d["b"], device="meta")
    bn = nn.BatchNorm2d(d["c"], device="meta")
    if " nhwc " in record["what"]:
        x, bn = x.to(memory_format=torch.channels_last), bn.to(memory_format=torch.channels_last)
    precision = "fp16" if dtype == torch.float16 else "fp32"
    predicted_us = 1e6 * forward_device_s(bn, x, precision, "norm", record["op"] == "bn_train_fwd")
    assert 1 / 1.6 < predicted_us / record["us"] < 1.6, (predicted_us, record)


@pytest.mark.parametrize("record", measured("ln_fwd"), ids=lambda r: r["what"])
def test_layer_norm_rows_match_the_h200(record):
    d = dims(record["what"])
    precision = "fp16" if record["what"].startswith("fp16") else "fp32"
    x = torch.empty(d["a"], d["b"], device="meta")
    predicted_us = 1e6 * forward_device_s(nn.LayerNorm(d["b"], device="meta"), x, precision, "norm", True)
    assert 1 / 1.6 < predicted_us / record["us"] < 1.6, (predicted_us, record)


def test_short_rows_and_few_channels_are_slower_per_byte():
    """The shape laws themselves: the same bytes take longer in short rows / few channels."""
    long_rows = forward_device_s(nn.LayerNorm(4096, device="meta"), torch.empty(4096, 4096, device="meta"),
                                 "fp32", "norm", True)
    short_rows = forward_device_s(nn.LayerNorm(96, device="meta"), torch.empty(4096 * 4096 // 96, 96, device="meta"),
                                  "fp32", "norm", True)
    assert short_rows > 3 * long_rows
    few = forward_device_s(nn.BatchNorm2d(16, device="meta"), torch.empty(256, 16, 112, 112, device="meta"),
                           "fp16", "norm", True)
    many = forward_device_s(nn.BatchNorm2d(1024, device="meta"), torch.empty(256, 1024, 14, 14, device="meta"),
                            "fp16", "norm", True)  # the same elements
    assert few > 5 * many


@pytest.mark.parametrize("record", [r for r in measured("conv_fwd") if "r3" in r["what"]], ids=lambda r: r["what"])
def test_half_convolutions_pay_layout_transposes_on_nchw(record):
    """3x3 fp16 convolutions: cuDNN transposes NCHW tensors around its NHWC kernels (measured 2x
    slower than channels_last); predicted within a factor 1.6, NCHW slower than NHWC."""
    d = dims(record["what"])
    conv = nn.Conv2d(d["c"], d["k"], 3, padding=1, bias=False, device="meta")
    x = torch.empty(d["n"], d["c"], d["a"], d["b"], device="meta")
    nhwc = " nhwc " in record["what"]
    if nhwc:
        conv, x = conv.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    predicted_us = 1e6 * forward_device_s(conv, x, "fp16", "conv", False)
    assert 1 / 1.6 < predicted_us / record["us"] < 1.6, (predicted_us, record)


def test_transposes_only_for_half_spatial_nchw_convolutions():
    x = torch.empty(64, 64, 56, 56, device="meta")
    spatial = nn.Conv2d(64, 64, 3, padding=1, bias=False, device="meta")
    pointwise = nn.Conv2d(64, 64, 1, bias=False, device="meta")
    for precision in ("fp16", "fp32"):
        nchw = forward_device_s(spatial, x, precision, "conv", False)
        nhwc = forward_device_s(spatial.to(memory_format=torch.channels_last),
                                x.to(memory_format=torch.channels_last), precision, "conv", False)
        spatial = spatial.to(memory_format=torch.contiguous_format)
        if precision == "fp16":
            assert nchw > 1.3 * nhwc
        else:
            assert nchw == pytest.approx(nhwc)  # TF32 kernels read NCHW directly: no transposes counted
    one = forward_device_s(pointwise, x, "fp16", "conv", False)
    one_cl = forward_device_s(pointwise.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last),
                              "fp16", "conv", False)
    assert one == pytest.approx(one_cl)


def test_autocast_casts_around_fp32_ops():
    """Under amp a layer norm reads an fp32 copy of its half input and its fp32 output is cast
    back: two cast kernels (and two host ops) more than the same model in pure bf16."""
    model = nn.Sequential(nn.Linear(1024, 1024), nn.LayerNorm(1024), nn.Linear(1024, 1024)).to("meta")
    step = capture(model, (torch.empty(8192, 1024, device="meta"),), mode="inference")
    amp = evaluate(step, H200, "amp-bf16")
    pure = evaluate(step, H200, "bf16")
    norm = next(i for i, c in enumerate(amp.costs) if c.op_class == "norm")
    elements = 8192 * 1024
    copy_s = elements * (2 + 4) / (H200.memory_bytes_per_s * 0.88)  # the two casts at the copy rate, at least
    extra = amp.times[norm].device_s - pure.times[norm].device_s
    assert extra > copy_s, (extra, copy_s)
    assert amp.times[norm].host_s > pure.times[norm].host_s
    assert PRECISIONS["amp-bf16"].float_bytes("norm") == 4
