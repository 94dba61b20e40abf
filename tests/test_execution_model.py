"""The GPU execution model: the host/device timeline, kernel times by kind, execution modes,
host profiles and families as data, and capture as a CUDA device dispatches."""
from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

import roofline_zoo
from estimator.capture import capture
from estimator.device_model import gemm_dims, gemm_time_s, kernel_time, layout_transpose_bytes
from estimator.errors import HardwareSpecError, RooflineError
from estimator.execution import amp_weight_casts, autocast_activation_casts
from estimator.gpu_family import family_names, load_family
from estimator.hardware import catalog_ids, load_hardware, parse_hardware
from estimator.host import HOST_KEYS, host_ids, load_host
from estimator.memory import step_memory
from estimator.precision import PRECISIONS
from estimator.report import evaluate
from estimator.roofline import step_costs
from estimator.timeline import schedule

A100 = load_hardware("a100-80gb-sxm")


def test_timeline_follows_the_two_resource_recurrence():
    # host 10 us per kernel; device 20 then 1 us: H = 10, 20; E = 30, 31; then the final sync
    t = schedule([10e-6, 10e-6], [20e-6, 1e-6], [False, False], sync_s=5e-6)
    assert t.wait_s == pytest.approx((10e-6, 0.0))
    assert t.step_s == pytest.approx(31e-6 + 5e-6)
    assert t.step_s == pytest.approx(t.device_busy_s + t.host_bound_s + t.sync_s)
    assert t.overlapped_s == pytest.approx(20e-6 - 10e-6)


def test_host_bound_and_device_bound_limits():
    n = 50
    host_bound = schedule([10e-6] * n, [1e-6] * n, [False] * n, sync_s=0.0)
    assert host_bound.step_s == pytest.approx(n * 10e-6 + 1e-6)  # the device waits for every launch
    device_bound = schedule([1e-6] * n, [10e-6] * n, [False] * n, sync_s=0.0)
    assert device_bound.step_s == pytest.approx(1e-6 + n * 10e-6)  # the host ran ahead after the first
    serial = schedule([1e-6] * n, [10e-6] * n, [False] * n, sync_s=0.0, serial=True)
    assert serial.step_s == pytest.approx(n * 11e-6)  # a CPU: issue and run on the same core


def test_a_sync_point_drains_the_device_before_the_host_goes_on():
    t = schedule([1e-6, 1e-6], [100e-6, 1e-6], [False, True], sync_s=10e-6)
    # kernel 1 issued only after kernel 0 ends (E0 = 101 us) plus the round trip and its own issue
    assert t.wait_s[1] == pytest.approx(10e-6 + 1e-6)
    assert t.step_s == pytest.approx(101e-6 + 11e-6 + 1e-6 + 10e-6)


def test_gemm_wave_quantization():
    family = load_family("ampere")
    # one wave of tiles costs the same whether 1 or all SMs are busy: 108 tiles of 256x128 vs 109
    m, n, k = 256 * 12, 128 * 9, 4096  # 108 tiles of the largest shape
    full = gemm_time_s([(1, m, n, k)], 1e15, family, 108)
    spill = gemm_time_s([(1, m + 256, n, k)], 1e15, family, 108)  # 9 more tiles: a second, partial wave
    assert spill > full * 1.05
    ideal = 2 * m * n * k / 1e15
    assert full >= ideal  # never faster than the peak
    # tile quantization: a GEMM one row past a tile boundary costs about as much as the next multiple
    assert gemm_time_s([(1, 257, 4096, 4096)], 1e15, family, 108) >= gemm_time_s([(1, 256, 4096, 4096)], 1e15, family, 108)


def test_skinny_matmuls_run_on_thin_tiles():
    """A decode step's matmul (1 to 16 rows) pays for 16-row tiles, not the smallest 64-row one;
    GEMMs at least one small tile thick are unchanged."""
    family = load_family("ampere")
    thin = gemm_time_s([(1, 1, 4096, 4096)], 1e15, family, 108, skinny=True)
    padded = gemm_time_s([(1, 1, 4096, 4096)], 1e15, family, 108)
    # 16 of 64 padded rows: at most half the time (not a quarter: both shapes split K over the
    # SMs, and each tile pays its pipeline fill, k_half)
    assert thin < padded / 2
    assert thin >= 2 * 1 * 4096 * 4096 / 1e15
    thick = [(1, 512, 4096, 4096)]
    assert gemm_time_s(thick, 1e15, family, 108, skinny=True) == gemm_time_s(thick, 1e15, family, 108)


def test_conv_is_an_implicit_gemm_with_three_gemms_in_training():
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1))
    step = capture(model, (torch.randn(4, 8, 10, 10, requires_grad=False),), mode="train", optimizer=None)
    forward = next(n for n in step.nodes if n.op.overloadpacket.__name__ == "convolution")
    backward = next(n for n in step.nodes if n.op.overloadpacket.__name__ == "convolution_backward")
    # forward: M = N x H x W, N = C_out, K = C_in x 3 x 3
    assert gemm_dims(forward) == [(1, 4 * 10 * 10, 16, 8 * 9)]
    # the first layer's input needs no gradient: only the weight gradient, M = C_out, N = C_in x 9, K = N x H x W
    assert gemm_dims(backward) == [(1, 16, 8 * 9, 4 * 10 * 10)]


def test_fp32_convolutions_run_on_tf32_matmuls_do_not():
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Flatten(), nn.Linear(64 * 16 * 16, 10))
    step = capture(model, (torch.randn(32, 64, 16, 16),), mode="inference")
    fp32 = PRECISIONS["fp32"]
    costs = step_costs(step, fp32)
    family = load_family("ampere")
    conv = next(i for i, n in enumerate(step.nodes) if n.op.overloadpacket.__name__ == "convolution")
    mm = next(i for i, c in enumerate(costs) if c.op_class == "matmul")
    assert kernel_time(step.nodes[conv], costs[conv], A100, fp32, family).tf32_conv
    assert not kernel_time(step.nodes[mm], costs[mm], A100, fp32, family).tf32_conv
    notes = evaluate(step, A100, "fp32").totals()["notes"]
    assert any("TF32" in note for note in notes)
    assert not evaluate(step, load_hardware("v100-sxm2"), "fp32").totals()["notes"]  # Volta has no TF32


def test_batch_one_inference_is_host_bound_and_cuda_graphs_remove_it():
    model, inputs = roofline_zoo.get("resnet50").build(batch=1)
    step = capture(model, inputs, mode="inference")
    eager = evaluate(step, A100, "amp-bf16")
    graphs = eager.recost(execution="cuda-graphs")
    assert eager.totals()["step_bound"] == "host"
    assert eager.timeline.host_bound_s > 0.5 * eager.timeline.step_s
    assert graphs.totals()["step_time_s"] < 0.5 * eager.totals()["step_time_s"]
    assert graphs.timeline.host_bound_s < 0.1 * graphs.timeline.step_s
    rows = eager.rows("layer")
    assert any(r.bound == "host" for r in rows)


def test_large_batch_training_is_device_bound_and_hides_the_host():
    model, inputs = roofline_zoo.get("resnet50").build(batch=128)
    step = capture(model, inputs, mode="train", optimizer="sgd-momentum")
    report = evaluate(step, A100, "amp-bf16")
    assert report.totals()["step_bound"] in ("compute", "memory")
    line = report.timeline
    assert line.host_bound_s < 0.05 * line.step_s and line.overlapped_s > 0
    assert report.totals()["step_time_s"] == pytest.approx(sum(t.total_s for t in report.times) + line.sync_s)


def test_cuda_graphs_on_a_cpu_is_a_clear_error():
    cpu = load_hardware("xeon-8480")
    step = capture(nn.Linear(4, 4), (torch.randn(2, 4),), mode="inference")
    with pytest.raises(RooflineError, match="cuda-graphs needs a CUDA GPU"):
        evaluate(step, cpu, "fp32", execution="cuda-graphs")
    with pytest.raises(RooflineError, match="unknown execution mode"):
        evaluate(step, A100, "fp32", execution="jit")


def test_amp_casts_each_weight_once_per_forward():
    model, inputs = roofline_zoo.get("resnet50").build(batch=2)
    step = capture(model, inputs, mode="train")
    casts = amp_weight_casts(step)
    metas = [m for v in casts.values() for m in v]
    # 53 convolution weights, the classifier's weight and bias: every matrix-op parameter, once
    assert len(metas) == 55
    conv_fc = sum(p.numel() for name, p in model.named_parameters() if "bn" not in name and "downsample.1" not in name)
    assert sum(m.numel for m in metas) == conv_fc
    fp32 = evaluate(step, A100, "tf32")
    amp = evaluate(step, A100, "amp-bf16")
    # one cast kernel per weight in the forward, one cast of its gradient back to fp32; and, new
    # under amp, cuDNN's layout transposes around each half NCHW convolution with a spatial kernel
    # (16 3x3 and the 7x7 stem, forward and backward) and autocast's casts around the fp32 loss
    precision = PRECISIONS["amp-bf16"]
    transposes = sum(bool(layout_transpose_bytes(n, c, precision)) for n, c in zip(step.nodes, amp.costs))
    activation_casts = sum(len(autocast_activation_casts(n, c, precision)) for n, c in zip(step.nodes, amp.costs))
    assert transposes == 2 * 17
    assert activation_casts > 0
    assert len(amp.timeline.wait_s) == len(fp32.timeline.wait_s) + 2 * 55 + transposes + activation_casts


def test_batch_norm_under_amp_moves_half_activations():
    step = capture(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)), (torch.randn(4, 3, 16, 16),), mode="train")
    bn = next(i for i, n in enumerate(step.nodes) if n.op.overloadpacket.__name__ == "native_batch_norm")
    amp, fp32 = step_costs(step, PRECISIONS["amp-fp16"])[bn], step_costs(step, PRECISIONS["fp32"])[bn]
    activation = 4 * 8 * 14 * 14
    # input read and output written in half under amp (2 bytes), fp32 otherwise (4)
    assert fp32.bytes - amp.bytes == pytest.approx(2 * activation * 2, rel=0.01)


def test_sdpa_with_dropout_captures_the_fused_kernel_for_cuda():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                  vocab_size=100, max_position_embeddings=256, attn_implementation="sdpa")
    with torch.device("meta"):
        model = transformers.BertForMaskedLM(cfg)
    b, s, h, layers = 2, 128, 4, 2
    x = torch.randint(0, 100, (b, s))
    cpu = capture(model, (x,), mode="train", dispatch="cpu")
    cuda = capture(model, (x,), mode="train", dispatch="cuda")
    names = {n.op.overloadpacket.__name__ for n in cuda.nodes}
    assert "_scaled_dot_product_flash_attention_for_cpu_backward" in names
    saved_cpu = step_memory(cpu, "fp32", optimizer=cpu.optimizer).activations_bytes
    saved_cuda = step_memory(cuda, "fp32", optimizer=cuda.optimizer).activations_bytes
    # the CPU's math path saves, per score and layer, the softmax probabilities, the dropout mask
    # and the dropped probabilities in fp32: 12 bytes; the fused kernel saves none of them
    per_score = (saved_cpu - saved_cuda) / (layers * b * h * s * s)
    assert per_score == pytest.approx(12, rel=0.02)


def test_every_catalog_accelerator_names_a_family_host_and_sm_count():
    for chip_id in catalog_ids():
        chip = load_hardware(chip_id)
        if chip.kind not in ("gpu", "asic"):
            continue  # CPUs run serially; Apple SoCs fall back to the documented defaults
        assert chip.family in family_names() and chip.sm_count and chip.host is not None, chip_id


def test_every_family_and_host_constant_has_a_source():
    for name in family_names():
        family = load_family(name)
        for key in ("kernel_floor_us", "gemm.efficiency", "gemm.tiles", "attention", "bandwidth"):
            assert any(k.startswith(key) and v for k, v in family.source.items()), (name, key)
    for host_id in host_ids():
        host = load_host(host_id)
        assert host.source and all(getattr(host, k.removesuffix("_us") + "_s") >= 0 for k in HOST_KEYS)


def test_chip_without_execution_fields_falls_back_and_says_so(tmp_path, caplog):
    text = (A100.path and open(A100.path).read())
    lines = [ln for ln in text.splitlines() if not ln.startswith(("family:", "sm_count:", "host:"))]
    lines = [ln.replace("id: a100-80gb-sxm", "id: bare-gpu") for ln in lines]
    path = tmp_path / "bare-gpu.yaml"
    path.write_text("\n".join(lines))
    chip = parse_hardware(path)
    step = capture(nn.Linear(64, 64), (torch.randn(8, 64),), mode="inference")
    with caplog.at_level(logging.WARNING):
        report = evaluate(step, chip, "bf16")
    assert report.totals()["step_time_s"] > 0
    assert "family: ampere (default)" in caplog.text and "host: generic-server (default)" in caplog.text


def test_bad_host_and_family_are_clear_errors(tmp_path):
    text = open(A100.path).read()
    for bad, message in (("host: nonesuch", "unknown host 'nonesuch'"),
                         ("host: {op_us: -1}", "unknown host key|is missing|expected a number")):
        path = tmp_path / "chip.yaml"
        path.write_text(text.replace("host: dgx-a100-epyc-7742", bad))
        with pytest.raises(HardwareSpecError, match=message):
            parse_hardware(path)
    path = tmp_path / "chip.yaml"
    path.write_text(text.replace("family: ampere", "family: pascalx"))
    step = capture(nn.Linear(4, 4), (torch.randn(2, 4),), mode="inference")
    with pytest.raises(HardwareSpecError, match="unknown accelerator family 'pascalx'"):
        evaluate(step, parse_hardware(path), "bf16")


def test_eager_optimizer_is_foreach_passes_and_the_fused_kernel_elsewhere():
    from estimator.foreach_optimizer import PASSES, launches
    model = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))
    step = capture(model, (torch.randn(4, 2048),), mode="train", optimizer="adamw")
    params = sum(p.numel() for p in model.parameters())
    eager = evaluate(step, A100, "bf16")
    compiled = evaluate(step, A100, "bf16", execution="compiled")
    opt = next(i for i, n in enumerate(step.nodes) if n.phase == "optimizer")
    # AdamW foreach: 8 passes reading and writing 20 fp32 tensors per element in all (80 bytes),
    # one launch each here (4 tensors); the fused kernel reads 4 and writes 3 (28 bytes); large
    # passes, so the small-kernel fall-off moves the ratio by a few percent only
    reads = sum(p.read for p in PASSES["adamw"])
    writes = sum(p.written for p in PASSES["adamw"])
    assert (reads, writes, len(PASSES["adamw"])) == (12, 8, 8)
    assert sum(launches(4, params, p.depth) for p in PASSES["adamw"]) == 8
    bandwidth_time = eager.times[opt].memory_s
    fused_time = compiled.times[opt].memory_s
    assert bandwidth_time / fused_time == pytest.approx(80 / 28, rel=0.15)
    # a launch ends at 36 tensors (depth 4) or 320 chunks of 65536 elements
    assert launches(161, 25_557_032, 4) == max(math.ceil(161 / 36), math.ceil(390 / 320))


def test_compiled_mode_costs_fused_eager_attention_on_the_attention_roof():
    # T5 writes its attention as matmul -> softmax -> dropout -> matmul: compiled, it is one kernel
    model, inputs = roofline_zoo.get("t5_small").build(batch=1, seq=32)
    step = capture(model, inputs, mode="train", dispatch="cuda")
    eager = evaluate(step, A100, "amp-bf16")
    compiled = eager.recost(execution="compiled")
    assert 0 < compiled.totals()["step_time_s"] < eager.totals()["step_time_s"]
    assert compiled.totals()["step_flops"] == eager.totals()["step_flops"]


def test_module_calls_counted_from_the_capture_equal_the_real_calls():
    from estimator.execution import modules_entered
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.GELU()), nn.LayerNorm(8))
    calls = []
    for m in model.modules():
        m.register_forward_pre_hook(lambda mod, args: calls.append(mod))
    x = torch.randn(2, 8)
    with torch.no_grad():
        model(x)  # independent truth: every module's forward, counted by hooks on a real run
    real_calls = len(calls)
    step = capture(model, (x,), mode="inference")
    assert sum(modules_entered(step)) == real_calls == 7  # 2 Sequentials, 2 Linears, ReLU, GELU, LayerNorm


@pytest.mark.parametrize("execution", ["eager", "cuda-graphs", "compiled"])
def test_kernels_timed_once_per_signature_equal_timing_every_node(monkeypatch, execution):
    """Re-costing times each distinct (kernel signature, cost) once per chip; with every node made
    distinct (no sharing) the step's per-node times and totals are the same to the last bit."""
    import estimator.execution as execution_module

    model, inputs = roofline_zoo.get("resnet18").build(batch=2, image=64)
    step = capture(model, inputs, "train", dispatch="cuda")
    shared = evaluate(step, A100, "amp-bf16", execution)
    assert len(set(execution_module.kernel_signatures(step))) < len(step.nodes)  # something to share
    fresh = capture(model, inputs, "train", dispatch="cuda")
    monkeypatch.setattr(execution_module, "_timing_key", lambda signatures, timed: timed)  # node index first
    alone = evaluate(fresh, A100, "amp-bf16", execution)
    assert alone.times == shared.times
    assert alone.totals() == shared.totals()


def test_one_kernel_plan_serves_every_chip_and_equals_a_fresh_step(monkeypatch):
    """Re-costing on other chips builds the step's kernel plan once; each chip's times are those of
    a step that never saw another chip, to the last bit."""
    import estimator.execution as execution_module

    model, inputs = roofline_zoo.get("resnet18").build(batch=2, image=64)
    step = capture(model, inputs, "train", dispatch="cuda")
    built = []
    make_plan = execution_module._make_plan
    monkeypatch.setattr(execution_module, "_make_plan", lambda *a, **k: built.append(1) or make_plan(*a, **k))
    chips = [A100, load_hardware("h100-sxm"), load_hardware("t4"), load_hardware("mi300x")]
    reports = [evaluate(step, chip, "amp-fp16") for chip in chips]
    assert len(built) == 1
    for chip, report in zip(chips, reports):
        fresh = evaluate(capture(model, inputs, "train", dispatch="cuda"), chip, "amp-fp16")
        assert report.times == fresh.times and report.totals() == fresh.totals()
    assert len({r.totals()["step_time_s"] for r in reports}) == len(chips)  # the chips differ


def test_a_step_remade_with_another_accumulate_is_costed_for_it():
    """dataclasses.replace(step, accumulate=n) shares the step's extra data (kernel plans, cached
    cluster times): every cache that depends on the micro-batch count must key on it."""
    import dataclasses

    from estimator.cluster import predict_cluster
    from estimator.parallel_layout import parse_layout
    from estimator.system import load_system

    model, inputs = roofline_zoo.get("gpt2").build(batch=1, seq=32)
    step = capture(model, inputs, "train", dispatch="cuda")
    h100, dgx, layout = load_hardware("h100-sxm"), load_system("dgx-h100"), parse_layout("dp=2", 2)
    evaluate(step, h100, "amp-bf16").totals()
    predict_cluster(step, dgx, h100, PRECISIONS["amp-bf16"], layout, 8)
    remade = dataclasses.replace(step, accumulate=3)
    fresh = capture(model, inputs, "train", dispatch="cuda", accumulate=3)
    assert evaluate(remade, h100, "amp-bf16").totals() == evaluate(fresh, h100, "amp-bf16").totals()
    ours = predict_cluster(remade, dgx, h100, PRECISIONS["amp-bf16"], layout, 8).to_dict()
    assert ours == predict_cluster(fresh, dgx, h100, PRECISIONS["amp-bf16"], layout, 8).to_dict()
