"""The optimizer step, gradient accumulation and activation recomputation in a training step."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from estimator import estimate, load_hardware
from estimator.capture import capture
from estimator.errors import CaptureError, RooflineError
from estimator.optimizer import OPTIMIZERS, STATE_TENSORS, check_optimizer
from estimator.report import evaluate

H100 = load_hardware("h100-sxm")
# (FLOPs per element, tensors read per element, tensors written per element), from the update formulas
PER_ELEMENT = {"sgd": (2, 2, 1), "sgd-momentum": (4, 3, 2), "adam": (13, 4, 3), "adamw": (14, 4, 3)}


def _model() -> nn.Module:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    model[0].bias.requires_grad_(False)  # a frozen parameter the optimizer must not touch
    return model


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("precision, element_bytes", [("fp32", 4), ("amp-bf16", 4), ("bf16", 2)])
def test_update_costs_follow_the_formulas(name, precision, element_bytes):
    step = capture(_model(), (torch.randn(8, 16),), mode="train", optimizer=name)
    report = evaluate(step, H100, precision)
    updates = [(n, c) for n, c in zip(step.nodes, report.costs) if n.phase == "optimizer"]
    assert len(updates) == 1
    node, cost = updates[0]
    trainable = 16 * 32 + 32 * 4 + 4  # the frozen first bias is left out
    assert step.trainable_parameters == trainable
    assert sum(t.numel for t in node.args[0]) == trainable
    flops, reads, writes = PER_ELEMENT[name]
    assert (cost.flops, cost.bytes_read, cost.bytes_written, cost.op_class) == \
        (flops * trainable, reads * element_bytes * trainable, writes * element_bytes * trainable, "optimizer")
    assert len(node.args[2] or []) == (STATE_TENSORS[name] and len(node.args[0]))  # state tensors per parameter
    t = report.totals()
    assert t["optimizer"] == name and t["optimizer_flops"] == cost.flops


def test_no_optimizer_and_inference_have_no_update():
    assert not [n for n in capture(_model(), (torch.randn(2, 16),), optimizer=None).nodes if n.phase == "optimizer"]
    step = capture(_model(), (torch.randn(2, 16),), mode="inference")
    assert step.optimizer is None and not [n for n in step.nodes if n.phase == "optimizer"]


def test_accumulation_repeats_forward_and_backward_but_not_the_update():
    model, x = _model(), (torch.randn(8, 16),)
    one = estimate(model, x, hardware=H100, precision="amp-bf16").totals()
    four = estimate(model, x, hardware=H100, precision="amp-bf16", accumulate=4).totals()
    for key in ("forward_flops", "backward_flops", "forward_bytes", "backward_time_s"):
        assert four[key] == pytest.approx(4 * one[key]), key
    assert four["optimizer_time_s"] == pytest.approx(one["optimizer_time_s"])
    assert four["samples_per_step"] == 32 and one["samples_per_step"] == 8
    # the step partitions into its phases and the final sync; micro-batches after the first can
    # only gain from the host running ahead of the device (estimator.timeline), never lose
    assert four["step_time_s"] == pytest.approx(four["forward_time_s"] + four["backward_time_s"]
                                                + four["optimizer_time_s"] + four["timeline"]["sync_s"])
    assert four["step_time_s"] <= 4 * (one["forward_time_s"] + one["backward_time_s"]) + one["optimizer_time_s"] \
        + one["timeline"]["sync_s"] + 1e-12
    assert four["throughput_samples_per_s"] == pytest.approx(32 / four["step_time_s"])


def test_bad_optimizer_and_accumulation():
    with pytest.raises(RooflineError, match="unknown optimizer 'lamb'; expected one of sgd, sgd-momentum"):
        check_optimizer("lamb")
    with pytest.raises(CaptureError, match="accumulate must be a positive integer"):
        capture(_model(), (torch.randn(2, 16),), accumulate=0)


def test_cli_flags(capsys):
    from estimator.cli import main
    assert main(["estimate", "resnet18", "--train", "--accumulate", "0"]) == 2
    assert "--accumulate must be at least 1" in capsys.readouterr().err
    assert main(["estimate", "resnet18", "--accumulate", "2"]) == 2
    assert "--accumulate and --recompute apply to training steps; add --train" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["estimate", "resnet18", "--train", "--optimizer", "lamb"])
    assert info.value.code == 2 and "invalid choice: 'lamb'" in capsys.readouterr().err
    assert main(["estimate", "resnet18", "--train", "--optimizer", "sgd-momentum", "--accumulate", "2",
                 "--batch", "2", "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "sgd-momentum:" in out and "2 micro-batches of 2: 4 samples per optimizer step" in out


def test_recompute_reruns_each_blocks_forward_in_the_backward():
    import roofline_zoo
    from estimator.recompute import checkpoint_blocks
    model, inputs = roofline_zoo.get("gpt2").build(batch=1, seq=32)
    assert len(checkpoint_blocks(model)) == 12  # GPT-2 small's transformer blocks
    plain = capture(model, inputs, optimizer=None)
    again = capture(model, inputs, optimizer=None, recompute=True)
    assert again.recompute and not plain.recompute
    def forward_work(step):  # the forward's ops that cost something (checkpoint adds detach views)
        report = evaluate(step, H100, "fp32")
        return [n.name for n, c in zip(step.nodes, report.costs) if n.phase == "forward" and c.op_class != "free"]
    assert forward_work(again) == forward_work(plain)
    # the backward holds the blocks' forward matmuls a second time, owned by the blocks' modules
    def backward_linear_flops(step):
        report = evaluate(step, H100, "fp32")
        return sum(c.flops for n, c in zip(step.nodes, report.costs)
                   if n.phase == "backward" and n.module_path.startswith("h.") and n.name == "aten.addmm.default")
    assert backward_linear_flops(plain) == 0  # plain backward: mm only
    recomputed = backward_linear_flops(again)
    forward_linear = sum(c.flops for n, c in zip(plain.nodes, evaluate(plain, H100, "fp32").costs)
                         if n.phase == "forward" and n.module_path.startswith("h.") and n.name == "aten.addmm.default")
    # non-reentrant checkpointing stops once the saved tensors are rebuilt: the last projection of a
    # block is not needed again, so between half and all of the blocks' forward linears re-run
    assert 0.5 * forward_linear <= recomputed <= forward_linear
    # the model's own parameters are back to normal after the capture
    assert "forward" not in vars(checkpoint_blocks(model)[0])


def test_recompute_without_blocks_is_a_clear_error():
    with pytest.raises(CaptureError, match="--recompute found no repeated blocks in Sequential"):
        capture(nn.Sequential(nn.Linear(4, 4)), (torch.randn(2, 4),), recompute=True)


def test_state_made_directly_has_the_layout_zeros_like_gives():
    """The optimizer's state tensors, made without a dispatched factory call (estimator.optimizer):
    the shape, strides, dtype and device torch.zeros_like and torch.ones give, for contiguous,
    transposed and sliced (not dense) fake parameters, under FakeTensorMode or outside it."""
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    from estimator.optimizer import _moment_like, _step_count

    def layout(t):
        return tuple(t.shape), t.stride(), t.dtype, t.device, type(t)

    mode = FakeTensorMode()
    with mode:
        params = [torch.empty(6, 4), torch.empty(6, 4).t(), torch.empty(6, 4)[:, ::2],
                  torch.empty(3, dtype=torch.bfloat16),
                  torch.empty(2, 3, 5).permute(2, 0, 1)]
    for p in params:
        with mode:
            expected_moment, expected_step = torch.zeros_like(p), torch.ones((), device=p.device)
        for context in (mode, torch.no_grad()):  # inside the mode and outside it
            with context:
                moment, step = _moment_like(p), _step_count(p)
            assert layout(moment) == layout(expected_moment) and type(moment) is FakeTensor
            assert layout(step) == layout(expected_step)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fused_updates_by_formula_record_what_fake_tensor_records(monkeypatch, name):
    """The fused updates by formula (estimator.data_dependent): the same step node for node as
    FakeTensorMode's own dispatch gives, and no real kernel run: _fused_sgd_ has no meta kernel,
    and FakeTensor's fallback would run it on real zero-filled copies of every parameter."""
    import torch._subclasses.fake_tensor as fake_tensor

    from estimator import data_dependent

    def no_fallback(*args, **kwargs):
        raise AssertionError("FakeTensor ran a real kernel for the optimizer")

    def nodes(step):
        return [(n.op, n.phase, n.args, n.inputs, n.outputs) for n in step.nodes]

    with monkeypatch.context() as patch:
        patch.setattr(fake_tensor, "run_fallback_kernel", no_fallback)
        ours = capture(_model(), (torch.randn(8, 16),), mode="train", optimizer=name)
    for op in (torch.ops.aten._fused_adamw_.default, torch.ops.aten._fused_adam_.default,
               torch.ops.aten._fused_sgd_.default):
        monkeypatch.delitem(data_dependent.SHAPES_BY_FORMULA, op)
    theirs = capture(_model(), (torch.randn(8, 16),), mode="train", optimizer=name)
    assert nodes(ours) == nodes(theirs) and any(n.phase == "optimizer" for n in ours.nodes)
