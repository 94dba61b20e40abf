"""`roofline calibrate` on tiny sizes: the document's structure, not its timings.

The tiny plan runs every measurement (overhead, GEMM sweep with dtype probes, conv, copy/triad,
elementwise curve, host costs) on sizes far too small to trust, in a few seconds; timing values
are only checked to be positive (timings belong in bench/calibrate_repeatability.py).
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from estimator import calibrate as cal
from estimator.host import HOST_KEYS, IN_SITU_KEYS

TOP_KEYS = {"id", "name", "vendor", "kind", "peak_tflops", "memory", "cache_mb", "kernel_overhead_us",
            "achievable", "host", "source", "notes"}


@pytest.fixture(scope="module")
def doc() -> dict:
    return cal.calibrate("cpu", plan="tiny")


def _is_plain(value) -> bool:
    """Only what yaml.safe_dump writes without tags: dict, list, str, int, float, bool, None."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_document_has_exactly_the_schema_keys(doc):
    assert set(doc) <= TOP_KEYS and set(doc) >= TOP_KEYS - {"cache_mb"}
    assert doc["id"] == "local" and doc["kind"] == "cpu"
    assert doc["name"].endswith("(measured)") and doc["vendor"]
    assert set(doc["peak_tflops"]) == {"matrix", "vector"}
    assert set(doc["peak_tflops"]["vector"]) == {"fp32"}
    assert "fp32" in doc["peak_tflops"]["matrix"]
    assert set(doc["peak_tflops"]["matrix"]) <= {"fp32", "bf16", "fp16"}  # CPU dtypes; tf32 only on CUDA
    assert set(doc["memory"]) == {"bandwidth_gbps", "capacity_gb"}
    assert set(doc["achievable"]) == {"matrix", "vector", "memory", "curves", "source"}
    assert set(doc["achievable"]["curves"]) == {"matrix", "conv", "memory"}
    assert set(doc["host"]) == {"name", *HOST_KEYS, *IN_SITU_KEYS, "source"}
    assert _is_plain(doc)


def test_figures_positive_and_peak_is_fp32_vector(doc):
    numbers = [*doc["peak_tflops"]["matrix"].values(), *doc["peak_tflops"]["vector"].values(),
               doc["memory"]["bandwidth_gbps"], doc["memory"]["capacity_gb"], doc["kernel_overhead_us"]]
    assert all(isinstance(x, float) and math.isfinite(x) and x > 0 for x in numbers)
    # the vector fp32 roof is the measured fp32 GEMM peak (documented in the notes)
    assert doc["peak_tflops"]["vector"]["fp32"] == doc["peak_tflops"]["matrix"]["fp32"]
    assert doc["achievable"]["matrix"] == doc["achievable"]["vector"] == doc["achievable"]["memory"] == 1.0


def test_host_mapping_has_exactly_the_host_keys(doc):
    host = doc["host"]
    assert set(host) == {"name", *HOST_KEYS, *IN_SITU_KEYS, "source"}  # the keys of the host schema (estimator.host)
    assert {"op_us", "view_us", "autograd_us", "backward_op_us", "autocast_us", "module_call_us",
            "step_sync_us", "optimizer_param_us", "graph_launch_us"} <= set(HOST_KEYS)
    assert all(isinstance(host[k], float) and math.isfinite(host[k]) and host[k] > 0 for k in HOST_KEYS)
    assert "roofline calibrate" in host["name"]
    assert isinstance(host["source"], list) and all(isinstance(line, str) for line in host["source"])
    assert any(line.startswith("op_us:") for line in host["source"])


def test_curves_ascending_with_fractions_in_unit_interval(doc):
    for name, curve in doc["achievable"]["curves"].items():
        assert curve, name
        works = [w for w, _ in curve]
        assert all(isinstance(w, float) and w > 0 for w in works), name
        assert all(b > a for a, b in zip(works, works[1:])), f"{name} not strictly ascending: {works}"
        assert all(isinstance(f, float) and 0 < f <= 1 for _, f in curve), name
    # the matrix curve is relative to the best GEMM median, so its best point is exactly 1
    assert max(f for _, f in doc["achievable"]["curves"]["matrix"]) == 1.0
    # work of each curve follows its formula: 2 N^3, conv_flops, 3 x array bytes
    tiny = cal.PLANS["tiny"]
    assert [w for w, _ in doc["achievable"]["curves"]["matrix"]] == [2.0 * n ** 3 for n in tiny.cpu_gemm_sizes]
    assert [w for w, _ in doc["achievable"]["curves"]["conv"]] == sorted(
        float(cal.conv_flops(b, p)) for b, p in tiny.conv_shapes)
    assert doc["achievable"]["curves"]["memory"][-1][0] == 3.0 * tiny.min_array_bytes


def test_notes_carry_each_measurement_with_its_spread(doc):
    notes = doc["notes"]
    assert any(n.startswith("GEMM fp32 (cpu_blas): peak") and "spread" in n for n in notes)
    for prefix in ("memory bandwidth:", "kernel overhead:", "conv curve:"):
        assert any(n.startswith(prefix) and "spread" in n for n in notes), prefix
    assert any("vector.fp32 is the measured fp32 GEMM peak" in n for n in notes)
    assert f"{torch.get_num_threads()} threads" in doc["source"][0]
    assert "roofline calibrate" in doc["achievable"]["source"][0]


def test_summary_lines(doc):
    lines = cal.summary_lines(doc)
    peak = doc["peak_tflops"]["matrix"]["fp32"]
    peak_line = next(line for line in lines if line.startswith("Peak:") and "fp32" in line)
    assert peak_line.startswith("Peak: ") and " TFLOPS (cpu_blas fp32, N=" in peak_line
    assert int(peak_line.rsplit("N=", 1)[1].rstrip(")")) in cal.PLANS["tiny"].cpu_gemm_sizes
    assert float(peak_line.split()[1]) == pytest.approx(peak, rel=0.05)
    assert any(line.startswith("Bandwidth:") and "GB/s" in line for line in lines)
    assert any(line.startswith("Overhead:") and " us " in line for line in lines)
    assert any(line.startswith("Host: op ") and " us; in situ x" in line for line in lines)
    assert any(line.startswith("Spreads") for line in lines)


def test_write_hardware_yaml_round_trips(doc, tmp_path: Path):
    path = tmp_path / "nested" / "dir" / "local.yaml"
    cal.write_hardware_yaml(doc, path)
    text = path.read_text()
    assert text.startswith("# ") and "roofline calibrate" in text.splitlines()[0]
    assert yaml.safe_load(text) == doc


def test_written_yaml_loads_as_hardware(doc, tmp_path: Path):
    """The loader's strict schema accepts what calibrate writes."""
    from estimator.hardware import parse_hardware

    path = tmp_path / "local.yaml"
    cal.write_hardware_yaml(doc, path)
    hw = parse_hardware(path)
    assert hw.id == "local" and hw.kind == "cpu"
    assert hw.matrix_flops_per_s["fp32"] == pytest.approx(doc["peak_tflops"]["matrix"]["fp32"] * 1e12)
    assert hw.memory_bytes_per_s == pytest.approx(doc["memory"]["bandwidth_gbps"] * 1e9)
    assert hw.host is not None and hw.host.op_s == pytest.approx(doc["host"]["op_us"] * 1e-6)


def test_helpers_on_explicit_sizes():
    plan = cal.PLANS["tiny"]
    timer = cal.Timer("cpu")
    gemm = cal.measure_gemm(cal.gemm_specs("cpu")[0], "cpu", (16, 32), plan, timer)
    assert set(gemm) == {16, 32} and all(cal.gemm_tflops(n, s) > 0 for n, s in gemm.items())
    st = gemm[32]
    assert st.count == plan.gemm_rounds * plan.repeats
    assert st.median_s > 0 and st.spread >= 0 and st.drift >= 0 and st.inner >= 1
    mem = cal.measure_memory("cpu", 1 << 20, (4096,), plan, timer)
    assert sorted(mem.curve) == [4096, 1 << 20]
    assert mem.copy_gbps > 0 and mem.triad_gbps > 0 and mem.best[0] in ("copy", "triad")
    conv = cal.measure_conv("cpu", ((1, 4),), plan, timer)
    assert conv[(1, 4)].median_s > 0
    assert cal.measure_overhead("cpu", plan, timer).median_s > 0


def test_interleaving_spreads_rounds_evenly():
    order = []

    class Fake(cal.Bench):
        def prepare(self):
            pass

        def take_round(self):
            order.append(self.name)
            self.done += 1

    a = Fake("a", {}, cal.Timer("cpu"), rounds=4, repeats=1, warmup=0, min_sample_s=0)
    b = Fake("b", {}, cal.Timer("cpu"), rounds=2, repeats=1, warmup=0, min_sample_s=0)
    cal.run_interleaved([a, b])
    assert order.count("a") == 4 and order.count("b") == 2
    assert order == ["a", "b", "a", "a", "b", "a"]  # each group's rounds spread over the whole run


def test_cache_size_parsing_and_llc():
    assert cal._parse_size("32768K") == 32 << 20
    assert cal._parse_size("32 MiB") == 32 << 20
    assert cal._parse_size("512K\n") == 512 << 10
    llc = cal.llc_bytes("cpu")
    assert llc is None or llc > 0


def test_stream_arrays_follow_llc_rule():
    full, quick = cal.PLANS["full"], cal.PLANS["quick"]
    llc = 32 << 20
    assert cal.stream_array_bytes(full, llc, None)[0] == max(8 * llc, 256 << 20)
    assert cal.stream_array_bytes(quick, llc, None)[0] >= 4 * llc
    big = 100 << 20
    assert cal.stream_array_bytes(full, big, None)[0] == 8 * big
    capped, why = cal.stream_array_bytes(full, llc, free=600 << 20)
    assert 3 * capped <= 300 << 20 and "capped" in why


def test_progress_protocols():
    calls = []
    step = cal._Progress(lambda description, advance: calls.append((description, advance))).group("GEMM fp32", 4)
    for _ in range(4):
        step()
    assert calls == [("GEMM fp32", 0.25)] * 4

    class Rich:
        def __init__(self):
            self.tasks, self.advanced = [], []

        def add_task(self, description, total):
            self.tasks.append((description, total))
            return len(self.tasks) - 1

        def advance(self, task, amount):
            self.advanced.append((task, amount))

    rich = Rich()
    step = cal._Progress(rich).group("memory bandwidth", 3)
    step()
    assert rich.tasks == [("memory bandwidth", 3)] and rich.advanced == [(0, 1)]
    cal._Progress(None).group("x", 1)()  # no output, no error
