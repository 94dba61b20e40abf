"""estimator.memory: liveness on hand-made models (peaks derived in the comments), element
sizes per precision, optimizer state per optimizer, the saved-for-backward set against
autograd's own, max_batch, and the predicted peak against a real step's measured peak."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import roofline_zoo
from estimator.capture import DefaultLoss, capture
from estimator.errors import RooflineError
from estimator.memory import max_batch, step_memory, zoo_peak_check

N, D0, D1, D2 = 4, 3, 8, 5  # batch and the widths of a two-layer MLP: D0 -> D1 -> D2


def mlp(bias: bool = True, inplace: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Linear(D0, D1, bias=bias), nn.ReLU(inplace=inplace), nn.Linear(D1, D2, bias=bias))


def infer(model: nn.Module, batch: int = N):
    return capture(model, (torch.randn(batch, D0),), mode="inference")


def train(model: nn.Module, batch: int = N, optimizer: str | None = None):
    # loss = output.sum(): its backward is an expand of one scalar, so the derivation stays short
    return capture(model, (torch.randn(batch, D0),), mode="train", loss_fn=lambda out: out.sum(),
                   optimizer=optimizer)


WEIGHTS = D1 * D0 + D1 + D2 * D1 + D2  # elements of the MLP's weights and biases


# ---- liveness, derived by hand ----------------------------------------------------------------

def test_inference_peak_is_weights_input_and_two_live_activations():
    # eval forward: h = addmm(b1, x, W1^T) [N, D1]; r = relu(h) [N, D1], a new tensor;
    # y = addmm(b2, r, W2^T) [N, D2]. h dies after relu, r after the second addmm; weights and x
    # live all step. At relu h and r are live (2 N D1), at the second addmm r and y (N D1 + N D2):
    # with D2 < D1 the peak is at relu.
    est = step_memory(infer(mlp()), "fp32")
    assert (est.parameters_bytes, est.inputs_bytes) == (4 * WEIGHTS, 4 * N * D0)
    assert est.peak_bytes == 4 * (WEIGHTS + N * D0 + 2 * N * D1)
    assert est.peak_op == "aten.relu.default"
    assert est.activations_bytes == 4 * 2 * N * D1  # inference: the activations live at the peak
    assert (est.optimizer, est.gradients_bytes, est.optimizer_bytes) == (None, 0, 0)
    assert sum(est.peak_breakdown.values()) == est.peak_bytes


def test_inplace_op_aliases_its_input():
    # ReLU(inplace=True) is aten.relu_: it writes h in place, so only h and y are ever live together
    est = step_memory(infer(mlp(inplace=True)), "fp32")
    assert est.peak_bytes == 4 * (WEIGHTS + N * D0 + N * D1 + N * D2)
    assert est.peak_op == "aten.addmm.default"


def test_training_peak_and_saved_activations():
    # no biases; loss = y.sum(). Forward: h = x W1^T, r = relu(h) (saved for backward: the
    # ReLU's mask and W2's gradient read it), y = r W2^T, loss. Backward: g = expand(ones) [N, D2];
    # gW2 = g^T r [D2, D1] (a gradient: live to the end); gr = g W2 [N, D1];
    # gh = threshold_backward(gr, r) [N, D1]: r, gr and gh are live together with gW2 (the peak,
    # since 2 N > D0); then gW1 = gh^T x [D1, D0] once r and gr are gone.
    weights = D1 * D0 + D2 * D1
    est = step_memory(train(mlp(bias=False)), "fp32", optimizer="sgd")
    assert est.peak_bytes == 4 * (weights + N * D0 + D2 * D1 + 3 * N * D1)
    assert est.peak_op == "aten.threshold_backward.default" and est.peak_phase == "backward"
    assert est.gradients_bytes == 4 * weights
    assert est.activations_bytes == 4 * N * D1  # r: the forward storage the backward reads
    assert est.peak_breakdown["activations"] == 4 * N * D1
    # AdamW's two moments live all step: the peak moves up by exactly their size
    adamw = step_memory(train(mlp(bias=False)), "fp32", optimizer="adamw")
    assert adamw.peak_bytes == est.peak_bytes + 2 * 4 * weights


def test_gradient_accumulation_keeps_the_gradients_all_step():
    # accumulate=2: the graph is one micro-batch; in the second, the sums of the first one's
    # gradients (gW1 and gW2) live all step, so the peak above gains gW1 (gW2 was already live)
    weights = D1 * D0 + D2 * D1
    model, x = mlp(bias=False), torch.randn(N, D0)
    step = capture(model, (x,), mode="train", loss_fn=lambda out: out.sum(), optimizer=None, accumulate=2)
    est = step_memory(step, "fp32", optimizer="sgd")
    assert est.peak_bytes == 4 * (weights + N * D0 + D1 * D0 + D2 * D1 + 3 * N * D1)
    assert est.gradients_bytes == 4 * weights


def test_training_under_amp_weight_copies_and_half_gradients():
    # the training MLP above under amp-bf16: fp32 weights, input and gradients, bf16 activations,
    # a bf16 copy of W1 until the end of the forward (the backward never reads it: layer 1 needs
    # no input gradient) and of W2 until gr = g W2 reads it. The peak is gW2 = g^T r: made in bf16
    # by the mm and cast to its fp32 gradient, both live, beside r, W2's copy and the one-element
    # ones_like(loss) (memory class: bf16)
    weights = D1 * D0 + D2 * D1
    est = step_memory(train(mlp(bias=False)), "amp-bf16", optimizer="sgd")
    assert est.weight_copies_bytes == 2 * weights
    assert est.gradients_bytes == 4 * weights
    assert est.peak_bytes == 4 * weights + 4 * N * D0 + 2 * D2 * D1 + 2 * N * D1 + 2 * 1 + (4 + 2) * D2 * D1
    assert est.peak_op == "aten.mm.default" and est.peak_module == "2" and est.peak_phase == "backward"


def test_recorded_optimizer_phase_changes_nothing():
    # the fused update (aten._fused_adamw_) is in place: the estimate is the same with or without it
    recorded = step_memory(train(mlp(), optimizer="adamw"), "amp-bf16")
    assert recorded.optimizer == "adamw"
    plain = step_memory(train(mlp()), "amp-bf16", optimizer="adamw")
    assert recorded.peak_bytes == plain.peak_bytes
    assert recorded.peak_breakdown == plain.peak_breakdown
    assert step_memory(train(mlp(), optimizer="sgd-momentum"), "fp32").optimizer == "sgd-momentum"


# ---- precisions and optimizers --------------------------------------------------------------------

def test_precision_element_sizes():
    fp32 = step_memory(infer(mlp()), "fp32")
    assert step_memory(infer(mlp()), "bf16").peak_bytes * 2 == fp32.peak_bytes  # everything in 2 bytes
    amp = step_memory(infer(mlp()), "amp-bf16")
    # fp32 master weights and input; activations (addmm: matmul class, relu: elementwise) in bf16;
    # a bf16 copy of every weight and bias addmm reads, from that addmm to the end (autocast's
    # cache). At the second addmm: r and y, and both layers' copies, all of the weights: the peak
    # (relu has h, r and the first layer's copy only)
    assert (amp.parameters_bytes, amp.weight_copies_bytes) == (4 * WEIGHTS, 2 * WEIGHTS)
    assert amp.peak_bytes == 4 * WEIGHTS + 4 * N * D0 + 2 * (N * D1 + N * D2) + 2 * WEIGHTS
    assert amp.peak_op == "aten.addmm.default"


@pytest.mark.parametrize("precision, element", [("fp32", 4), ("amp-bf16", 4), ("amp-fp16", 4), ("bf16", 2),
                                                ("fp16", 2)])
@pytest.mark.parametrize("optimizer, states", [("sgd", 0), ("sgd-momentum", 1), ("adam", 2), ("adamw", 2)])
def test_optimizer_state_bytes(optimizer, states, precision, element):
    model = mlp()
    model[0].requires_grad_(False)  # frozen: no gradient and no state for the first layer
    trainable = D2 * D1 + D2
    est = step_memory(train(model), precision, optimizer=optimizer)
    assert est.optimizer_bytes == states * trainable * element  # master precision under amp
    assert est.gradients_bytes == trainable * element
    assert est.parameters_bytes == WEIGHTS * element


def test_unknown_optimizer():
    with pytest.raises(RooflineError, match=r"unknown optimizer 'lion'.*sgd, sgd-momentum, adam, adamw"):
        step_memory(train(mlp()), "fp32", optimizer="lion")


def test_activations_are_what_autograd_saves():
    # every storage a real forward saves for backward (autograd's saved-tensor hooks), outside
    # the parameters, buffers and inputs, against the forward storages our backward reads
    entry = roofline_zoo.get("mobilenet_v2")
    meta_model, meta_inputs = entry.build(batch=2, image=32, device="meta")
    predicted = step_memory(capture(meta_model, meta_inputs, mode="train", optimizer=None), "fp32").activations_bytes
    model, inputs = entry.build(batch=2, image=32, device="cpu")
    state = {id(t.untyped_storage()) for t in (*model.parameters(), *model.buffers(), *inputs)}
    saved = {}

    def pack(t):
        if id(t.untyped_storage()) not in state:
            saved[id(t.untyped_storage())] = t.untyped_storage()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        DefaultLoss()(model(*inputs))
    assert predicted == sum(s.nbytes() for s in saved.values())


# ---- max_batch --------------------------------------------------------------------------------

def test_max_batch_finds_the_boundary_from_two_captures():
    """Batches 2 and 4 are captured; every other batch's step is derived (estimator.batch_scaling)."""
    probes = []

    def make(batch):
        probes.append(batch)
        return train(mlp(), batch)

    def peak(batch):
        return step_memory(train(mlp(), batch), "fp32", "adamw").peak_bytes

    for boundary in (1, 37, 300):
        probes.clear()
        capacity = (peak(boundary) + peak(boundary + 1)) // 2
        assert max_batch(make, capacity, "fp32", "adamw") == boundary
        assert probes == [2, 4]
    probes.clear()
    assert max_batch(make, peak(1) - 1, "fp32", "adamw") == 0 and probes == [2, 4]
    assert max_batch(make, 10**12, "fp32", "adamw", limit=64) == 64


# ---- against a real step ----------------------------------------------------------------------

MEASURED = [  # small sizes: a few seconds each on two cores (bench/memory_accuracy.py: larger)
    ("resnet18", "train", 4, {"image": 64}),
    ("resnet18", "train+recompute", 4, {"image": 64}),
    ("mobilenet_v2", "train", 4, {"image": 64}),
    ("deit_small", "train", 1, {}),
    ("bert_base", "train", 1, {"seq": 32}),
    ("gpt2", "train", 1, {"seq": 32}),
    ("resnet18", "inference", 4, {"image": 64}),
]


@pytest.mark.parametrize("name, mode, batch, options", MEASURED, ids=[f"{m[0]}-{m[1]}" for m in MEASURED])
def test_predicted_peak_within_10_percent_of_measured(name, mode, batch, options):
    # fp32, no optimizer on either side: capture records a step without one, and
    # measure_step_memory runs the same step for real, tracking every storage
    est, measured = zoo_peak_check(name, mode, batch, **options)
    assert abs(est.peak_bytes - measured) <= 0.10 * measured, (est.peak_bytes, measured)


def test_gradients_are_the_storages_autograd_returns():
    # DeiT at batch 1: the class token's gradient is a slice of the position embedding's
    # (expand's backward sums over a batch of one: nothing to do), so 384 elements fewer than
    # the parameters are stored; found through the optimizer update's arguments when the step
    # records one, else as the backward values of a parameter's shape that nothing reads
    entry = roofline_zoo.get("deit_small")
    model, inputs = entry.build(batch=1, device="cpu")
    grads = torch.autograd.grad(DefaultLoss()(model(*inputs)), list(model.parameters()))
    real = sum({id(g.untyped_storage()): g.untyped_storage().nbytes() for g in grads}.values())
    meta_model, meta_inputs = entry.build(batch=1, device="meta")
    for optimizer in (None, "adamw"):
        step = capture(meta_model, meta_inputs, mode="train", optimizer=optimizer)
        assert step_memory(step, "fp32").gradients_bytes == real == 4 * (step.trainable_parameters - 384)


def test_decoder_inference_keeps_a_kv_cache():
    # GPT-2 small: 12 causal layers, keys and values of 768 per token, bf16: 2 x 12 x batch x seq x 768 x 2 bytes
    model, inputs = roofline_zoo.get("gpt2").build(batch=2, seq=64)
    with_cache = step_memory(capture(model, inputs, mode="inference"), "bf16")
    assert with_cache.kv_cache_bytes == 2 * 12 * 2 * 64 * 768 * 2
    # an encoder has none, and training keeps none (the activations saved for backward hold them)
    model, inputs = roofline_zoo.get("bert_base").build(batch=2, seq=64)
    assert step_memory(capture(model, inputs, mode="inference"), "bf16").kv_cache_bytes == 0
    model, inputs = roofline_zoo.get("gpt2").build(batch=2, seq=64)
    assert step_memory(capture(model, inputs, mode="train"), "bf16").kv_cache_bytes == 0


def test_fp8_inference_stores_quantized_weights():
    """fp8 serving keeps matmul weights in fp8 (1 byte) and norms/embeddings in bf16, with no
    fp32 master: less than bf16, never more than fp32 (the old count had fp32 masters plus fp8
    copies). fp8 training keeps fp32 masters."""
    model = nn.Sequential(nn.Embedding(1000, 64), nn.Linear(64, 256), nn.LayerNorm(256), nn.Linear(256, 1000))
    step = capture(model, (torch.zeros(2, 16, dtype=torch.long),), mode="inference")
    fp8, bf16 = step_memory(step, "fp8"), step_memory(step, "bf16")
    expected = 1000 * 64 * 2 + (64 * 256 + 256) + 256 * 2 * 2 + (256 * 1000 + 1000)
    assert fp8.parameters_bytes == expected
    assert fp8.weight_copies_bytes == 0 and fp8.peak_bytes < bf16.peak_bytes
    train = capture(model, (torch.zeros(2, 16, dtype=torch.long),), mode="train", optimizer=None)
    assert step_memory(train, "fp8", optimizer="adamw").parameters_bytes == 4 * sum(p.numel() for p in model.parameters())
