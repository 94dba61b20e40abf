"""Capture: what estimator.capture records for one step, forward and backward.

Covers: every call node's op / phase / module path / module type (forward and backward) and
the fx graph that holds them; a backward taken from the real autograd graph (the first conv
computes no input gradient, frozen parameters compute no weight gradient); inference mode;
no memory allocated for an 8B-parameter model; Hugging Face models built from configs on
meta; re-costing without tracing again.

Expected numbers are formulas over the architectures (with the reason next to them), or
published parameter counts from ../shared/reference/reference_counts.yaml.
"""
from __future__ import annotations

import operator

import functools
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import estimator
import roofline_zoo
from estimator import capture, evaluate, load_hardware
from estimator.capture import PHASES, CapturedStep, OpNode

aten = torch.ops.aten

MATMUL_OPS = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm}
MATRIX_OPS = MATMUL_OPS | {aten.convolution, aten.convolution_backward}

# Published parameter counts (reference_counts.yaml, exact_param_counts_nlp: arithmetic over
# the official config.json, equal to the counts on the Hugging Face model pages).
REFERENCE_PARAMS = {
    "bert-base-uncased": 109_482_240,  # 12 layers, d 768, vocab 30522, with pooler
    "gpt2 (small)": 124_439_808,  # 12 layers, d 768, vocab 50257, lm_head tied to wte
    "Llama-3-8B": 8_030_261_248,  # 32 layers, d 4096, ffn 14336, GQA 32/8, untied lm_head
}
REFERENCE_YAML = Path(__file__).resolve().parents[2] / "shared" / "reference" / "reference_counts.yaml"


def test_reference_params_match_the_reference_file():
    if not REFERENCE_YAML.exists():
        pytest.skip(f"{REFERENCE_YAML} not present in this checkout")
    import yaml

    data = yaml.safe_load(REFERENCE_YAML.read_text())
    published = {e["model"]: e["params"] for e in data["exact_param_counts_nlp"]["entries"]}
    for model, params in REFERENCE_PARAMS.items():
        assert published[model] == params, model


# ---- shared captures (module-level caches: each model is traced once per test session) ----

@functools.lru_cache(maxsize=None)
def resnet50_step(mode: str = "train", frozen: str | None = None) -> tuple[nn.Module, CapturedStep]:
    """Zoo resnet50 at batch 2, 224x224; `frozen`: a submodule whose parameters are frozen."""
    model, inputs = roofline_zoo.get("resnet50").build(batch=2)
    if frozen is not None:
        for p in model.get_submodule(frozen).parameters():
            p.requires_grad_(False)
    return model, capture(model, inputs, mode=mode)


BATCH, IMAGE = 2, 224


def nodes_of(step: CapturedStep, packet, phase: str | None = None, path: str | None = None) -> list[OpNode]:
    return [n for n in step.nodes if n.op.overloadpacket == packet
            and (phase is None or n.phase == phase) and (path is None or n.module_path == path)]


def costs_of(step: CapturedStep, precision: str = "fp32"):
    report = evaluate(step, load_hardware("h100-sxm"), precision)
    return dict(zip(map(id, step.nodes), report.costs)), report


# ==== 1. op, phase, module path and type on every node, forward and backward ====

def test_every_node_carries_op_phase_and_owner():
    _, step = resnet50_step()
    assert step.nodes
    for node in step.nodes:
        assert isinstance(node.op, torch._ops.OpOverload)
        assert node.phase in PHASES
        assert isinstance(node.module_path, str)
        assert node.module_type  # the root model's type when no submodule is active
        assert all(hasattr(t, "shape") and hasattr(t, "dtype") for t in node.inputs + node.outputs)


def test_conv_forward_and_backward_are_owned_by_the_conv_module():
    model, step = resnet50_step()
    fwd = nodes_of(step, aten.convolution, "forward", "layer1.0.conv2")
    bwd = nodes_of(step, aten.convolution_backward, "backward", "layer1.0.conv2")
    assert len(fwd) == 1 and len(bwd) == 1
    assert fwd[0].module_type == bwd[0].module_type == "Conv2d"
    # the node's shapes are layer1.0.conv2's: 64 -> 64 channels, 3x3, on the 56x56 map
    # (224 / 2 for conv1, / 2 for the max pool)
    assert fwd[0].inputs[1].shape == (64, 64, 3, 3) == bwd[0].inputs[2].shape
    assert fwd[0].outputs[0].shape == (BATCH, 64, IMAGE // 4, IMAGE // 4)

    # every conv and batch norm of the model: one forward and one backward node, each owned
    # by the module itself (resnet50 has 53 convs and 53 batch norms)
    convs = {p for p, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    bns = {p for p, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert len(convs) == len(bns) == 53
    for packet, phase, paths, mtype in ((aten.convolution, "forward", convs, "Conv2d"),
                                        (aten.convolution_backward, "backward", convs, "Conv2d"),
                                        (aten.native_batch_norm, "forward", bns, "BatchNorm2d"),
                                        (aten.native_batch_norm_backward, "backward", bns, "BatchNorm2d")):
        found = nodes_of(step, packet, phase)
        assert sorted(n.module_path for n in found) == sorted(paths), (packet, phase)
        assert {n.module_type for n in found} == {mtype}


def test_phases_run_forward_then_loss_then_backward_then_optimizer():
    _, step = resnet50_step()
    order = [PHASES.index(n.phase) for n in step.nodes]
    assert order == sorted(order)
    assert set(order) == {0, 1, 2, 3}
    # the default optimizer: one fused AdamW update of every trainable parameter, owned by "optimizer"
    (update,) = [n for n in step.nodes if n.phase == "optimizer"]
    assert update.op is aten._fused_adamw_.default and update.module_path == "optimizer"
    assert sum(t.numel for t in update.args[0]) == step.trainable_parameters
    # the loss (cross-entropy by default) is owned by the loss, forward and backward
    assert {n.module_path for n in step.nodes if n.phase == "loss"} == {"loss"}
    assert nodes_of(step, aten.nll_loss_backward, "backward", "loss")


def test_fx_graph_holds_one_call_node_per_op_node():
    _, step = resnet50_step()
    graph = step.graph
    assert isinstance(graph, torch.fx.Graph)
    graph.lint()  # well-formed: every argument defined before use
    calls = [n for n in graph.nodes if n.op == "call_function"]
    recorded = [n for n in calls if "roofline" in n.meta]
    assert len(recorded) == len(step.nodes)
    for fx_node, op_node in zip(recorded, step.nodes):
        assert fx_node.meta["roofline"] is op_node
        assert fx_node.target is op_node.op
    # the other call nodes only pick one output of a multi-output op (by position in its return)
    for fx_node in calls:
        if "roofline" not in fx_node.meta:
            producer, index = fx_node.args
            assert fx_node.target is operator.getitem and "roofline" in producer.meta and isinstance(index, int)
    # parameters, buffers and inputs are placeholders
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    model, _ = resnet50_step()
    assert len(placeholders) == len(list(model.parameters())) + len(list(model.buffers())) + 1


def test_fx_getitem_indices_are_positions_in_the_ops_return():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    step = capture(model, (torch.randn(2, 3, 8, 8),), mode="train")
    (bwd,) = [n for n in step.graph.nodes if n.op == "call_function" and "roofline" in n.meta
              and n.meta["roofline"].op.overloadpacket == aten.convolution_backward]
    assert list(bwd.meta["roofline"].args[10]) == [False, True, True]  # the first conv: no grad_input
    indices = sorted(user.args[1] for user in bwd.users)
    assert indices == [1, 2]  # grad_weight and grad_bias are outputs 1 and 2 of convolution_backward


# ==== 2. backward from the real autograd graph ====

def test_first_conv_computes_only_its_weight_gradient():
    _, step = resnet50_step()
    cost, _ = costs_of(step)
    (bwd,) = nodes_of(step, aten.convolution_backward, "backward", "conv1")
    # conv1's input is the image, which needs no gradient: output_mask (args[10]) =
    # (grad_input, grad_weight, grad_bias) = (False, True, False) (no bias before a BN)
    assert list(bwd.args[10]) == [False, True, False]
    assert [o.shape for o in bwd.outputs] == [(64, 3, 7, 7)]  # the weight gradient only
    # grad_weight is one conv of x with grad_out: exactly a forward conv's FLOPs,
    # 2 * N * H_out * W_out * C_out * C_in * kh * kw with H_out = (224 + 2*3 - 7) // 2 + 1 = 112
    out = (IMAGE + 2 * 3 - 7) // 2 + 1
    assert cost[id(bwd)].flops == 2 * BATCH * out * out * 64 * 3 * 7 * 7
    (fwd,) = nodes_of(step, aten.convolution, "forward", "conv1")
    assert cost[id(bwd)].flops == cost[id(fwd)].flops

    # every other conv passes a gradient to the layer before it and to its weight
    others = [n for n in nodes_of(step, aten.convolution_backward) if n.module_path != "conv1"]
    assert len(others) == 52
    for n in others:
        assert list(n.args[10]) == [True, True, False], n.module_path
        assert cost[id(n)].flops == 2 * cost[id(nodes_of(step, aten.convolution, "forward", n.module_path)[0])].flops


def _bottleneck_layer1_convs(n: int, hw: int):
    """(C_in, C_out, k) of layer1's convs and the channels of its batch norms, from the
    architecture: 3 bottlenecks of width 64 (expansion 4) on the 56x56 map, stride 1."""
    convs, bns = [], []
    for block in range(3):
        c_in = 64 if block == 0 else 256
        convs += [(c_in, 64, 1), (64, 64, 3), (64, 256, 1)]
        bns += [64, 64, 256]
        if block == 0:  # the downsample projection 64 -> 256
            convs.append((64, 256, 1))
            bns.append(256)
    wgrad = sum(2 * n * hw * hw * c_out * c_in * k * k for c_in, c_out, k in convs)
    return wgrad, sum(n * c * hw * hw for c in bns), len(convs)


def test_frozen_parameters_have_no_weight_gradient_work():
    _, full = resnet50_step()
    _, frozen = resnet50_step(frozen="layer1")
    assert frozen.trainable_parameters < frozen.parameters == full.parameters

    bwd = nodes_of(frozen, aten.convolution_backward)
    layer1 = [n for n in bwd if n.module_path.startswith("layer1.")]
    assert len(layer1) == 10  # 3 bottlenecks x 3 convs + the downsample
    for n in layer1:
        # layer1's input still needs a gradient (conv1 and bn1 train), its weights do not
        assert list(n.args[10]) == [True, False, False], n.module_path
    for n in bwd:
        if not n.module_path.startswith("layer1."):
            assert n.args[10][1], n.module_path  # every other conv still computes grad_weight
    for n in nodes_of(frozen, aten.native_batch_norm_backward):
        frozen_bn = n.module_path.startswith("layer1.")
        assert list(n.args[9]) == ([True, False, False] if frozen_bn else [True, True, True]), n.module_path

    # backward FLOPs drop by exactly what the frozen weights no longer need:
    # each conv's grad_weight (one forward conv) and each batch norm's grad_weight (2 FLOPs
    # per element) and grad_bias (1 per element), as estimator/rules/{conv,norm}.py count them
    wgrad, bn_elements, _ = _bottleneck_layer1_convs(BATCH, IMAGE // 4)
    drop = wgrad + 3 * bn_elements
    totals = lambda s: evaluate(s, load_hardware("h100-sxm"), "fp32").totals()  # noqa: E731
    full_t, frozen_t = totals(full), totals(frozen)
    assert full_t["backward_flops"] - frozen_t["backward_flops"] == drop
    assert full_t["forward_flops"] == frozen_t["forward_flops"]


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))


def test_frozen_linear_has_no_weight_gradient_matmul():
    n, x = 4, torch.randn(4, 32)
    full = capture(_mlp(), (x,), mode="train")
    model = _mlp()
    model[2].requires_grad_(False)
    frozen = capture(model, (x,), mode="train")

    def bwd_mm(step, path):
        return sorted(tuple(t.shape for t in m.inputs) for m in nodes_of(step, aten.mm, "backward", path))

    # trainable last Linear (64 -> 10): grad_input (N,10)@(10,64) and grad_weight (10,N)@(N,64)
    assert bwd_mm(full, "2") == sorted([((n, 10), (10, 64)), ((10, n), (n, 64))])
    # frozen: only grad_input, which the trainable first Linear needs
    assert bwd_mm(frozen, "2") == [((n, 10), (10, 64))]
    assert not nodes_of(frozen, aten.sum, "backward", "2")  # no bias gradient either
    # the first Linear: only grad_weight (its input, the data, needs no gradient) in both
    assert bwd_mm(full, "0") == bwd_mm(frozen, "0") == [((64, n), (n, 32))]

    # the drop is the weight-gradient matmul (2 * 10 * N * 64) plus the bias-gradient sum
    # over the batch (N * 10 elements, 1 FLOP each)
    totals = lambda s: evaluate(s, load_hardware("h100-sxm"), "fp32").totals()  # noqa: E731
    assert totals(full)["backward_flops"] - totals(frozen)["backward_flops"] == 2 * 10 * n * 64 + n * 10
    assert frozen.trainable_parameters == 32 * 64 + 64
    assert frozen.parameters == full.parameters == 32 * 64 + 64 + 64 * 10 + 10

    # freezing the first Linear instead removes all of its backward work, and the last
    # Linear no longer computes grad_input (nothing before it needs one)
    model = _mlp()
    model[0].requires_grad_(False)
    first_frozen = capture(model, (x,), mode="train")
    assert not [m for m in first_frozen.nodes if m.phase == "backward" and m.module_path == "0"]
    assert bwd_mm(first_frozen, "2") == [((10, n), (n, 64))]


# ==== 3. inference mode ====

class _Probe(nn.Module):
    """Records, inside its forward, whether autograd is on and whether its weight wants grad."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.5)
        self.seen = []

    def forward(self, x):
        self.seen.append((torch.is_grad_enabled(), self.lin.weight.requires_grad, self.training))
        return self.drop(self.lin(x))


def test_inference_records_only_the_forward_with_eval_kernels():
    model, step = resnet50_step(mode="inference")
    assert step.mode == "inference"
    assert {n.phase for n in step.nodes} == {"forward"}
    assert model.training  # the zoo builds in train mode; capture restores it
    # batch norm runs on its running statistics. Eager PyTorch on CPU dispatches
    # native_batch_norm(training=False) (args[5]); export-style decompositions call
    # _native_batch_norm_legit_no_training. Either way: no batch statistics, no
    # running-stat update, and the eval rule's 4 FLOPs per element.
    bns = [n for n in step.nodes if n.op.overloadpacket in (aten.native_batch_norm,
                                                            aten._native_batch_norm_legit_no_training,
                                                            aten._native_batch_norm_legit)]
    assert len(bns) == 53
    cost, _ = costs_of(step)
    for n in bns:
        if n.op.overloadpacket == aten.native_batch_norm:
            assert n.args[5] is False, n.module_path
        else:
            assert n.op.overloadpacket == aten._native_batch_norm_legit_no_training
        assert cost[id(n)].flops == 4 * n.inputs[0].numel
    # in training the same layers normalise with batch statistics (8 per element)
    _, train = resnet50_step()
    train_cost, _ = costs_of(train)
    for n in nodes_of(train, aten.native_batch_norm, "forward"):
        assert n.args[5] is True and train_cost[id(n)].flops == 8 * n.inputs[0].numel


def test_inference_requests_no_gradients_and_restores_training_flags():
    model = nn.Sequential(_Probe(), nn.Linear(8, 2))
    model[1].eval()  # a mixed state: the root trains, one child is in eval
    step = capture(model, (torch.randn(3, 8),), mode="inference")
    assert model[0].seen == [(False, False, False)]  # no autograd, no grad-requiring weight, eval
    assert not [n for n in step.nodes if n.op.overloadpacket in (aten.bernoulli_, aten.native_dropout)]
    assert [m.training for m in model.modules()] == [True, True, True, True, False]
    assert all(p.requires_grad for p in model.parameters())  # the user's flags are untouched
    assert {n.phase for n in step.nodes} == {"forward"}

    model[0].seen.clear()
    model.eval()
    train = capture(model, (torch.randn(3, 8),), mode="train")
    assert model[0].seen == [(True, True, True)]
    assert [m.training for m in model.modules()] == [False] * 5  # eval restored after training
    assert {n.phase for n in train.nodes} == set(PHASES)


def test_inference_of_a_frozen_model_and_train_of_a_frozen_model():
    model = _mlp().requires_grad_(False)
    step = capture(model, (torch.randn(2, 32),), mode="inference")
    assert step.trainable_parameters == 0 and step.parameters == 32 * 64 + 64 + 64 * 10 + 10
    with pytest.raises(estimator.RooflineError, match="requires_grad"):
        capture(model, (torch.randn(2, 32),), mode="train")


# ==== 4. no memory allocated: Llama-3-8B on the meta device ====

_LLAMA_8B_SCRIPT = textwrap.dedent("""
    import json, resource, time
    t0 = time.perf_counter()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    import estimator
    cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    ids = torch.randint(0, cfg.vocab_size, (1, 2048), device="meta")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t1 = time.perf_counter()
    step = estimator.capture(model, {"input_ids": ids}, mode="train")
    t2 = time.perf_counter()
    report = estimator.evaluate(step, estimator.load_hardware("h100-sxm"), "amp-bf16")
    totals = report.totals()
    print(json.dumps({
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # Linux: KiB
        "maxrss_before_capture_kb": before, "capture_s": t2 - t1, "total_s": time.perf_counter() - t0,
        "parameters": step.parameters, "trainable": step.trainable_parameters,
        "phases": sorted({n.phase for n in step.nodes}), "unsupported": report.unsupported(),
        "forward_flops": totals["forward_flops"], "backward_flops": totals["backward_flops"],
        "model_on_meta": all(p.is_meta for p in model.parameters()),
    }))
""")


def test_llama3_8b_train_step_allocates_no_weights():
    pytest.importorskip("transformers")
    proc = subprocess.run([sys.executable, "-c", _LLAMA_8B_SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nLlama-3-8B train capture: peak RSS {result['maxrss_kb'] / 1024:.0f} MiB "
          f"(before capture {result['maxrss_before_capture_kb'] / 1024:.0f} MiB), "
          f"capture {result['capture_s']:.1f} s, whole subprocess {result['total_s']:.1f} s")
    # 8e9 bf16 weights alone would be 16 GB; fake tensors hold no storage
    assert result["maxrss_kb"] * 1024 < 2e9
    assert result["model_on_meta"]

    d, layers, ffn, vocab, kv = 4096, 32, 14336, 128256, 8 * 128
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * ffn + 2 * d  # q,o; k,v (GQA); gate,up,down; 2 RMSNorms
    assert result["parameters"] == 2 * vocab * d + layers * per_layer + d == REFERENCE_PARAMS["Llama-3-8B"]
    assert result["trainable"] == result["parameters"]
    assert result["phases"] == sorted(PHASES)
    assert result["unsupported"] == []
    # every non-embedding weight multiplies each of the 2048 tokens once (2 FLOPs per MAC);
    # attention scores and elementwise work come on top
    tokens, matmul_weights = 2048, REFERENCE_PARAMS["Llama-3-8B"] - vocab * d - (2 * layers + 1) * d
    assert result["forward_flops"] > 2 * tokens * matmul_weights
    # backward: grad_input and grad_weight of nearly every matmul, about twice the forward
    assert 1.8 < result["backward_flops"] / result["forward_flops"] < 2.2


# ==== 5. Hugging Face models from configs, on meta ====

def _hf_model(name: str):
    """(model, inputs, pattern a block-0 module path matches): default sizes where cheap."""
    t = pytest.importorskip("transformers")
    ids = torch.randint(0, 1000, (2, 16), device="meta")
    with torch.device("meta"):
        if name == "bert":  # default = bert-base-uncased
            return t.BertModel(t.BertConfig()), {"input_ids": ids}, r"^encoder\.layer\.0\."
        if name == "gpt2":  # default = gpt2 small
            return t.GPT2LMHeadModel(t.GPT2Config()), {"input_ids": ids}, r"^transformer\.h\.0\."
        if name == "llama":
            cfg = t.LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2)
            return t.LlamaForCausalLM(cfg), {"input_ids": ids}, r"^model\.layers\.0\."
        if name == "vit":  # ViT-Base width, 2 layers, 224x224 (197 tokens)
            return (t.ViTForImageClassification(t.ViTConfig(num_hidden_layers=2)),
                    {"pixel_values": torch.randn(2, 3, 224, 224, device="meta")},
                    r"^vit\.(encoder\.)?layers?\.0\.")
        if name == "resnet":  # default = ResNet-50
            return (t.ResNetForImageClassification(t.ResNetConfig()),
                    {"pixel_values": torch.randn(2, 3, 64, 64, device="meta")},
                    r"^resnet\.encoder\.stages\.0\.")
    raise KeyError(name)


@functools.lru_cache(maxsize=None)
def hf_report(name: str):
    model, inputs, block0 = _hf_model(name)
    report = estimator.estimate(model, inputs, hardware="a100-80gb-sxm", precision="amp-bf16", mode="train")
    return model, report, block0


HF_MODELS = ["bert", "gpt2", "llama", "vit", "resnet"]


def _matrix_modules(model: nn.Module) -> dict[str, str]:
    """Modules that own a matmul or conv: nn.Linear, nn.Conv2d, transformers' Conv1D (GPT-2)."""
    return {p: type(m).__name__ for p, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) or type(m).__name__ == "Conv1D"}


@pytest.mark.parametrize("name", HF_MODELS)
def test_hf_model_estimates_without_edits(name):
    model, report, _ = hf_report(name)
    assert report.unsupported() == []
    totals = report.totals()
    assert totals["forward_flops"] > 0 and totals["backward_flops"] > 0
    assert {n.phase for n in report.nodes} == set(PHASES)
    assert all(p.is_meta for p in model.parameters())  # the user's model stays on meta
    assert totals["parameters"] == sum({id(p): p.numel() for p in model.parameters()}.values())


@pytest.mark.parametrize("name", HF_MODELS)
def test_hf_forward_matmuls_carry_hf_module_names(name):
    model, report, block0 = hf_report(name)
    owners = _matrix_modules(model)
    fwd = [n for n in report.nodes if n.phase == "forward" and n.op.overloadpacket in MATRIX_OPS]
    for path, mtype in owners.items():
        mine = [n for n in fwd if n.module_path == path]
        assert mine, f"no forward matmul/conv owned by {path}"
        assert {n.module_type for n in mine} == {mtype}
    assert any(re.search(block0, n.module_path) for n in fwd)
    if name == "bert":
        (q,) = [n for n in fwd if n.module_path == "encoder.layer.0.attention.self.query"]
        assert q.module_type == "Linear" and "encoder.layer.0" in q.module_path


@pytest.mark.parametrize("name", HF_MODELS)
def test_hf_backward_matmuls_carry_hf_module_names(name):
    model, report, _ = hf_report(name)
    bwd = [n for n in report.nodes if n.phase == "backward" and n.op.overloadpacket in MATRIX_OPS]
    owners = _matrix_modules(model)
    for path, mtype in owners.items():
        if any(p.requires_grad for p in model.get_submodule(path).parameters()):
            mine = [n for n in bwd if n.module_path == path]
            assert mine, f"no backward matmul/conv owned by {path}"
            assert {n.module_type for n in mine} == {mtype}
    # no matmul/conv is charged to a module that does none (dropout, activations)
    assert {n.module_path for n in bwd} <= set(owners) | {p for p, m in model.named_modules()
                                                          if "Attention" in type(m).__name__}


# a module returning its input unchanged (nn.Identity, Dropout(p=0), ViT's hidden dropout at 0.0)
# must not keep the backward of the module before it
@pytest.mark.parametrize("identity", [nn.Identity, lambda: nn.Dropout(0.0)], ids=["Identity", "Dropout0"])
def test_identity_module_does_not_steal_backward_ownership(identity):
    model = nn.Sequential(nn.Linear(8, 16), identity(), nn.ReLU(), nn.Linear(16, 4))
    step = capture(model, (torch.randn(2, 8),), mode="train")
    assert {n.module_path for n in nodes_of(step, aten.mm, "backward")} == {"0", "3"}


def test_inplace_activation_keeps_its_backward():
    # ReLU(inplace=True) returns its input tensor object, but with a new grad_fn: unlike an
    # identity it does work, and its threshold_backward belongs to it in every block
    _, step = resnet50_step()
    owners = {n.module_path for n in nodes_of(step, aten.threshold_backward, "backward")}
    assert owners == {n.module_path for n in nodes_of(step, aten.relu_, "forward")}
    assert all(path == "relu" or path.endswith(".relu") for path in owners)


@pytest.mark.parametrize("name, reference", [("bert", "bert-base-uncased"), ("gpt2", "gpt2 (small)")])
def test_hf_default_parameter_counts(name, reference):
    _, report, _ = hf_report(name)
    # step.parameters counts unique tensors: GPT-2's lm_head shares wte's weight
    assert report.step.parameters == REFERENCE_PARAMS[reference]
    assert report.step.trainable_parameters == REFERENCE_PARAMS[reference]


# ==== 6. re-costing without tracing again ====

def test_recost_reuses_the_captured_step(monkeypatch):
    _, step = resnet50_step()
    report = evaluate(step, load_hardware("a100-80gb-sxm"), "amp-bf16")
    # any new trace would go through capture's _run_step: make it fail
    monkeypatch.setattr(sys.modules["estimator.capture"], "_run_step",
                        lambda *a, **k: pytest.fail("recost traced the model again"))
    base = report.totals()

    h100 = report.recost(hardware=load_hardware("h100-sxm"))
    assert h100.step is step and h100.hardware.id == "h100-sxm" and h100.precision.name == "amp-bf16"
    moved = h100.totals()
    for key in ("forward_flops", "backward_flops", "step_flops", "model_flops", "step_bytes"):
        assert moved[key] == base[key], key  # same step, same precision: same work
    # same kernel overhead, higher bf16 matrix peak and HBM bandwidth: strictly faster
    assert moved["step_time_s"] < base["step_time_s"]

    fp32 = report.recost(precision="fp32")
    assert fp32.hardware.id == "a100-80gb-sxm" and fp32.precision.name == "fp32"
    wide = fp32.totals()
    assert wide["step_flops"] == base["step_flops"]
    assert wide["step_bytes"] > base["step_bytes"]
    # a matmul/conv moves only floating tensors: 4 bytes each instead of 2, exactly double
    for node, narrow, full in zip(step.nodes, report.costs, fp32.costs):
        if narrow.op_class in ("matmul", "conv") and all(t.is_float for t in node.inputs + node.outputs):
            assert full.bytes == 2 * narrow.bytes, node.name
    assert wide["step_time_s"] != base["step_time_s"]


def test_a_models_own_loss_is_the_only_loss():
    """Hugging Face models given `labels` compute their own loss; the default loss must not add
    a second cross-entropy on top of it."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64)
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.zeros(2, 16, dtype=torch.long)
    for inputs in ({"input_ids": ids, "labels": ids}, {"input_ids": ids}):
        step = capture(model, inputs, mode="train", optimizer=None)
        names = [n.op.overloadpacket.__name__ for n in step.nodes]
        assert names.count("nll_loss_forward") == 1 and names.count("nll_loss_backward") == 1, inputs.keys()


def test_a_parameter_passed_into_a_submodule_trains():
    """YOLOS hands its detection-token parameter straight to a submodule: the module tracker
    must not put a grad hook on that leaf (autograd.grad rejects it); the step captures, with
    the backward attributed to the encoder and embeddings."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.YolosConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                   image_size=[64, 64], patch_size=16, num_detection_tokens=4)
    with torch.device("meta"):
        model = transformers.YolosModel(cfg)
    step = capture(model, {"pixel_values": torch.zeros(1, 3, 64, 64)}, mode="train", optimizer=None)
    owners = {n.module_path.split(".")[0] for n in step.nodes if n.phase == "backward" and n.module_path}
    assert {"encoder", "embeddings"} <= owners


def test_backward_of_a_module_that_returns_a_tensor_it_also_uses_stays_with_it():
    """T5's first attention layer returns its position bias, which it also adds to its own scores;
    that output's gradient is ready only at the end of the layer's backward. The layer's backward
    ops still belong to it (the layer is entered at its first output gradient), not to the stack."""
    import transformers as T

    from estimator.model_source import hf_model

    config = T.T5Config(num_layers=2, num_decoder_layers=2, d_model=64, d_kv=16, d_ff=128, num_heads=4,
                        vocab_size=100)
    model, inputs, _ = hf_model(config, "T5ForConditionalGeneration", batch=2, seq=32)
    step = capture(model, inputs, mode="train", optimizer=None)
    bmm = {phase: [n for n in step.nodes if n.phase == phase and n.op.overloadpacket is torch.ops.aten.bmm]
           for phase in ("forward", "backward")}
    assert {n.module_type for n in bmm["forward"]} == {"T5Attention"}
    assert {n.module_type for n in bmm["backward"]} == {"T5Attention"}  # each forward bmm: two in backward
    assert len(bmm["backward"]) == 2 * len(bmm["forward"])
