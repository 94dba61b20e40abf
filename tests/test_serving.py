"""LLM serving (estimator.serving and its modules): the served KV cache in the captured graph, the
decode step's bytes by formula, weight and KV formats, memory and the largest batch, execution
modes, tensor parallel, the command line and a brief real generation on this CPU."""
from __future__ import annotations

import json

import pytest
import torch
import transformers

from estimator.cli import main
from estimator.errors import PrecisionError, RooflineError
from estimator.hardware import load_hardware
from estimator.kv_cache import kv_cache_bytes
from estimator.precision import get_precision
from estimator.serving import capture_decode, check_prompt, serve
from estimator.serving_models import decoder_for
from estimator.system import load_system
from estimator.weight_formats import WEIGHT_BYTES, check_formats, served_costs, weight_bytes

H100 = load_hardware("h100-sxm")
BF16 = get_precision("bf16")
CONFIG = transformers.LlamaConfig(hidden_size=512, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=8,
                                  num_key_value_heads=2, vocab_size=1000, max_position_embeddings=4096,
                                  architectures=["LlamaForCausalLM"])


@pytest.fixture(scope="module")
def tiny():
    with torch.device("meta"):
        return transformers.LlamaForCausalLM(CONFIG), CONFIG, "tiny-llama"


def test_decode_reads_the_cache_and_writes_one_token(tiny):
    model, config, name = tiny
    batch, context, kv_heads, head_dim = 4, 300, 2, 64
    step = capture_decode(model, config, batch, context, torch.float32, "cuda", name)
    attention = [n for n in step.nodes if "attention" in n.op.overloadpacket.__name__]
    assert len(attention) == 2  # one per layer
    for node in attention:
        q, k, v = node.inputs[:3]
        assert tuple(k.shape) == (batch, kv_heads, context + 1, head_dim)  # grouped-query: 2 KV heads of 8
        assert tuple(q.shape)[2] == 1
    writes = [n for n in step.nodes if n.op.overloadpacket.__name__ == "copy_"]
    assert writes and all(n.outputs[0].shape[2] == 1 for n in writes)  # in place, one token


def test_decode_bytes_are_the_weights_and_the_cache(tiny):
    model, config, name = tiny
    batch, context = 1, 2000
    step = capture_decode(model, config, batch, context, torch.float32, "cuda", name)
    total = sum(c.bytes for c in served_costs(step, BF16))
    weights = weight_bytes(step, BF16)
    cache = kv_cache_bytes(config, batch, context + 1, BF16.matrix_bytes)
    assert weights == pytest.approx(sum(p.numel() for p in model.parameters()) * 2)
    # every weight but the embedding table (one row gathered) and every cached key/value is read
    # once; the rest (activations of one token) is small
    streamed = weights - CONFIG.vocab_size * CONFIG.hidden_size * 2 + cache
    assert streamed <= total <= 1.1 * streamed


def test_quantised_weights_and_cache_move_fewer_bytes(tiny):
    model, config, name = tiny
    step = capture_decode(model, config, 1, 1000, torch.float32, "cuda", name)
    base = sum(c.bytes for c in served_costs(step, BF16))
    matmul_weights = weight_bytes(step, BF16) - (CONFIG.vocab_size * 512 + 5 * 512) * 2  # less embedding and norms
    int4 = sum(c.bytes for c in served_costs(step, BF16, weights="int4"))
    assert base - int4 == pytest.approx(matmul_weights / 2 * (2 - WEIGHT_BYTES["int4"]), rel=1e-3)
    cache = kv_cache_bytes(config, 1, 1001, 2)
    fp8 = sum(c.bytes for c in served_costs(step, BF16, kv="fp8"))
    assert base - fp8 == pytest.approx(cache / 2, rel=1e-3)


def test_fp8_needs_a_chip_with_fp8():
    check_formats(H100, "fp8", "fp8")
    with pytest.raises(PrecisionError, match="no fp8"):
        check_formats(load_hardware("a100-80gb-sxm"), "fp8", "auto")
    with pytest.raises(PrecisionError, match="int3"):
        check_formats(H100, "int3", "auto")


def test_memory_and_the_largest_batch(tiny):
    model, config, name = tiny
    result = serve(model, config, name, H100, BF16, prompt=512, generate=64, batches=[1, 8])
    assert result.kv_bytes_per_sequence == pytest.approx(2 * 2 * 2 * 64 * 576 * 2)  # 2 x layers x kv heads x d x tokens
    largest = result.max_batch
    assert result.fits(largest) and not result.fits(largest + 1)
    one, eight = result.points
    assert eight.tokens_per_s_per_gpu > one.tokens_per_s_per_gpu  # batching amortises the weights
    assert one.decode[0].time_s <= one.decode[2].time_s  # a longer context streams more cache


def test_eager_decode_is_slower_than_a_graph_at_batch_one(tiny):
    model, config, name = tiny
    eager = serve(model, config, name, H100, BF16, 128, 8, [1], execution="eager").points[0]
    graph = serve(model, config, name, H100, BF16, 128, 8, [1], execution="cuda-graphs").points[0]
    assert eager.time_per_token_s > 1.5 * graph.time_per_token_s
    assert eager.decode[0].host_bound_s > 0.5 * eager.decode[0].time_s  # the GPU waits for Python


def test_tensor_parallel_splits_weights_and_adds_all_reduces(tiny):
    model, config, name = tiny
    one = serve(model, config, name, H100, BF16, 128, 8, [4])
    two = serve(model, config, name, H100, BF16, 128, 8, [4], gpus=2, system=load_system("dgx-h100"))
    assert two.weights_bytes == pytest.approx(one.weights_bytes / 2)
    assert two.kv_bytes_per_sequence == pytest.approx(one.kv_bytes_per_sequence / 2)  # 2 KV heads over 2 GPUs
    assert two.points[0].tokens_per_s_per_gpu < one.points[0].tokens_per_s_per_gpu  # small model: TP does not pay


def test_bad_requests_are_one_line_errors():
    with pytest.raises(RooflineError, match="past the model's 1024 positions"):
        check_prompt(transformers.GPT2Config(), 1000, 100)
    with pytest.raises(RooflineError, match="needs a decoder"):
        decoder_for("bert_base")
    with pytest.raises(RooflineError, match="did you mean"):
        decoder_for("lama3_8b")


def test_an_encoder_decoder_config_is_refused(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "t5", "d_model": 64, "num_layers": 1, "num_heads": 2,
                                  "d_kv": 32, "d_ff": 64, "vocab_size": 100, "is_encoder_decoder": True}))
    with pytest.raises(RooflineError, match="encoder-decoder"):
        decoder_for(hf_config=str(config))


def test_cli_serve_json_and_plot(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(CONFIG.to_json_string())
    plot = tmp_path / "serve.png"
    code = main(["serve", "--hf-config", str(config), "--hardware", "h100-sxm,a100-80gb-sxm", "--prompt", "256",
                 "--generate", "32", "--batch", "1,16", "--plot", str(plot), "--json", "-"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    first = data["chips"][0]
    for key in ("weights_bytes", "max_batch", "kv_cache_bytes_per_sequence", "points"):
        assert key in first
    point = first["points"][1]
    assert point["batch"] == 16 and point["fits"] is True
    assert {"time_s", "flops", "bytes"} <= set(point["prefill"])
    assert {"time_per_token_s", "tokens_per_s_per_user", "tokens_per_s_per_gpu"} <= set(point["decode"])
    assert point["decode"]["tokens_per_s_per_gpu"] == pytest.approx(16 / point["decode"]["time_per_token_s"])
    assert plot.stat().st_size > 10_000


def test_cli_batch_that_does_not_fit_names_the_largest(capsys):
    code = main(["serve", "gpt2", "--hardware", "l4", "--prompt", "512", "--generate", "64", "--batch", "100000"])
    err = capsys.readouterr().err
    assert code == 2 and "the largest batch that fits is" in err and "Traceback" not in err


def test_real_generation_on_this_cpu_beside_the_prediction(tmp_path):
    """A brief generate with a 2-layer decoder (real weights): every figure exists and is positive;
    accuracy is bench material (README)."""
    from estimator.measure_serving import measure_generation

    config = tmp_path / "config.json"
    config.write_text(CONFIG.to_json_string())
    rows = measure_generation(None, [1, 2], prompt=16, generate=4, runs=1, hardware=load_hardware("xeon-8480"),
                              hf_config=str(config))
    assert [r["batch"] for r in rows] == [1, 2]
    for row in rows:
        assert row["measured"]["ttft_s"] > 0 and len(row["measured"]["decode_s"]) == 3
        assert all(t > 0 for t in row["predicted"]["decode_s"])
        assert row["contexts"] == [16, 18, 19]


def test_a_hybrid_state_space_decoder_is_refused_before_capture():
    config = transformers.JambaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                                      attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2,
                                      expert_layer_offset=1, num_experts=2)
    with torch.device("meta"):
        model = transformers.JambaForCausalLM(config)
    with pytest.raises(RooflineError, match="a state, not keys and values"):
        serve(model, config, "jamba", H100, BF16, 64, 8, [1])


def _counting_captures(monkeypatch) -> list:
    import estimator.serving as serving_module
    calls = []
    original = serving_module.capture
    monkeypatch.setattr(serving_module, "capture", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def test_steps_past_two_batches_are_derived_and_equal_captured_ones(tiny, monkeypatch):
    """Batches 1, 2 and 5: prefill and each decode captured at 1 and 2 only, and batch 5 as serving
    batch 5 alone (captured) predicts it: every number of the point, the memory and the layer rows."""
    model, config, name = tiny
    calls = _counting_captures(monkeypatch)
    derived = serve(model, config, name, H100, BF16, 256, 32, [5, 1, 2])
    assert len(calls) == 2 * 4  # prefill and three decodes, at batches 1 and 2
    captured = serve(model, config, name, H100, BF16, 256, 32, [5])
    assert derived.points[-1] == captured.points[0]
    assert derived.memory_bytes(5) == captured.memory_bytes(5)
    assert derived.decode_report.totals() == captured.decode_report.totals()


def test_chips_share_the_steps_and_a_second_run_reads_them_from_the_cache(tiny, monkeypatch):
    from estimator.step_cache import decoder_identity
    model, config, name = tiny
    identity = decoder_identity("tiny-for-this-test")
    calls = _counting_captures(monkeypatch)
    shared = {}
    first = [serve(model, config, name, chip, BF16, 128, 16, [1, 4], identity=identity, shared_steps=shared)
             for chip in (H100, load_hardware("a100-80gb-sxm"))]
    assert len(calls) == 2 * 4  # both GPUs dispatch as CUDA: one set of steps
    again = serve(model, config, name, H100, BF16, 128, 16, [1, 4], identity=identity)
    assert len(calls) == 2 * 4 and again.points == first[0].points  # from the disk cache
    serve(model, config, name, H100, BF16, 128, 16, [1, 4])  # no identity: captured
    assert len(calls) == 4 * 4
    other_prompt = serve(model, config, name, H100, BF16, 64, 16, [1, 4], shared_steps=shared)
    assert len(calls) == 6 * 4  # another prompt: its own steps, not the shared ones
    assert other_prompt.points[0].prefill.flops < first[0].points[0].prefill.flops
    assert decoder_identity("x")["transformers"] == transformers.__version__


def test_the_plot_labels_every_batch_inside_the_axes_and_keeps_the_legend_off_the_points(tiny):
    """Labels are placed once the log scales and the legend are in place (they had been placed on
    linear axes, before the scale was set, and ended on the tick labels or under the legend)."""
    from estimator.render_serving import throughput_latency
    model, config, name = tiny
    results = [serve(model, config, name, chip, BF16, 128, 16, [1, 4, 16]) for chip in (H100, load_hardware("l4"))]
    fig = throughput_latency(results)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    inside = ax.get_window_extent(renderer)
    labels = [t for t in ax.texts if t.get_text().startswith("b=")]
    assert len(labels) == 6
    for label in labels:
        box = label.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
    legend = fig.legends[0].get_window_extent(renderer)
    assert not legend.overlaps(inside)
