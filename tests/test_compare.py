"""estimator.compare: per-module measurement on the CPU, its alignment with a Report, the statistics.

Timing values are asserted only to be positive (this machine is shared and noisy).
"""
import math

import pytest
import torch
from torch import nn

import roofline_zoo
from estimator import estimate
from estimator.compare import ROOT, compare, measure_layers, spearman, weighted_mae


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 512), nn.ReLU(inplace=True), nn.Linear(512, 256)), (torch.randn(32, 256),)


def test_spearman_hand_example():
    # ranks x: 1 2 3 4 5, ranks y: 2 1 4 3 5 -> d^2 = 1+1+1+1+0 = 4; rho = 1 - 6*4/(5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [5, 1, 9, 7, 20]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # ties: x ranks 1.5 1.5 3 4, y ranks 1 2 3 4 -> Pearson of ranks = 4.5 / sqrt(4.5 * 5)
    assert spearman([7, 7, 8, 9], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_weighted_mae_hand_example():
    # |1-2| + |3-3| + |5-1| = 5 over 6 measured
    assert weighted_mae([1.0, 3.0, 5.0], [2.0, 3.0, 1.0]) == pytest.approx(5 / 6)


@pytest.mark.parametrize("train", [False, True])
def test_measure_mlp_every_leaf_positive(train):
    model, inputs = _mlp()
    measured = measure_layers(model, inputs, train=train, warmup=1, runs=3)
    assert {"0", "1", "2"} <= measured.keys()
    for name in ("0", "1", "2"):
        forward_s, backward_s = measured[name]
        assert forward_s > 0
        assert (backward_s > 0) if train else (backward_s == 0)
    assert ("loss" in measured) == train


def test_compare_mlp_totals_and_names():
    model, inputs = _mlp()
    measured = measure_layers(model, inputs, train=True, warmup=1, runs=3)
    report = estimate(model, inputs, hardware="xeon-8480", mode="train")
    result = compare(report, measured, train=True)
    names = {r.name for r in result.rows}
    assert {"0", "1", "2", "loss"} <= names
    assert result.measured_total_s == pytest.approx(sum(f + b for f, b in measured.values()))
    assert result.predicted_total_s == pytest.approx(report.totals()["step_time_s"])
    errors = [abs(r.error_s) for r in result.rows]
    assert errors == sorted(errors, reverse=True)
    assert -1 <= result.spearman <= 1
    assert result.to_dict()["layers"][0]["name"] == result.rows[0].name
    with pytest.raises(ValueError):
        compare(report, measured, train=False)


def test_resnet18_train_aligns_with_report():
    entry = roofline_zoo.get("resnet18")
    model, inputs = entry.build(batch=2, image=64, device="cpu")
    measured = measure_layers(model, inputs, train=True, warmup=1, runs=2)
    leaves = {n for n, m in model.named_modules() if next(m.children(), None) is None}
    assert leaves <= measured.keys()
    params = {n for n, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None}
    for name in leaves:
        forward_s, backward_s = measured[name]
        assert forward_s > 0, name
        if name in params:
            assert backward_s > 0, name  # conv1 too: its weight gradient closes the backward
    meta_model, meta_inputs = entry.build(batch=2, image=64)
    report = estimate(meta_model, meta_inputs, hardware="xeon-8480", mode="train")
    result = compare(report, measured, train=True)
    names = {r.name for r in result.rows}
    assert leaves <= names
    assert {r.name for r in report.rows("layer")} <= names  # residual adds ("layer1.0") keep their rows
    assert names - leaves - {r.name for r in report.rows("layer")} <= {"(other)"}
    assert result.predicted_total_s == pytest.approx(report.totals()["step_time_s"])
    assert result.measured_total_s == pytest.approx(sum(f + b for f, b in measured.values()))
    assert ROOT not in leaves
