"""`roofline required`: the 3x rule (seed 001's table), our traced count beside it, chips needed.

The rule: required FLOP/s = forward MACs x 2 FLOPs/MAC x 3 (training; 1 for inference) x
samples/s; peak ratio = required / the chip's dense matrix peak at the precision. Seed 001
(ResNet-50, 4.112 GMACs, on a V100) prints 32.69 TFLOPS / 29.2% at fp16 and 1325 samples/s,
and 7.478 TFLOPS / 53% at fp32 and 303.1 samples/s; we reproduce those digits.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import roofline_zoo
from estimator.capture import capture
from estimator.cli import main
from estimator.costs import rule_for
from estimator.hardware import load_hardware
from estimator.precision import PRECISIONS
from estimator.report import evaluate
from estimator.roofline import step_costs

RESNET50_MACS = 4.112e9  # seed 001, by thop
CHIPS = ("v100-pcie", "a100-80gb-sxm")
BATCH = 2


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["required", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> dict:
    code, out, err = run(capsys, *argv, "--json", "-")
    assert code == 0, err
    return json.loads(out)


# --------------------------------------------------------------------------------------------
# The 3x rule on MACs counted elsewhere: seed 001's two rows.

@pytest.mark.parametrize("precision, samples_per_s, tflops_printed, ratio_printed, ratio_digits", [
    ("fp16", "1325", "32.69", "29.2%", 1),  # seed: 32.69 TFLOPS, 29.2%
    ("fp32", "303.1", "7.478", "53%", 0),  # seed: 7.478 TFLOPS, 53%
])
def test_seed_rows(capsys, precision, samples_per_s, tflops_printed, ratio_printed, ratio_digits):
    argv = ("--macs", str(RESNET50_MACS), "--throughput", samples_per_s, "--hardware", "v100-pcie",
            "--precision", precision, "--train")
    data = run_json(capsys, *argv)
    required = RESNET50_MACS * 2 * 3 * float(samples_per_s)
    peak = load_hardware("v100-pcie").matrix_peak(PRECISIONS[precision])
    assert data["rule_flops_per_s"] == pytest.approx(required)
    assert data["chips"][0]["peak_flops_per_s"] == peak
    assert data["chips"][0]["rule_peak_ratio"] == pytest.approx(required / peak)
    # the seed's printed digits
    assert f"{data['rule_flops_per_s'] / 1e12:.4g}" == tflops_printed
    assert f"{data['chips'][0]['rule_peak_ratio']:.{ratio_digits}%}" == ratio_printed
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert f"= {tflops_printed} TFLOPS required" in out
    assert f"{data['chips'][0]['rule_peak_ratio']:.1%}" in out  # the table shows one decimal (53.4% for 53%)
    assert "v100-pcie" in out


def test_forward_only_factor_is_one(capsys):
    argv = ("--macs", "4.112e9", "--throughput", "1325", "--hardware", "v100-pcie", "--precision", "fp16")
    inference, train = run_json(capsys, *argv), run_json(capsys, *argv, "--train")
    assert inference["train"] is False and train["train"] is True
    assert inference["rule_flops_per_s"] == pytest.approx(4.112e9 * 2 * 1325)
    assert train["chips"][0]["rule_peak_ratio"] == pytest.approx(3 * inference["chips"][0]["rule_peak_ratio"])


def test_several_chips_one_row_each(capsys):
    data = run_json(capsys, "--macs", "1e9", "--throughput", "100", "--hardware", ",".join(CHIPS),
                    "--precision", "fp16")
    assert [c["hardware"] for c in data["chips"]] == list(CHIPS)
    for c in data["chips"]:
        assert c["rule_peak_ratio"] == pytest.approx(1e9 * 2 * 100 / c["peak_flops_per_s"])
        assert c["chips_needed"] is None  # no model, no prediction


# --------------------------------------------------------------------------------------------
# A model: our counted MACs for the rule, our traced FLOPs beside it, and our prediction.

@pytest.fixture(scope="module")
def resnet18_train():
    model, inputs = roofline_zoo.get("resnet18").build(batch=BATCH)
    return capture(model, inputs, mode="train", model_name="resnet18")


def test_model_macs_are_our_forward_matmul_and_conv_flops(capsys, resnet18_train):
    data = run_json(capsys, "resnet18", "--batch", str(BATCH), "--throughput", "100", "--hardware", "v100-pcie",
                    "--precision", "fp16", "--train")
    # from the captured step: forward nodes whose rule is a matmul or a convolution (ResNet has no attention)
    flops = sum(cost.flops for node, cost in zip(resnet18_train.nodes, step_costs(resnet18_train, PRECISIONS["fp16"]))
                if node.phase == "forward" and rule_for(node) and rule_for(node).op_class in ("matmul", "conv"))
    assert data["forward_macs_per_sample"] == pytest.approx(flops / 2 / BATCH)
    # and independently, FlopCounterMode on the forward (products only) plus our fc bias add:
    # one FLOP per output element, num_classes per sample (the convolutions have no bias)
    entry = roofline_zoo.get("resnet18")
    model, inputs = entry.build(batch=BATCH)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(*inputs)
    assert 2 * data["forward_macs_per_sample"] == pytest.approx(counter.get_total_flops() / BATCH + entry.num_classes)
    assert data["rule_flops_per_s"] == pytest.approx(data["forward_macs_per_sample"] * 2 * 3 * 100)


def test_model_chips_needed_from_our_prediction(capsys, tmp_path, resnet18_train):
    precision = PRECISIONS["fp16"]
    predicted = {chip: evaluate(resnet18_train, load_hardware(chip), precision).totals() for chip in CHIPS}
    # a target 2.5x the faster chip's prediction: several chips of each
    target = 2.5 * max(t["throughput_samples_per_s"] for t in predicted.values())
    path = tmp_path / "required.json"
    code, out, err = run(capsys, "resnet18", "--batch", str(BATCH), "--throughput", repr(target),
                         "--hardware", ",".join(CHIPS), "--precision", "fp16", "--train", "--json", str(path))
    assert code == 0, err
    data = json.loads(path.read_text())
    assert {"precision", "train", "target_samples_per_s", "forward_macs_per_sample", "rule_flops_per_s", "chips",
            "model", "batch", "traced_flops_per_sample", "traced_flops_per_s"} == set(data)
    assert (data["model"], data["batch"], data["precision"], data["train"]) == ("resnet18", BATCH, "fp16", True)
    assert data["traced_flops_per_s"] == pytest.approx(data["traced_flops_per_sample"] * target)
    for row, chip in zip(data["chips"], CHIPS):
        assert {"hardware", "peak_flops_per_s", "rule_peak_ratio", "traced_peak_ratio", "predicted_utilization",
                "predicted_samples_per_s", "chips_needed"} == set(row)
        per_chip = predicted[chip]["throughput_samples_per_s"]
        peak = load_hardware(chip).matrix_peak(precision)
        assert row["hardware"] == chip
        assert row["predicted_samples_per_s"] == pytest.approx(per_chip)
        assert row["predicted_utilization"] == pytest.approx(predicted[chip]["utilization"])
        assert row["chips_needed"] == math.ceil(target / per_chip)
        assert row["chips_needed"] >= 3  # 2.5x the faster chip
        assert row["rule_peak_ratio"] == pytest.approx(data["rule_flops_per_s"] / peak)
        assert row["traced_peak_ratio"] == pytest.approx(data["traced_flops_per_s"] / peak)
        assert chip in out and f"{row['chips_needed']:,}" in out
    assert "3x rule" in out and "traced" in out and f"wrote {path}" in " ".join(err.split())


def test_traced_count_is_the_step_without_the_optimizer(capsys):
    """Training: every op of the forward, loss and backward, per sample: the model FLOPs of the same step
    captured without an optimizer. Inference: the forward's model FLOPs."""
    for mode, flag in (("train", ("--train",)), ("inference", ())):
        data = run_json(capsys, "resnet18", "--batch", str(BATCH), "--throughput", "100", "--hardware", "v100-pcie",
                        "--precision", "fp16", *flag)
        model, inputs = roofline_zoo.get("resnet18").build(batch=BATCH)
        step = capture(model, inputs, mode=mode, optimizer=None)
        totals = evaluate(step, load_hardware("v100-pcie"), "fp16").totals()
        assert data["traced_flops_per_sample"] == pytest.approx(totals["model_flops"] / BATCH), mode
        factor = 3 if mode == "train" else 1
        assert data["rule_flops_per_s"] == pytest.approx(data["forward_macs_per_sample"] * 2 * factor * 100), mode


# --------------------------------------------------------------------------------------------
# Bad input: one line naming the value and the fix, exit 2.

BASE = ("--throughput", "100", "--hardware", "v100-pcie")
BAD_INPUT = [
    (("--macs", "4e9", "--throughput", "0", "--hardware", "v100-pcie"),
     ["throughput must be a positive number of samples/s, got 0", "--throughput 1325"]),
    (("resnet18", "--throughput", "-5", "--hardware", "v100-pcie"), ["got -5", "--throughput 1325"]),
    (("--macs", "0", *BASE), ["forward MACs per sample must be a positive number, got 0", "--macs 4.112e9"]),
    (("--macs=-1e9", *BASE), ["got -1e+09", "--macs 4.112e9"]),
    (BASE, ["give a MODEL", "or --macs N"]),
    (("resnet18", "--macs", "4e9", *BASE), ["give MODEL 'resnet18' or --macs 4e+09, not both"]),
    (("--macs", "4e9", "--throughput", "100", "--hardware", "v100-pcei"),
     ["unknown hardware 'v100-pcei'; did you mean 'v100-pcie'"]),
    (("--macs", "4e9", "--throughput", "100", "--hardware", "a100-80gb-sxm,v100-pcie", "--precision", "bf16"),
     ["v100-pcie has no bf16 matrix peak", "pick another --precision or leave v100-pcie out of --hardware"]),
    (("--macs", "4e9", "--batch", "8", *BASE), ["--batch, --seq and --image size a MODEL", "leave them out"]),
    (("--macs", "4e9", "--throughput", "100", "--hardware", ","), ["--hardware ',' names no chip"]),
]


@pytest.mark.parametrize("argv, fragments", BAD_INPUT)
def test_bad_input_is_one_clear_message(capsys, argv, fragments):
    code, out, err = run(capsys, *argv)
    assert code == 2
    message = " ".join(err.split())
    assert message.startswith("error: ") and message.count("error:") == 1
    for fragment in fragments:
        assert fragment in message
    assert "Traceback" not in err and out == ""
