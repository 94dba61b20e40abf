"""estimator.measure: real timed runs of a zoo model, set beside our prediction.

Kept fast: ResNet-18 at 64 px, batch 1, warmup 1, runs 2, with a catalog chip passed in so
no calibration is needed.
"""
from __future__ import annotations

import math
import statistics

import pytest
import torch

import estimator.measure as measure_mod
from estimator import RooflineError, capture, evaluate, load_hardware
from estimator.errors import PrecisionError, UnknownModelError
from estimator.measure import Measurement, efficiency_table_rows, free_memory_bytes, measure, predicted_memory_bytes
from estimator.model_source import load_model

MODEL, BATCH, IMAGE = "resnet18", 1, 64
CHIP = "xeon-8480"


@pytest.fixture(scope="module")
def chip():
    return load_hardware(CHIP)


def _report(mode: str, chip, precision: str = "fp32"):
    model, inputs, name = load_model(MODEL, batch=BATCH, image=IMAGE)
    return evaluate(capture(model, inputs, mode=mode, model_name=name), chip, precision)


@pytest.fixture(scope="module")
def inference(chip) -> Measurement:
    return measure(MODEL, BATCH, image=IMAGE, warmup=1, runs=2, hardware=chip)


@pytest.fixture(scope="module")
def training(chip) -> Measurement:
    return measure(MODEL, BATCH, image=IMAGE, warmup=1, runs=2, hardware=chip, train=True)


@pytest.mark.parametrize("which", ["inference", "training"])
def test_measurement_is_consistent(which, request, chip):
    m: Measurement = request.getfixturevalue(which)
    mode = "train" if which == "training" else "inference"
    assert (m.model, m.batch, m.precision, m.mode, m.device, m.hardware) == (MODEL, BATCH, "fp32", mode, "cpu", CHIP)
    assert m.threads >= 1
    assert len(m.runs_s) == 2 and all(t > 0 for t in m.runs_s)
    assert m.latency_s == statistics.median(m.runs_s)
    assert m.spread == pytest.approx((max(m.runs_s) - min(m.runs_s)) / m.latency_s)
    assert m.flops > 0 and m.predicted_s > 0 and m.peak_flops_per_s > 0
    assert m.delivered_flops_per_s == pytest.approx(m.flops / m.latency_s)
    assert m.efficiency == pytest.approx(m.delivered_flops_per_s / m.peak_flops_per_s)
    assert m.prediction_error == pytest.approx((m.predicted_s - m.latency_s) / m.latency_s)
    # the FLOPs are exactly our count of what was timed, and the prediction our Report's
    totals = _report(mode, chip).totals()
    assert m.flops == totals["step_flops"]
    assert m.predicted_s == pytest.approx(totals["step_time_s"])
    assert m.peak_flops_per_s == chip.matrix_flops_per_s["fp32"]
    assert m.predicted_memory_bytes > 0


def test_training_counts_forward_loss_and_backward(inference, training):
    # backward is about 2x the forward, so a training step is more than 2x an inference one
    assert training.flops > 2 * inference.flops
    assert training.predicted_memory_bytes > inference.predicted_memory_bytes


def test_table_rows(inference, training):
    rows = efficiency_table_rows([inference, training])
    assert [r["model"] for r in rows] == [MODEL, MODEL]
    assert {"model", "batch", "precision", "flops", "latency_s", "delivered_flops_per_s", "peak_flops_per_s",
            "efficiency", "predicted_s", "error", "spread"} <= set(rows[0])  # SI units, fractions
    r, m = rows[0], inference
    assert r["flops"] == m.flops
    assert r["latency_s"] == pytest.approx(m.latency_s)
    assert r["delivered_flops_per_s"] == pytest.approx(r["flops"] / r["latency_s"])
    assert r["peak_flops_per_s"] == pytest.approx(7.17e12)
    assert r["efficiency"] == pytest.approx(r["delivered_flops_per_s"] / r["peak_flops_per_s"])
    assert r["predicted_s"] == pytest.approx(m.predicted_s)
    assert r["error"] == pytest.approx((r["predicted_s"] - r["latency_s"]) / r["latency_s"])
    assert r["spread"] == pytest.approx(m.spread)
    assert rows[1]["mode"] == "train"


def test_autocast_run(chip):
    m = measure(MODEL, BATCH, image=IMAGE, precision="amp-bf16", warmup=0, runs=1, hardware=chip)
    assert m.precision == "amp-bf16" and m.peak_flops_per_s == chip.matrix_flops_per_s["bf16"]
    assert m.flops == _report("inference", chip, "amp-bf16").totals()["step_flops"]


# ---- bad input ----------------------------------------------------------------------------

@pytest.fixture
def no_run(monkeypatch):
    """Fail the test if a real model is built: every check must come before allocation."""
    def boom(*a, **k):
        raise AssertionError("a real model was built before the input was checked")
    monkeypatch.setattr(measure_mod, "_timed_runs", boom)


@pytest.mark.parametrize("kwargs, message", [
    ({"runs": 0}, "--runs must be at least 1, got 0"),
    ({"warmup": -1}, "--warmup must be at least 0, got -1"),
    ({"batch": 0}, "--batch must be a positive integer, got 0"),
    ({"device": "tpu"}, "unknown --device 'tpu'; expected cpu, cuda or cuda:N"),
])
def test_bad_arguments(kwargs, message, chip, no_run):
    args = {"zoo_name": MODEL, "batch": BATCH, "image": IMAGE, "hardware": chip, **kwargs}
    with pytest.raises(RooflineError) as e:
        measure(**args)
    assert message in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_cuda_absent(chip, no_run):
    with pytest.raises(RooflineError, match="--device cuda: no CUDA device is visible to torch here; "
                                            "use --device cpu"):
        measure(MODEL, BATCH, device="cuda", image=IMAGE, hardware=chip)


def test_precisions_refused(chip, no_run):
    with pytest.raises(PrecisionError, match="'fp8' cannot be measured"):
        measure(MODEL, BATCH, precision="fp8", image=IMAGE, hardware=chip)
    with pytest.raises(PrecisionError, match="'tf32' is a CUDA tensor-core mode, not a CPU precision"):
        measure(MODEL, BATCH, precision="tf32", image=IMAGE, hardware=chip)
    with pytest.raises(PrecisionError, match="unknown precision 'bf17'"):
        measure(MODEL, BATCH, precision="bf17", image=IMAGE, hardware=chip)
    # a precision the chip has no peak for: no efficiency can be computed
    with pytest.raises(PrecisionError, match="'v100-sxm2' lists no bf16 matrix peak"):
        measure(MODEL, BATCH, precision="bf16", image=IMAGE, hardware="v100-sxm2")


def test_unknown_model_and_wrong_size_option(chip, no_run):
    with pytest.raises(UnknownModelError, match="did you mean 'resnet18'"):
        measure("resnet19", BATCH, hardware=chip)
    with pytest.raises(RooflineError, match="use --image instead of --seq"):
        measure(MODEL, BATCH, seq=128, hardware=chip)


def test_no_local_hardware(monkeypatch, tmp_path, no_run):
    monkeypatch.setenv("ROOFLINE_LOCAL_HARDWARE", str(tmp_path / "absent.yaml"))
    with pytest.raises(RooflineError, match=r"no calibrated 'local' hardware: run `roofline calibrate --quick` "
                                            r"first, or pass --peak datasheet with --hardware ID"):
        measure(MODEL, BATCH, image=IMAGE)


def test_too_large_for_free_memory(monkeypatch, chip, no_run):
    monkeypatch.setattr(measure_mod, "free_memory_bytes", lambda device: 100_000_000)
    with pytest.raises(RooflineError) as e:
        measure(MODEL, 64, image=IMAGE, hardware=chip, train=True)
    model, inputs, _ = load_model(MODEL, batch=64, image=IMAGE)
    need = predicted_memory_bytes(capture(model, inputs, mode="train"), train=True)
    assert str(e.value) == (f"{MODEL} batch 64 training needs about {need / 1e9:,.1f} GB but only 0.1 GB "
                            "is free on cpu; use a smaller --batch")


def test_predicted_memory_formula():
    model, inputs, _ = load_model(MODEL, batch=2, image=IMAGE)
    params = sum(p.numel() * 4 for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    image_bytes = inputs[0].numel() * 4
    inference = predicted_memory_bytes(capture(model, inputs, mode="inference"), train=False)
    train = predicted_memory_bytes(capture(model, inputs, mode="train"), train=True)
    # conv1's output (2 x 64 x 32 x 32 fp32) is the largest forward output at 64 px
    largest = 2 * 64 * 32 * 32 * 4
    assert inference == params + buffers + image_bytes + 4 * largest
    assert train > 4 * (params + buffers) + image_bytes
    assert not math.isclose(train, inference)


def test_free_memory():
    assert free_memory_bytes("cpu") > 0
