"""estimator.host_probes: the `host:` mapping calibrate writes, and its sampling mechanism.

The quick run takes a few seconds; its figures are checked against bounds wide enough for any
machine (a tiny CPU op costs 0.1 to 1000 us on anything from a fast desktop to a loaded 2-core
VM); timings proper belong in bench/.
"""
from __future__ import annotations

import math

import pytest
import torch

from estimator import host_probes as hp
from estimator.capture import capture
from estimator.errors import HardwareSpecError
from estimator.execution import eager_host_costs
from estimator.host import IN_SITU_KEYS, load_host, parse_host
from estimator.precision import PRECISIONS
from estimator.roofline import step_costs


@pytest.fixture(scope="module")
def host() -> dict:
    threads = torch.get_num_threads()
    host = hp.measure_host("cpu", quick=True)
    assert torch.get_num_threads() == threads  # the probes' single intra-op thread is undone
    return host


def test_mapping_has_exactly_the_keys(host):
    assert list(host) == ["name", *hp.HOST_KEYS, *IN_SITU_KEYS, "source"]
    assert all(isinstance(host[k], float) and math.isfinite(host[k]) and host[k] > 0 for k in IN_SITU_KEYS)
    assert all(isinstance(host[k], float) and math.isfinite(host[k]) and host[k] > 0 for k in hp.HOST_KEYS)
    assert all(host[k] == float(f"{host[k]:.3g}") for k in hp.HOST_KEYS)  # 3 significant digits


def test_figures_are_plausible(host):
    assert 0.1 < host["op_us"] < 1000
    assert 0.01 < host["view_us"] < 1000
    assert 0 < host["conv_op_us"] < 10_000
    assert 0 < host["module_call_us"] < 1000
    assert 0 < host["autograd_us"] < 1000
    assert 0.1 < host["backward_op_us"] < 1000
    assert 0 < host["autocast_us"] < 100
    assert 0 < host["step_sync_us"] < 1000
    # an AdamW step issues several aten ops per parameter on CPU (foreach=False)
    assert 0.1 < host["optimizer_param_us"] < 10_000
    assert host["graph_launch_us"] == host["op_us"]  # no CUDA graphs on CPU


def test_source_says_how_each_figure_was_taken(host):
    source = host["source"]
    assert source[0].startswith("measured by roofline calibrate on ") and "quick host probes" in source[0]
    for key in hp.HOST_KEYS:
        assert any(line.startswith(f"{key}:") for line in source), key
    assert any("no CUDA graphs on CPU" in line for line in source)
    assert any(line.startswith("in_situ_forward, in_situ_backward:") for line in source)


def test_rounds_interleave_samplers_and_take_a_low_quantile():
    order = []
    values = {"a": iter([5.0, 1.0, 3.0, 2.0, 4.0]), "b": iter([10.0] * 5)}

    def sampler(key):
        def sample():
            order.append(key)
            return next(values[key])
        return sample

    rounds = []
    q = hp.take_rounds({"a": sampler("a"), "b": sampler("b")}, 5, on_round=lambda: rounds.append(1))
    assert order == ["a", "b"] * 5 and len(rounds) == 5
    assert q == {"a": 1.0, "b": 10.0}  # 20th percentile of 5 samples: the lowest (nearest rank, lower)
    assert hp._quantile([4.0, 3.0, 2.0, 1.0, 0.0, 9.0, 8.0, 7.0, 6.0, 5.0]) == 1.0  # rank int(0.2 * 9) = 1


def test_differences_at_or_below_zero_are_floored():
    assert hp._positive(-0.3) == hp.FLOOR_US and hp._positive(0.0) == hp.FLOOR_US
    assert hp._positive(2.5) == 2.5


def test_summary_line(host):
    line = hp.host_summary(host)
    assert line.startswith("Host: op ") and "backward op" in line and "; in situ x" in line


def test_in_situ_multipliers_scale_forward_and_backward_host_costs():
    """in_situ_forward multiplies every forward op's host cost, in_situ_backward every backward
    op's; the optimizer's bookkeeping (measured whole by its own probe) is left alone."""
    model, x = hp.in_situ_models(torch.device("cpu"))["transformer"]
    step = capture(model, (x,), mode="train", optimizer="adamw")
    costs = step_costs(step, PRECISIONS["fp32"])
    base = {k: v for k, v in load_host("generic-server").to_dict().items()}
    mapping = {k: base[k.removesuffix("_us") + "_s"] * 1e6 for k in hp.HOST_KEYS}
    plain = eager_host_costs(step, costs, parse_host(mapping, "test"), PRECISIONS["fp32"])
    scaled = eager_host_costs(step, costs, parse_host(mapping | {"in_situ_forward": 2.0, "in_situ_backward": 3.0},
                                                       "test"), PRECISIONS["fp32"])
    for node, a, b in zip(step.nodes, plain, scaled):
        factor = {"backward": 3.0, "optimizer": 1.0}.get(node.phase, 2.0)
        assert b == pytest.approx(factor * a), node.phase
    assert parse_host(mapping, "test").in_situ_forward == 1.0  # absent: the hot-loop figures as they are


@pytest.mark.parametrize("bad", [0, -1.5, "fast", True, float("nan")])
def test_bad_in_situ_multiplier_is_a_clear_error(bad):
    mapping = {k: 1.0 for k in hp.HOST_KEYS} | {"in_situ_backward": bad}
    with pytest.raises(HardwareSpecError, match="in_situ_backward.*multiplier > 0"):
        parse_host(mapping, "local.yaml")


def test_catalog_hosts_carry_the_measured_multipliers_with_their_source():
    from estimator.host import host_ids
    for host_id in host_ids():
        host = load_host(host_id)
        assert host.in_situ_forward > 1 and host.in_situ_backward > 1
        assert any(line.startswith("in_situ_forward") for line in host.source), host_id
