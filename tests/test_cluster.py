"""Clusters: layouts, collectives by formula, the schedule's critical path, memory per GPU, the
search, and the command line (estimator.cluster and its modules)."""
from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import pytest

from estimator.capture import capture
from estimator.cli import main
from estimator.cluster import Unit, _schedule, layout_memory, predict_cluster
from estimator.cluster_schedule import Schedule
from estimator.cluster_search import candidate_layouts, fewest_gpus_that_fit, search_layouts
from estimator.collectives import collective_s
from estimator.errors import LayoutError
from estimator.hardware import load_hardware
from estimator.model_source import load_model
from estimator.parallel_layout import Group, group, parse_layout
from estimator.precision import get_precision
from estimator.report import evaluate
from estimator.system import load_system

H100 = load_hardware("h100-sxm")
DGX = load_system("dgx-h100")
BF16 = get_precision("amp-bf16")


@pytest.fixture(scope="module")
def gpt2_step():
    model, inputs, name = load_model("gpt2", batch=2, seq=64)
    return capture(model, inputs, mode="train", model_name=name, dispatch="cuda")


# ---- layouts ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, gpus, expected", [
    ("ddp", 8, dict(dp=8, tp=1, pp=1, data="ddp")),
    ("dp", 8, dict(dp=8, data="ddp")),
    ("fsdp", 16, dict(dp=16, data="fsdp")),
    ("tp=8,pp=4,dp=2", 64, dict(dp=2, tp=8, pp=4)),
    ("tp=8,pp=4", 64, dict(dp=2, tp=8, pp=4)),  # dp fills the rest
    ("tp=4,sp,zero1", 16, dict(dp=4, tp=4, sp=True, data="zero1")),
    ("tp=2,ep=4,dp=8", 16, dict(dp=8, tp=2, ep=4)),
])
def test_layouts_parse(text, gpus, expected):
    layout = parse_layout(text, gpus)
    assert layout.gpus == gpus
    for key, value in expected.items():
        assert getattr(layout, key) == value


@pytest.mark.parametrize("text, gpus, words", [
    ("tp=2,pp=2,dp=3", 8, "12 GPUs, but --gpus is 8"),
    ("tp=3", 8, "does not divide --gpus 8"),
    ("tp=2,ep=3", 8, "ep=3 does not divide dp=4"),
    ("sp", 8, "add tp=N"),
    ("fsdp,zero2", 8, "two data-parallel modes"),
    ("xp=2", 8, "unknown dimension 'xp'"),
    ("tp=0", 8, "whole number of GPUs"),
])
def test_bad_layouts_name_the_value(text, gpus, words):
    with pytest.raises(LayoutError, match=words):
        parse_layout(text, gpus)


def test_groups_follow_megatron_numbering():
    # tp fastest: a TP group of 8 fills a node; the DP group then strides across nodes
    assert group(8, 1, 8) == Group(8, 8)
    assert group(4, 8, 8) == Group(4, 1) and group(4, 8, 8).nodes == 4
    assert group(8, 2, 8) == Group(8, 4) and group(8, 2, 8).nodes == 2


# ---- collectives -------------------------------------------------------------------------
def test_all_reduce_inside_a_node_is_ring_latency_plus_bus_bytes():
    n, size = 8, 2 ** 30
    expected = DGX.base_latency_s + 2 * (n - 1) * DGX.intra.hop_latency_s + 2 * (n - 1) / n * size / DGX.intra.bus_bytes_per_s
    assert collective_s("all_reduce", size, Group(n, n), DGX) == pytest.approx(expected)


def test_all_gather_uses_the_ring_bandwidth_and_small_messages_pay_latency():
    n, size = 8, 2 ** 30
    expected = DGX.base_latency_s + (n - 1) * DGX.intra.hop_latency_s + (n - 1) / n * size / DGX.intra.ring_bytes_per_s
    assert collective_s("all_gather", size, Group(n, n), DGX) == pytest.approx(expected)
    small = collective_s("all_reduce", 1024, Group(n, n), DGX)
    assert small > 0.9 * (DGX.base_latency_s + 2 * (n - 1) * DGX.intra.hop_latency_s)  # latency-bound
    busbw = 2 * (n - 1) / n * 1024 / small
    assert busbw < 0.01 * DGX.intra.bus_bytes_per_s  # far below the bus bandwidth, as nccl-tests shows


def test_across_nodes_one_gpu_per_node_gets_its_share_of_the_nics():
    size, g = 2 ** 30, Group(size=4, per_node=1)
    moved = 2 * 3 / 4 * size / (DGX.inter.bus_bytes_per_s / DGX.gpus_per_node)
    t = collective_s("all_reduce", size, g, DGX)
    assert moved < t < moved * 1.01  # bandwidth-bound; ring and tree move the same bytes
    assert collective_s("all_reduce", size, Group(32, 8), DGX) < t  # all eight NICs of each node


# ---- the schedule ------------------------------------------------------------------------
def test_schedule_is_the_critical_path_and_exposed_communication():
    s = Schedule()
    a = s.add("backward", 3.0, stream="compute")
    r = s.add("all-reduce", 2.0, stream="comm", after=[a], comm=True)
    s.add("optimizer", 1.0, stream="compute", after=[r])
    assert (s.finish_s(), s.finish_s(comm_free=True)) == (6.0, 4.0)
    assert s.critical_path() == ["backward", "all-reduce", "optimizer"]


@pytest.mark.parametrize("pp, micro", [(4, 8), (2, 2), (4, 16)])
def test_one_f_one_b_pipeline_takes_m_plus_p_minus_1_slots(pp, micro):
    """Equal stages, forward f and backward b per micro-batch, nothing else: 1F1B finishes in
    (m + p - 1)(f + b) plus the update (Narayanan et al. 2021, the pipeline bubble)."""
    f, b, update = 1.0, 2.0, 0.5
    units = [Unit("embed")] + [Unit(f"h.{i}", forward_s=f, backward_s=b) for i in range(pp)] + [Unit("head")]
    plan = SimpleNamespace(layout=parse_layout(f"pp={pp}", pp), precision=BF16, block_paths=[])
    schedule, comm = _schedule(units, update, plan, DGX, 8, micro)
    assert schedule.finish_s() == pytest.approx((micro + pp - 1) * (f + b) + update)


# ---- predictions --------------------------------------------------------------------------
def test_one_gpu_is_the_single_gpu_report(gpt2_step):
    result = predict_cluster(gpt2_step, DGX, H100, BF16, parse_layout("ddp", 1), 8)
    single = evaluate(gpt2_step, H100, BF16).totals()["step_time_s"]
    assert result.step_time_s == pytest.approx(single, rel=1e-9)
    assert result.communication_s == 0


def test_ddp_reduces_every_gradient_once(gpt2_step):
    result = predict_cluster(gpt2_step, DGX, H100, BF16, parse_layout("ddp", 8), 8)
    grads = gpt2_step.trainable_parameters * 4  # fp32 master gradients under amp
    bandwidth_part = 2 * 7 / 8 * grads / DGX.intra.bus_bytes_per_s
    buckets = math.ceil(grads / (25 * 2 ** 20))
    assert bandwidth_part < result.communication_s < bandwidth_part + (buckets + 13) * 20e-6
    assert result.step_time_s >= predict_cluster(gpt2_step, DGX, H100, BF16, parse_layout("ddp", 1), 8).step_time_s
    assert result.communication_exposed_s <= result.communication_s


def test_tensor_parallel_all_reduces_two_per_block_each_way(gpt2_step):
    layout = parse_layout("tp=2,dp=4", 8)
    result = predict_cluster(gpt2_step, DGX, H100, BF16, layout, 8)
    tokens, width, blocks = 2 * 64, 768, 12
    one = collective_s("all_reduce", tokens * width * BF16.matrix_bytes, group(2, 1, 8), DGX)
    # attention and MLP outputs (forward) and their input gradients (backward), plus the
    # vocabulary-parallel embedding's output both ways
    assert result.collectives_s["tp"] == pytest.approx((4 * blocks + 2) * one)
    single = predict_cluster(gpt2_step, DGX, H100, BF16, parse_layout("ddp", 1), 8)
    assert result.compute_s < single.compute_s  # each GPU computes half of the matmuls


def test_memory_shrinks_with_sharding(gpt2_step):
    def peak(text):
        return predict_cluster(gpt2_step, DGX, H100, BF16, parse_layout(text, 8), 8).memory
    ddp, zero1, fsdp, tp = peak("ddp"), peak("zero1"), peak("fsdp"), peak("tp=4,dp=2,sp")
    assert zero1["optimizer_bytes"] == pytest.approx(ddp["optimizer_bytes"] / 8, rel=1e-3)
    assert fsdp["peak_bytes"] < zero1["peak_bytes"] < ddp["peak_bytes"]
    assert tp["activations_bytes"] == pytest.approx(ddp["activations_bytes"] / 4, rel=1e-3)  # sp: all split


def test_the_fewest_gpus_that_fit_do_fit():
    model, inputs, name = load_model("llama3_8b", batch=1, seq=512)
    step = capture(model, inputs, mode="train", model_name=name, dispatch="cuda")
    capacity = 24e9  # an 8B model's fp32 master weights and Adam state do not fit in 24 GB
    assert not layout_memory(step, BF16, parse_layout("ddp", 1), capacity)["fits"]
    gpus, layout = fewest_gpus_that_fit(step, BF16, capacity, 8)
    assert gpus > 1 and layout.gpus == gpus
    assert layout_memory(step, BF16, layout, capacity)["fits"]


def test_search_ranks_layouts_that_fit(gpt2_step):
    def capture_at(micro, recompute):
        model, inputs, name = load_model("gpt2", batch=micro, seq=64)
        return capture(model, inputs, mode="train", model_name=name, dispatch="cuda", recompute=recompute)

    ranked = search_layouts(capture_at, DGX, H100, BF16, gpus=8, global_batch=16)
    assert ranked and all(r.fits and r.gpus == 8 and r.samples_per_step == 16 for r in ranked)
    rates = [r.samples_per_s for r in ranked]
    assert rates == sorted(rates, reverse=True)
    assert {r.layout.data for r in ranked} >= {"ddp", "fsdp"} and any(r.layout.tp > 1 for r in ranked)
    assert all(lay.gpus == 8 for lay in candidate_layouts(8, 8, gpt2_step))


# ---- command line ---------------------------------------------------------------------------
def test_cli_cluster_json_has_the_documented_fields(capsys):
    code = main(["estimate", "gpt2", "--seq", "64", "--batch", "2", "--train", "--precision", "amp-bf16",
                 "--hardware", "dgx-h100", "--gpus", "16", "--parallel", "tp=2,dp=8,sp", "--train-tokens", "1e9",
                 "--price-per-gpu-hour", "2", "--json", "-"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    cluster = data["cluster"]
    for key in ("gpus", "layout", "step_time_s", "tokens_per_s", "tokens_per_s_per_gpu", "samples_per_s", "mfu",
                "communication_s", "communication_exposed_s", "memory_per_gpu_bytes", "fits"):
        assert key in cluster
    assert cluster["gpus"] == 16 and cluster["nodes"] == 2
    assert [u["name"] for u in cluster["per_unit"]] == ["embed"] + [f"h.{i}" for i in range(12)] + ["head"]
    assert cluster["tokens_per_s"] == pytest.approx(cluster["samples_per_s"] * 64)
    run = data["training_run"]
    steps = math.ceil(1e9 / (cluster["global_batch"] * 64))
    assert run["steps"] == steps
    assert run["time_s"] == pytest.approx(steps * cluster["step_time_s"])
    assert run["gpu_time_s"] == pytest.approx(run["time_s"] * 16)
    assert run["cost_usd"] == pytest.approx(run["gpu_time_s"] / 3600 * 2)


def test_cli_does_not_fit_names_the_fewest_gpus(capsys):
    code = main(["estimate", "llama3_8b", "--seq", "512", "--train", "--precision", "amp-bf16", "--hardware",
                 "dgx-a100-40gb", "--gpus", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "the fewest GPUs that fit: --gpus" in err and "Traceback" not in err


def test_search_on_the_command_line(capsys):
    code = main(["estimate", "gpt2", "--seq", "64", "--batch", "2", "--train", "--hardware", "dgx-h100", "--gpus", "8",
                 "--search", "--global-batch", "16", "--top", "3", "--json", "-"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["search"][0] == data["cluster"]
    assert dataclasses.is_dataclass(parse_layout("ddp", 1))
