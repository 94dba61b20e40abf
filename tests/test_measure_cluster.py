"""Data-parallel step timing (estimator.measure_cluster) and the loopback all_reduce probe
(estimator.network_probes), on 2 spawned CPU processes with gloo.

Each launch costs a few seconds (spawning, importing torch, DDP's import of torch._dynamo), so
the model is small: resnet18 at batch 2 per process, 32x32 images (11.7 M parameters; a step
takes 0.3-0.7 s under DDP or FSDP on a 2-core VM). Only that the numbers exist
and are sane is checked: timings are not pass/fail material (bench/ is).
"""
from __future__ import annotations

import math
import time

import pytest

from estimator.deadline import Deadline
from estimator.distributed_launch import launch
from estimator.errors import RooflineError, UnknownModelError
from estimator.measure_cluster import ClusterMeasurement, measure_cluster
from estimator.network_probes import measure_loopback_network
from estimator.system import parse_system, write_system_yaml


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_process_training_steps(parallel):
    m = measure_cluster("resnet18", 2, parallel, 2, image=32, warmup=1, runs=2)
    assert isinstance(m, ClusterMeasurement)
    assert (m.model, m.nproc, m.parallel, m.batch_per_process, m.backend) == ("resnet18", 2, parallel, 2, "gloo")
    assert len(m.step_times_s) == 2 and all(t > 0 for t in m.step_times_s)
    assert min(m.step_times_s) <= m.step_s <= max(m.step_times_s)  # the median of the timed steps
    assert m.threads_per_process >= 1 and m.spread >= 0
    assert m.to_dict()["step_times_s"] == list(m.step_times_s)


def test_loopback_probe_writes_the_system_schema(tmp_path):
    lines: list[str] = []
    run = Deadline(0.0)  # already over: the two smallest sizes still run (a line needs two points)
    # sizes 64x apart: the larger call's transfer time (~10 ms at a few GB/s) stands above the
    # scheduling noise of a shared 2-core machine, which once made 1 MiB and 8 MiB tie
    doc = measure_loopback_network(2, sizes_bytes=(512 << 10, 32 << 20, 64 << 20), repeats=3, deadline=run,
                                   say=lines.append)
    assert set(doc) == {"id", "name", "chip", "gpus_per_node", "network", "source"}
    assert set(doc["network"]) == {"base_latency_us", "intra_node"}
    intra = doc["network"]["intra_node"]
    assert set(intra) == {"name", "link_gbps", "bus_bandwidth_gbps", "hop_latency_us", "source"}
    assert (doc["id"], doc["chip"], doc["gpus_per_node"]) == ("local", "local", 2)
    assert intra["bus_bandwidth_gbps"] > 0 and math.isfinite(intra["bus_bandwidth_gbps"])
    assert intra["link_gbps"] == intra["bus_bandwidth_gbps"] and intra["hop_latency_us"] == 0.0
    assert doc["network"]["base_latency_us"] >= 1
    # two measured sizes, one progress line each; the 64 MiB one cut by the deadline
    assert sum("all_reduce 512 KiB" in line or "all_reduce 32 MiB" in line for line in lines) == 2
    assert run.cuts == ["network: all_reduce sizes 64 MiB skipped"]
    # the colleague's loader accepts it as written
    write_system_yaml(doc, tmp_path / "local.yaml")
    system = parse_system(tmp_path / "local.yaml")
    assert system.intra.bus_bytes_per_s == pytest.approx(intra["bus_bandwidth_gbps"] * 1e9)


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="resnet18", nproc=1, parallel="ddp"), "nproc must be an integer from 2 to 64"),
    (dict(model="resnet18", nproc=65, parallel="ddp"), "got 65"),
    (dict(model="resnet18", nproc=2, parallel="tp"), "unknown parallelism 'tp'; expected one of ddp, fsdp"),
    (dict(model="resnet19", nproc=2, parallel="ddp"), "did you mean 'resnet18'"),
])
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(RooflineError) as info:
        measure_cluster(batch=2, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)
    if kwargs["model"] == "resnet19":
        assert isinstance(info.value, UnknownModelError)


def _fails_on_rank_1(rank, nproc, say):
    if rank == 1:
        raise ValueError("bad shard\nsecond line")
    import torch.distributed as dist
    dist.barrier()  # waits for rank 1, which never comes: the parent must kill this rank


def _sleeps(rank, nproc, say):
    time.sleep(60)


def test_a_failing_rank_is_one_error_naming_it():
    start = time.monotonic()
    with pytest.raises(RooflineError, match=r"^probe failed on rank 1 of 2: ValueError: bad shard$"):
        launch(_fails_on_rank_1, 2, what="probe", timeout_s=60)
    assert time.monotonic() - start < 30  # rank 0, stuck in the barrier, was killed, not waited for


def test_a_timeout_kills_the_ranks():
    with pytest.raises(RooflineError, match=r"probe timed out after 1 s .*the processes were killed"):
        launch(_sleeps, 2, what="probe", timeout_s=1)


def test_measure_nproc_sets_measured_beside_predicted(tmp_path, monkeypatch, capsys):
    """`roofline measure --nproc 2` runs the real data-parallel steps, the one-process baseline and
    the local prediction. The local chip and network stand in for calibrated ones (a catalog CPU,
    a loopback line through two points): this checks the plumbing, bench figures the accuracy."""
    import json
    import shutil

    from estimator.cli import main
    from estimator.hardware import catalog_dir
    from estimator.network_probes import system_doc

    chip = tmp_path / "local.yaml"
    shutil.copy(catalog_dir() / "xeon-8480.yaml", chip)
    network = tmp_path / "local-system.yaml"
    write_system_yaml(system_doc(2, {1 << 20: [0.002], 16 << 20: [0.02]}), network)
    monkeypatch.setenv("ROOFLINE_LOCAL_HARDWARE", str(chip))
    monkeypatch.setenv("ROOFLINE_LOCAL_SYSTEM", str(network))
    out = tmp_path / "rows.json"
    code = main(["measure", "--model", "resnet18", "--batch", "2", "--image", "32", "--train", "--nproc", "2",
                 "--warmup", "1", "--runs", "1", "--json", str(out)])
    assert code == 0
    (row,) = json.loads(out.read_text())
    assert row["nproc"] == 2 and row["parallel"] == "ddp"
    assert row["step_s"] > 0 and row["one_process_step_s"] > 0 and row["predicted_step_s"] > 0
    assert row["error"] == pytest.approx(row["predicted_step_s"] / row["step_s"] - 1)
    # on a CPU the all-reduce runs on the cores that compute: all of it is exposed
    assert row["predicted_communication_exposed_s"] == pytest.approx(row["predicted_communication_s"], rel=1e-6)
    assert "added by the cluster" in capsys.readouterr().out
