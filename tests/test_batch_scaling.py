"""Steps at any batch from two captures (estimator.batch_scaling), against a real capture at a
third batch; max_batch and the cluster layout search with at most two captures per model."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import roofline_zoo
from estimator.batch_scaling import fit, steps_by_batch
from estimator.capture import capture
from estimator.cluster import predict_cluster
from estimator.cluster_search import search_layouts
from estimator.hardware import load_hardware
from estimator.memory import max_batch, step_memory
from estimator.parallel_layout import parse_layout
from estimator.precision import get_precision
from estimator.report import evaluate
from estimator.system import load_system
from models.llama import Llama, LlamaConfig

A100 = load_hardware("a100-80gb-sxm")
SMALL_LLAMA = LlamaConfig(vocab_size=256, max_positions=64, layers=2, heads=4, kv_heads=2, dim=64, ffn_dim=128)
# top-2 of 4 experts: batch x 16 tokens x 2 copies is a multiple of 4 at every batch, so no padding
SMALL_MOE = LlamaConfig(vocab_size=256, max_positions=64, layers=2, heads=4, kv_heads=2, dim=64, ffn_dim=128,
                        experts=4, experts_per_token=2)


class BatchNormMLP(nn.Module):
    """BatchNorm1d over the batch: its statistics are per feature, its activations per sample."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x)


class ClassToken(nn.Module):
    """A ViT's class token: at batch 1 its expand is no broadcast, and autograd records one op less."""

    def __init__(self):
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        return self.proj(torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1))


class PadsToThree(nn.Module):
    """Pads the batch to a multiple of 3: a size that is no power of the batch."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        return self.proj(F.pad(x, (0, 0, 0, -x.shape[0] % 3)))


def _zoo(name, **sizes):
    return lambda batch: roofline_zoo.get(name).build(batch=batch, **sizes)


def _meta(make_model, *shape, tokens=False):
    def build(batch):
        with torch.device("meta"):
            model = make_model()
            x = torch.zeros(batch, *shape, dtype=torch.long) if tokens else torch.empty(batch, *shape)
        return model, (x,)
    return build


CASES = {  # name: (build(batch) -> (model, inputs), mode)
    "resnet18-train": (_zoo("resnet18", image=32), "train"),
    "resnet18-inference": (_zoo("resnet18", image=32), "inference"),
    "gpt2-train": (_zoo("gpt2", seq=32), "train"),
    "gpt2-inference": (_zoo("gpt2", seq=32), "inference"),
    "llama-train": (_meta(lambda: Llama(SMALL_LLAMA), 16, tokens=True), "train"),
    "moe-train": (_meta(lambda: Llama(SMALL_MOE), 16, tokens=True), "train"),
    "batchnorm-train": (_meta(BatchNormMLP, 32), "train"),
}


def _capturer(case):
    build, mode = CASES[case]
    calls = []

    def make_step(batch):
        calls.append(batch)
        return capture(*build(batch), mode=mode, dispatch="cuda")
    return make_step, calls


@pytest.mark.parametrize("case", list(CASES))
def test_a_derived_step_is_the_capture_at_that_batch(case):
    """From batches 2 and 4, batch 6 (and 3, off the samples' multiples): the same ops on the same
    shapes and arguments, so the same memory (every part and the liveness peak) and the same time."""
    make_step, _ = _capturer(case)
    scaling = fit(make_step(2), make_step(4))
    assert scaling is not None and scaling.max_power == 1  # every size at most linear: memory affine
    for batch in (3, 6):
        derived, real = scaling.at(batch), make_step(batch)
        assert derived.batch == batch and derived.nodes == real.nodes
        for precision in ("fp32", "amp-bf16"):
            assert step_memory(derived, precision) == step_memory(real, precision)
        assert evaluate(derived, A100, "amp-bf16").totals() == evaluate(real, A100, "amp-bf16").totals()


def test_the_peak_is_affine_in_the_batch_where_every_size_is():
    """Each storage's bytes are affine in the batch, so the live bytes at each op are, and the
    peak (the largest of them) is affine wherever the same op holds it: from 4 to 8 to 12 here."""
    make_step, _ = _capturer("gpt2-train")
    scaling = fit(make_step(2), make_step(4))
    peaks = {b: step_memory(scaling.at(b), "fp32") for b in (4, 8, 12)}
    assert len({m.peak_node for m in peaks.values()}) == 1
    assert peaks[12].peak_bytes - peaks[8].peak_bytes == peaks[8].peak_bytes - peaks[4].peak_bytes > 0


def test_captures_that_differ_in_more_than_sizes_do_not_fit():
    cls = _meta(ClassToken, 3, 8)
    one, two, four = (capture(*cls(b), mode="train") for b in (1, 2, 4))
    assert len(one.nodes) != len(two.nodes) and fit(one, two) is None
    assert fit(two, four) is not None
    pads = _meta(PadsToThree, 8)
    assert fit(capture(*pads(2), mode="train"), capture(*pads(4), mode="train")) is None  # 3 and 6 rows


def test_steps_by_batch_captures_twice_or_falls_back_to_capturing():
    calls = []
    cls = _meta(ClassToken, 3, 8)

    def make_step(batch):
        calls.append(batch)
        return capture(*cls(batch), mode="train")

    step_at = steps_by_batch(make_step, known=make_step(1))  # (1, 2) differ: 2 and 4 instead
    assert step_at(9).batch == 9 and calls == [1, 2, 4]

    calls.clear()
    pads = _meta(PadsToThree, 8)
    step_at = steps_by_batch(lambda b: calls.append(b) or capture(*pads(b), mode="train"))
    assert step_at(5).batch == 5 and calls == [2, 4, 5]  # no scaling: each batch is captured


# ---- max_batch --------------------------------------------------------------------------------

@pytest.mark.parametrize("case, boundary", [("resnet18-train", 5), ("llama-train", 300)])
def test_max_batch_finds_the_boundary_of_real_captures_from_two(case, boundary):
    """The capacity lies between the real peaks at `boundary` and one more: the answer is
    `boundary`, from two captures (counted)."""
    make_step, calls = _capturer(case)
    peak = {b: step_memory(make_step(b), "amp-bf16", "adamw").peak_bytes for b in (boundary, boundary + 1)}
    calls.clear()
    capacity = (peak[boundary] + peak[boundary + 1]) // 2
    assert max_batch(make_step, capacity, "amp-bf16", "adamw") == boundary
    assert calls == [2, 4]


def test_max_batch_from_a_known_step_captures_once():
    make_step, calls = _capturer("gpt2-train")
    known = make_step(1)
    peak = {b: step_memory(make_step(b), "fp32", "adamw").peak_bytes for b in (40, 41)}
    calls.clear()
    assert max_batch(make_step, (peak[40] + peak[41]) // 2, "fp32", "adamw", known=known) == 40
    assert calls == [2]  # gpt2's batches 1 and 2 record the same ops


# ---- the cluster layout search ----------------------------------------------------------------

def test_layout_search_captures_twice_and_derived_micro_batches_predict_as_captures():
    make_step, calls = _capturer("llama-train")
    dgx, h100, bf16 = load_system("dgx-h100"), load_hardware("h100-sxm"), get_precision("amp-bf16")
    ranked = search_layouts(lambda micro, recompute: make_step(micro), dgx, h100, bf16, gpus=8, global_batch=64,
                            known=make_step(1))
    assert ranked and calls == [1, 2]
    assert {r.micro_batch for r in ranked} >= {1, 2, 4, 8}
    scaling = fit(make_step(2), make_step(4))
    for text in ("ddp", "tp=2,dp=4,sp", "tp=2,pp=2,dp=2,zero1"):
        layout = parse_layout(text, 8)
        derived, real = (predict_cluster(s, dgx, h100, bf16, layout) for s in (scaling.at(8), make_step(8)))
        assert derived.to_dict() == real.to_dict()
