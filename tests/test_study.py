"""Study: cached captures across chips, points and splits that agree with the reports,
Spearman correlations, measurements on this machine and their refusals, generated comments."""
import math

import numpy as np
import pytest

import estimator.study as study_module
from estimator import commentary
from estimator.compare import spearman
from estimator.errors import RooflineError
from estimator.hardware import load_hardware
from estimator.study import Study, measure_phase_splits, measure_points, rank_correlations, with_measurements

A100 = load_hardware("a100-80gb-sxm")
T4 = load_hardware("t4")
MODELS = ["resnet18", "mobilenet_v2", "gpt2"]


@pytest.fixture(scope="module")
def study():
    return Study(MODELS, [A100, T4], batches=[2, 1], image=32, seq=16, train_batch=2)


@pytest.fixture(scope="module")
def points(study):
    return study.points()


def test_each_step_is_captured_once_and_shared_by_chips(study, points, monkeypatch):
    calls = []
    original = study_module.capture
    monkeypatch.setattr(study_module, "capture", lambda *a, **k: calls.append(1) or original(*a, **k))
    study.points()  # everything is cached by the fixture's run
    assert calls == []
    assert study.report("resnet18", 1, A100).step is study.report("resnet18", 1, T4).step
    assert len(points) == len(MODELS) * 2 * 2
    assert [p.batch for p in points[:4]] == [1, 1, 2, 2]  # batches sorted, chips inner


def test_inference_past_two_batches_is_derived_from_two_captures_and_equals_a_capture(monkeypatch):
    """Batches 1, 2 and 5: two inference captures per model, batch 5 derived from them
    (estimator.batch_scaling), the same ops, points and memory as a study that captures 5."""
    calls = []
    original = study_module.capture
    monkeypatch.setattr(study_module, "capture", lambda net, inputs, **k: calls.append(inputs) or original(net, inputs, **k))
    derived = Study(MODELS, [A100, T4], batches=[5, 1, 2], image=32, seq=16, use_cache=False)
    points = derived.points()
    assert len(calls) == 2 * len(MODELS)  # batches 1 and 2 of each model
    captured = Study(MODELS, [A100, T4], batches=[5], image=32, seq=16, use_cache=False)
    assert [p for p in points if p.batch == 5] == captured.points()
    for model in MODELS:
        assert derived.step(model, 5).nodes == captured.step(model, 5).nodes


def test_a_model_whose_two_captures_do_not_fit_is_captured_at_every_batch(monkeypatch):
    monkeypatch.setattr(study_module, "fit", lambda first, second: None)
    calls = []
    original = study_module.capture
    monkeypatch.setattr(study_module, "capture", lambda *a, **k: calls.append(1) or original(*a, **k))
    study = Study(["resnet18"], [A100], batches=[1, 2, 3], image=32, use_cache=False)
    assert [p.batch for p in study.points()] == [1, 2, 3]
    assert len(calls) == 3


def test_a_batch_outside_the_study_is_captured():
    study = Study(["resnet18"], [A100], batches=[1], image=32, use_cache=False)
    assert study.step("resnet18", 4).batch == 4  # not derived: the study has no two batches to derive from


def test_points_agree_with_the_reports(study, points):
    for p in points:
        chip = A100 if p.chip == A100.id else T4
        totals = study.report(p.model, p.batch, chip).totals()
        assert p.flops == totals["step_flops"] and p.bytes == totals["step_bytes"]
        assert p.predicted_s == pytest.approx(totals["step_time_s"])
        assert p.intensity == pytest.approx(p.flops / p.bytes)
        assert p.predicted_samples_per_s == pytest.approx(p.batch / p.predicted_s)
        assert p.ridge_flops_per_byte == pytest.approx(chip.matrix_peak(study.precision_of(chip)) / chip.memory_bytes_per_s)
        assert p.bound == ("memory" if p.intensity < p.ridge_flops_per_byte else "compute")
        assert 0.0 <= p.memory_bound_share + p.overhead_share <= 1.0 + 1e-9
    by_key = {(p.model, p.batch, p.chip): p for p in points}
    # FLOPs do not depend on the chip, and double with the batch (up to the loss-free forward's constants)
    for model in MODELS:
        assert by_key[(model, 1, A100.id)].flops == by_key[(model, 1, T4.id)].flops
        assert by_key[(model, 2, A100.id)].flops == pytest.approx(2 * by_key[(model, 1, A100.id)].flops, rel=0.01)


def test_sizes_go_to_the_models_that_take_them(study):
    assert study.sizes("resnet18") == {"image": 32}
    assert study.sizes("gpt2") == {"seq": 16}
    assert study.step("gpt2", 1).tokens_per_sample == 16


def test_phase_splits_match_training_totals(study):
    splits = study.phase_splits()
    assert len(splits) == len(MODELS) * 2
    for s in splits:
        chip = A100 if s.chip == A100.id else T4
        totals = study.report(s.model, 2, chip, mode="train").totals()
        assert (s.forward_flops, s.backward_flops) == (totals["forward_flops"], totals["backward_flops"])
        assert 1.5 < s.flops_ratio < 2.5  # backward: input and weight gradients, about 2x the forward
        assert s.time_ratio == pytest.approx(totals["backward_time_s"] / totals["forward_time_s"])
        assert s.measured_time_ratio is None


def test_rank_correlations_are_spearman_over_pairs(points):
    corr = rank_correlations(points, [A100.id, T4.id])
    assert corr.labels == (f"predicted latency {A100.id}", f"predicted latency {T4.id}", "FLOPs", "parameters")
    assert corr.samples == len(MODELS) * 2
    n = len(corr.labels)
    for i in range(n):
        assert corr.matrix[i][i] == pytest.approx(1.0)
        for j in range(n):
            assert corr.matrix[i][j] == pytest.approx(corr.matrix[j][i])
    a100 = [p for p in points if p.chip == A100.id]
    assert corr.rho(f"predicted latency {A100.id}", "FLOPs") == pytest.approx(
        spearman([p.predicted_s for p in a100], [float(p.flops) for p in a100]))
    # independent: Spearman's definition, the Pearson correlation of the ranks, ties given their
    # mean rank (host-bound small steps can tie in predicted latency)
    latency = np.array([p.predicted_s for p in a100])
    flops = np.array([float(p.flops) for p in a100])

    def ranks(values):
        return np.array([np.mean(np.flatnonzero(np.sort(values) == v)) for v in values])

    assert corr.rho(f"predicted latency {A100.id}", "FLOPs") == pytest.approx(
        np.corrcoef(ranks(latency), ranks(flops))[0, 1])
    with pytest.raises(RooflineError, match="at least 3"):
        rank_correlations(points[:4], [A100.id])


def test_with_measurements_fills_one_chip(points):
    out = with_measurements(points, {("resnet18", 1): 0.5, ("gpt2", 2): "not measured: why"}, chip_id=T4.id)
    got = {(p.model, p.batch, p.chip): p for p in out}
    assert got[("resnet18", 1, T4.id)].measured_s == 0.5
    assert got[("resnet18", 1, T4.id)].measured_samples_per_s == pytest.approx(2.0)
    assert got[("resnet18", 1, A100.id)].measured_s is None
    assert got[("gpt2", 2, T4.id)].measured_note == "not measured: why"
    corr = rank_correlations(out, [A100.id])
    assert f"measured latency {T4.id}" not in corr.labels  # measured on 1 pair only: too few to rank


def test_measure_points_runs_here_and_notes_refusals(monkeypatch):
    local = load_hardware("a100-80gb-sxm")
    local = type(local)(**{**local.__dict__, "id": "local"})
    study = Study(["resnet18", "mobilenet_v2"], [local], batches=[1], image=32)
    points = study.points()
    # a measurement whose predicted time exceeds the limit is not run
    skipped = measure_points(study, points, max_seconds=0.0)
    assert all(p.measured_s is None and "over the 0 s limit" in p.measured_note for p in skipped)
    # a run that would not fit is refused before any allocation, and noted
    monkeypatch.setattr("estimator.measure.free_memory_bytes", lambda device: 0)
    refused = measure_points(study, points)
    assert all("not measured" in p.measured_note and "is free" in p.measured_note for p in refused)
    monkeypatch.undo()
    done = measure_points(study, points, warmup=0, runs=1)
    assert all(p.measured_s > 0 and p.measured_note == "" for p in done)
    splits = measure_phase_splits(study, study.phase_splits(), warmup=0, runs=1)
    assert all(s.measured_forward_s > 0 and s.measured_backward_s > 0 for s in splits)


def test_comments_follow_the_numbers(study, points):
    bounds = commentary.bound_comments(points)
    assert len(bounds) == 2  # one per chip
    for line in bounds:
        chip = line.split(" ")[0]
        group = [p for p in points if p.chip == chip]
        assert f"{sum(p.bound == 'memory' for p in group)} of {len(group)} model-batch points" in line
        for batch in (1, 2):
            below = [p.model for p in group if p.batch == batch and p.bound == "memory"]
            assert f"batch {batch}: {', '.join(below) or 'none'}" in line
    gaps = commentary.gap_comments(points)
    assert any(A100.id in line and "of the matrix peak at the median" in line for line in gaps)
    phases = commentary.phase_comments(study.phase_splits())
    ratios = [s.flops_ratio for s in study.phase_splits()]
    assert f"{min(ratios):.2f}x" in phases[0] and f"{max(ratios):.2f}x" in phases[0]
    proxies = commentary.proxy_comments(rank_correlations(points, [A100.id]), points)
    assert any("rank latency better than" in line for line in proxies)
    assert not math.isnan(rank_correlations(points, [A100.id]).rho("FLOPs", "parameters"))


def test_each_chip_can_run_at_its_own_precision():
    study = Study(["resnet18"], [A100, T4], batches=[1], image=32, chip_precisions={A100.id: "amp-bf16"})
    a100, t4 = study.points()
    assert (a100.precision, t4.precision) == ("amp-bf16", "fp32")
    assert a100.flops == t4.flops and a100.bytes < t4.bytes  # half-precision tensors move fewer bytes
    assert a100.peak_flops_per_s == A100.matrix_flops_per_s["bf16"]
    assert a100.memory_bytes != t4.memory_bytes
    with pytest.raises(RooflineError, match="no fp8"):
        Study(["resnet18"], [T4], batches=[1], chip_precisions={T4.id: "fp8"})
