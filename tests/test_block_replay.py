"""Block replay (estimator.block_replay): capturing a run of identical blocks once gives the
same step as capturing every block.

Each case captures a small model twice, with replay and with `replay_blocks=False`, and asserts
equality of what every later stage reads: the OpNode tuple (op, phase, module path and type,
args and their metadata, in order), the fx graph (node kinds, targets and names in order, and
its edges as index pairs), the roofline totals on an A100 and the memory estimate's peak (which
follows node order). It also asserts how many blocks were replayed, so a case that silently
stops replaying fails: n twins in a row replay n - 2 (the first and last run for real).
"""
from __future__ import annotations

import pytest
import roofline_zoo
import torch
from roofline_zoo.gpt2 import GPT2, GPT2Config
from roofline_zoo.llama import Llama, LlamaConfig
from roofline_zoo.vit import VisionTransformer, ViTConfig
from torch import nn

from estimator import capture, evaluate, load_hardware
from estimator.block_replay import same_tree, twin_runs
from estimator.memory import step_memory

A100 = load_hardware("a100-80gb-sxm")


def graph_of(step) -> tuple[list, list]:
    nodes = list(step.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    kinds = [(n.op, n.target, n.name) for n in nodes]
    edges = [(index[a], index[n]) for n in nodes for a in n.all_input_nodes]
    return kinds, edges


def assert_same_step(model, inputs, mode, replayed: int, **options) -> None:
    full = capture(model, inputs, mode, replay_blocks=False, **options)
    fast = capture(model, inputs, mode, **options)
    assert fast.extra["replayed_blocks"] == replayed
    assert full.extra["replayed_blocks"] == 0
    assert fast.nodes == full.nodes
    assert graph_of(fast) == graph_of(full)
    assert evaluate(fast, A100, "fp32").totals() == evaluate(full, A100, "fp32").totals()
    assert (step_memory(fast, "fp32", optimizer=fast.optimizer).peak_bytes
            == step_memory(full, "fp32", optimizer=full.optimizer).peak_bytes)


def small_llama(layers: int = 5) -> Llama:
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=128, max_positions=64, layers=layers, heads=4, kv_heads=2, dim=32,
                             ffn_dim=64))


IDS = (torch.zeros(2, 16, dtype=torch.long),)


@pytest.mark.parametrize("mode", ["train", "inference"])
def test_llama_replays_its_middle_layers(mode):
    # 5 decoder layers: layers 1..3 replayed, 0 (forward template) and 4 (backward template) run
    assert_same_step(small_llama(), IDS, mode, replayed=3)


@pytest.mark.parametrize("options", [{"accumulate": 4}, {"optimizer": "sgd"}, {"optimizer": None},
                                     {"dispatch": "cuda"}])
def test_llama_train_variants(options):
    assert_same_step(small_llama(), IDS, "train", replayed=3, **options)


def test_recompute_records_every_block():
    # checkpointed blocks re-run their forward inside the backward: no replay
    assert_same_step(small_llama(), IDS, "train", replayed=0, recompute=True)


def test_frozen_blocks_replay_without_backward():
    model = small_llama()
    for p in model.layers.parameters():
        p.requires_grad_(False)
    assert_same_step(model, IDS, "train", replayed=3)


@pytest.mark.parametrize("mode", ["train", "inference"])
def test_gpt2(mode):
    model = GPT2(GPT2Config(vocab_size=96, max_positions=32, layers=4, heads=2, dim=16))
    assert_same_step(model, (torch.zeros(2, 8, dtype=torch.long),), mode, replayed=2)


@pytest.mark.parametrize("mode", ["train", "inference"])
def test_vit(mode):
    model = VisionTransformer(ViTConfig(image_size=32, patch_size=8, layers=4, heads=2, dim=16, mlp_dim=32,
                                        num_classes=10))
    assert_same_step(model, (torch.randn(2, 3, 32, 32),), mode, replayed=2)


@pytest.mark.parametrize("mode", ["train", "inference"])
def test_resnet_stages(mode):
    # resnet50 stages of 3, 4, 6, 3 bottlenecks; each stage's first has a downsample (not a
    # twin), so the twins are 2, 3, 5, 2 in a row and stages 2 and 3 replay 1 + 3. Train-mode
    # batch norm updates its running statistics in place (buffers re-bound in the graph).
    model, inputs = roofline_zoo.get("resnet50").build(batch=2, image=64)
    assert_same_step(model, inputs, mode, replayed=4)


class Layer(nn.Module):
    def __init__(self, index: int = 0):
        super().__init__()
        self.index = index
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return x + self.fc(x).relu()


class Stack(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.stem = nn.Linear(8, 8)  # the first layer's input needs a gradient, as the others'
        self.layers = nn.ModuleList(layers)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


X = (torch.randn(4, 8),)


def test_twins_that_differ_in_an_attribute_are_not_twins():
    # a per-layer index (transformers' layer_idx) may change what a layer runs: record each
    model = Stack([Layer(i) for i in range(5)])
    assert twin_runs(model) == []
    assert not same_tree(model.layers[0], model.layers[1])
    assert_same_step(model, X, "train", replayed=0)
    assert [len(r) for r in twin_runs(Stack([Layer() for _ in range(5)]))] == [5]


def test_twins_with_a_hook_are_not_twins():
    model = Stack([Layer() for _ in range(5)])
    model.layers[2].register_forward_hook(lambda *a: None)
    assert [len(r) for r in twin_runs(model)] == []  # 0, 1 then 3, 4: runs of two


def test_parameters_of_another_shape_split_a_run():
    model = Stack([Layer() for _ in range(4)] + [nn.Linear(8, 8)])
    model.layers[0].fc = nn.Linear(8, 8, bias=False)
    assert [len(r) for r in twin_runs(model)] == [3]
    assert_same_step(model, X, "train", replayed=1)


class Tapped(Stack):
    """Reads every layer's output outside the chain (as output_hidden_states does)."""

    def forward(self, x):
        x, taps = self.stem(x), []
        for layer in self.layers:
            x = layer(x)
            taps.append(x)
        return self.head(x) + sum(t.sum() for t in taps)


def test_outputs_read_outside_the_chain_fall_back():
    # the taps' gradients join each layer's backward: replay is abandoned and every layer recorded
    assert_same_step(Tapped([Layer() for _ in range(5)]), X, "train", replayed=0)


class FirstCall(nn.Module):
    """Runs an extra op on its first call of a step (hidden state: a class-level call counter)."""

    calls = 0

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        FirstCall.calls += 1
        y = x + self.fc(x)
        return y.exp() if FirstCall.calls == 1 else y


class Counted(Stack):
    def forward(self, x):
        FirstCall.calls = 0
        return super().forward(x)


def test_a_first_call_that_differs_falls_back():
    # layer 0 records the exp, the last layer does not: its ops differ from the template's,
    # and the step is captured again without replay
    assert_same_step(Counted([FirstCall() for _ in range(5)]), X, "train", replayed=0)


def test_parameters_shared_between_twins_fall_back():
    # one weight for every layer (ALBERT-style): its gradient adds up across layers
    layers = [Layer() for _ in range(5)]
    for layer in layers[1:]:
        layer.fc.weight = layers[0].fc.weight
    assert_same_step(Stack(layers), X, "train", replayed=0)


class Reversed(Stack):
    def forward(self, x):
        x = self.stem(x)
        for layer in reversed(self.layers):
            x = layer(x)
        return self.head(x)


class Twice(Stack):
    def forward(self, x):
        x = self.stem(x)
        for _ in range(2):
            for layer in self.layers:
                x = layer(x)
        return self.head(x)


@pytest.mark.parametrize("cls", [Reversed, Twice])
def test_twins_called_out_of_order_fall_back(cls):
    # reversed: no twin is called in order, nothing replays; twice: the second pass finds
    # replayed twins called again, and the step is captured again without replay
    assert_same_step(cls([Layer() for _ in range(5)]), X, "train", replayed=0)
