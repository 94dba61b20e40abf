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


# ---------------------------------------------------------------- the time budget (issue 14)

class FakeClock:
    """A clock that moves only when told: deadlines tested without waiting."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTimer:
    """Timer whose fns return their own seconds per call; each run moves the fake clock by them."""

    cuda = False

    def __init__(self, clock: FakeClock):
        self.clock = clock

    def sync(self):
        pass

    def run(self, fn, inner):
        seconds = fn() * inner
        self.clock.now += seconds
        return seconds


def test_deadline_shares_what_is_left_and_collects_cuts():
    from estimator.deadline import Deadline, never, predict_s

    clock = FakeClock()
    run = Deadline(60.0, clock)
    clock.now += 20  # 40 s left
    phase = run.share(0.5)
    assert phase.left_s == 20 and run.left_s == 40 and not phase.expired
    assert phase.allows(20) and not phase.allows(20.5)
    clock.now += 20
    assert phase.expired and not run.expired and run.elapsed_s == 40
    phase.cut("GEMM fp32 2 of 16 rounds")
    assert run.cuts == ["GEMM fp32 2 of 16 rounds"]  # one list for the whole run
    clock.now += 30
    assert run.expired and run.share(0.5).left_s == 0  # nothing left to share
    assert not never().expired and never().allows(1e9)
    assert predict_s(0.01, 2 * 512 ** 3, 2 * 1024 ** 3) == pytest.approx(0.08)  # 8 x the work, 8 x the time


def test_rounds_stop_at_the_deadline_but_each_group_gets_one():
    from estimator.deadline import Deadline

    clock = FakeClock()
    deadline = Deadline(10.0, clock)

    class Fake(cal.Bench):
        def prepare(self):
            pass

        def take_round(self):
            clock.now += 1.0
            self.done += 1

    big = Fake("big", {}, cal.Timer("cpu"), rounds=100, repeats=1, warmup=0, min_sample_s=0)
    late = Fake("late", {}, cal.Timer("cpu"), rounds=2, repeats=1, warmup=0, min_sample_s=0)
    cal.run_interleaved([big, late], deadline)
    # 10 s at 1 s a round: big's first 10 rounds (late's first was due after 25), then late's first only
    assert (big.done, late.done) == (10, 1)
    assert deadline.cuts == [f"rounds: big {big.done} of 100 rounds, late {late.done} of 2 rounds"]


def test_repeats_stop_at_the_deadline_with_one_sample_each():
    from estimator.deadline import Deadline

    clock = FakeClock()
    deadline = Deadline(1.0, clock)
    b = cal.Bench("g", {"a": lambda: 0.4, "b": lambda: 0.4}, FakeTimer(clock), rounds=5, repeats=4, warmup=0,
                  min_sample_s=0.1, deadline=deadline)
    cal.run_interleaved([b], deadline)
    stats = b.stats()
    # prepare takes 0.8 s; a's first repeat reaches 1.2 s: a and b get one sample each, one round
    assert b.done == 1 and stats["a"].count == 1 and stats["b"].count == 1
    assert deadline.cuts == ["rounds: g 1 of 5 rounds"]


def test_sizes_predicted_over_the_call_limit_are_skipped():
    from estimator.deadline import Deadline

    clock = FakeClock()
    run = Deadline(1000.0, clock)
    rate = 1e11  # FLOP/s
    fns = {n: (lambda n=n: 2 * n ** 3 / rate) for n in (128, 512, 1024, 2048)}
    b = cal.Bench("GEMM fp32", fns, FakeTimer(clock), rounds=1, repeats=1, warmup=1, min_sample_s=0.01,
                  work=lambda n: 2 * n ** 3, max_call_s=0.1, label=lambda n: f"N={n}", deadline=run)
    cal.run_interleaved([b], run)
    # 512: 2.7 ms, 1024: 21 ms, 2048 predicted 8 x 21 ms = 0.17 s > 0.1 s: never run
    assert sorted(b.stats()) == [128, 512, 1024]
    assert run.cuts == ["GEMM fp32: skipped N=2048 (~0.17 s a call), over the 0.1 s a call may take or the "
                        "time left"]


def test_sizes_that_would_not_fit_the_time_left_are_skipped():
    from estimator.deadline import Deadline

    clock = FakeClock()
    run = Deadline(0.2, clock)
    fns = {n: (lambda n=n: n * 1e-3) for n in (1, 10, 100)}
    b = cal.Bench("conv", fns, FakeTimer(clock), rounds=1, repeats=1, warmup=1, min_sample_s=0,
                  work=float, deadline=run)
    b.prepare()
    # 1 and 10 take 22 ms (a warm-up and a call each); 100: predicted 0.1 s x 2 > the 0.178 s left
    assert list(b.fns) == [1, 10] and "skipped 100" in run.cuts[0]


def test_extend_gemm_stops_when_the_next_size_does_not_fit():
    from estimator.deadline import Deadline

    run = Deadline(0.4, FakeClock())
    # the rate still grows from N=256 to 512 (168 -> 268 GFLOP/s); N=1024 predicted 8 ms a call
    results = {256: cal.Stats(((2e-4,),), 1), 512: cal.Stats(((1e-3,),), 1)}
    # ... x 18 rounds x 3 repeats = 0.43 s > the 0.4 s left: not tried (nothing is timed)
    assert cal.extend_gemm(results, cal.gemm_specs("cpu")[0], "cpu", cal.PLANS["full"], cal.Timer("cpu"),
                           deadline=run) == results
    assert run.cuts and "N=1024 not tried" in run.cuts[0]


def test_kernel_scales_predicted_too_slow_are_skipped(monkeypatch):
    from estimator import kernel_probes as kp
    from estimator.deadline import Deadline

    clock = FakeClock()
    calls = []

    def fake_points(probe, scale, mode, dev, reps, peak, bw, overhead, deadline):
        calls.append((probe.name, scale))
        clock.now += 0.1 * scale * (reps + 1)
        return [("relu", scale, scale, 0.5)], 0.1 * scale  # a repeat takes 0.1 s per unit of scale

    monkeypatch.setattr(kp, "_probe_points", fake_points)
    probes = tuple(kp.Probe(f"p{i}", lambda: None, lambda s: (s,)) for i in range(3))
    run = Deadline(5.0, clock)
    lines = []
    curves, _ = kp.kernel_points("cpu", (1, 4, 16), 2, 1e11, 1e10, 1e-6, probes=probes, deadline=run,
                                 max_call_s=1.0, say=lines.append)
    # p0: scales 1 (0.3 s) and 4 (1.2 s); 16 predicted 1.6 s a repeat > 1 s; p1: 1 and 4 reach 3 s;
    # p2: scale 1 reaches 3.3 s, scale 4 predicted 0.4 x 3 = 1.2 s fits the 1.7 s left, reaching 4.5 s
    assert calls == [("p0", 1), ("p0", 4), ("p1", 1), ("p1", 4), ("p2", 1), ("p2", 4)]
    assert [p[:2] for p in curves["relu"]] == [[1.0, 1.0], [4.0, 4.0]]
    assert lines == ["kernel probe p0", "kernel probe p1", "kernel probe p2"]
    assert run.cuts == ["kernel points: skipped 3 probe runs: p0 (train) at scale 16; p1 (train) at scale 16; "
                        "p2 (train) at scale 16"]
    run = Deadline(0.5, clock)
    calls.clear()
    kp.kernel_points("cpu", (1, 4), 2, 1e11, 1e10, 1e-6, probes=probes, deadline=run)
    # p0 at 1 leaves 0.2 s: p0 at 4 (1.2 s) does not fit; p1 at 1 (no prediction yet) runs, then none is left
    assert calls == [("p0", 1), ("p1", 1)]
    assert run.cuts == ["kernel points: skipped 3 probe runs: p0 (train) at scale 4; p1 (train) at scale 4; "
                        "p2 (train) at scale 1, 4"]


def test_host_rounds_stop_at_the_deadline_after_a_minimum():
    from estimator import host_probes as hp
    from estimator.deadline import Deadline

    clock = FakeClock()
    run = Deadline(1.0, clock)

    def sample():
        clock.now += 0.5
        return 1.0

    hp.take_rounds({"a": sample}, 25, deadline=run)
    assert run.cuts == [f"host costs: {hp.MIN_ROUNDS} of 25 rounds"]  # expired after 2, the minimum is 3


# ---------------------------------------------------------------- the emulation decision

def test_emulation_from_the_best_of_interleaved_samples():
    # native bf16 (same speed as fp32), a neighbour slowing fp32 in most rounds and bf16 in others
    fp32 = [0.010, 0.031, 0.029, 0.040, 0.011]
    low = [0.030, 0.012, 0.011, 0.035, 0.060]
    assert cal.native_fraction(low, fp32) == pytest.approx(0.010 / 0.011)
    assert not cal.emulated(low, fp32)
    # a single timing against fp32's would have said 33%, then 9% (emulated) in the next round
    assert 0.010 / 0.030 > cal.SANE_DTYPE_FRACTION > 0.011 / 0.060
    # emulated bf16: 60x slower; even with fp32 slowed 3x in every round it stays far below 25%
    fp32_busy = [0.031, 0.030, 0.035, 0.029, 0.040]
    emulated_low = [0.61, 0.60, 1.8, 0.62, 0.9]
    assert cal.emulated(emulated_low, fp32_busy) and cal.native_fraction(emulated_low, fp32_busy) < 0.05
    # slower but native (a third of fp32, e.g. fp16 converted per tile): kept
    assert not cal.emulated([0.031, 0.03, 0.09], [0.01, 0.02, 0.011])


# ---------------------------------------------------------------- output path and atomic write

def _no_probes(monkeypatch):
    """Every probe fails if called: the checks must come first."""
    def boom(*args, **kwargs):
        raise AssertionError("a probe ran before the output path was checked")
    for name in ("calibrate", "probe_dtype", "run_interleaved", "measure_host", "kernel_points"):
        monkeypatch.setattr(cal, name, boom)


def _bad_paths(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (--out value, what the message must say)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    paths = {
        "directory": (str(tmp_path), "is a directory"),
        "under a file": (str(a_file / "local.yaml"), "is a file, not a directory"),
        "missing parent": (str(tmp_path / "nope" / "local.yaml"), "does not exist; create it"),
        "long name": (str(tmp_path / ("x" * 300 + ".yaml")), "305 bytes long, over the 255"),
        "not a regular file": ("/dev/null", "not a regular file"),
    }
    if Path("/sys").is_dir():  # read-only even for root
        paths["unwritable"] = ("/sys/local.yaml", "cannot create files in /sys")
    return paths


@pytest.mark.parametrize("case", ["directory", "under a file", "missing parent", "long name", "not a regular file",
                                  "unwritable"])
def test_bad_output_paths_fail_before_any_probe(case, tmp_path, monkeypatch, capsys):
    from estimator import cli

    paths = _bad_paths(tmp_path)
    if case not in paths:
        pytest.skip("no read-only /sys here")
    out, says = paths[case]
    _no_probes(monkeypatch)
    with pytest.raises(cal.RooflineError, match=says):
        cal.check_output_path(Path(out))
    assert cli.main(["calibrate", "--quick", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err and "cannot write the calibration to" in err, err


def test_default_output_path_may_create_its_folders(tmp_path):
    path = tmp_path / "config" / "torch-roofline" / "local.yaml"
    assert cal.check_output_path(path, make_parents=True) == path
    assert not path.parent.exists()  # nothing made yet: the folders come with the file
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(cal.RooflineError, match="a_file is a file, not a directory.*the default location; --out"):
        cal.check_output_path(tmp_path / "a_file" / "torch-roofline" / "local.yaml", make_parents=True)


def test_bad_budget_is_refused_before_any_probe(tmp_path, monkeypatch, capsys):
    from estimator import cli

    _no_probes(monkeypatch)
    assert cli.main(["calibrate", "--quick", "--budget", "0", "--out", str(tmp_path / "x.yaml")]) == 2
    assert "--budget takes seconds greater than 0" in capsys.readouterr().err


def test_write_is_atomic_and_an_interrupt_leaves_the_old_file(doc, tmp_path):
    path = tmp_path / "local.yaml"
    path.write_text("old")

    def interrupted(tmp: Path):
        assert tmp.parent == tmp_path and tmp.read_text().startswith("# ")  # the whole text, beside the target
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cal.write_hardware_yaml(doc, path, validate=interrupted)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["local.yaml"]
    cal.write_hardware_yaml(doc, path)
    assert yaml.safe_load(path.read_text()) == doc and len(list(tmp_path.iterdir())) == 1


def test_interrupt_from_a_probe_writes_nothing_and_exits_130(tmp_path, monkeypatch, capsys):
    from estimator import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setitem(cal.PLANS, "quick", cal.PLANS["tiny"])  # seconds, then the host probes are interrupted
    monkeypatch.setattr(cal, "measure_host", interrupted)
    out = tmp_path / "local.yaml"
    assert cli.main(["calibrate", "--quick", "--out", str(out)]) == 130
    assert list(tmp_path.iterdir()) == []  # no file, no temporary file
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines()[-1] == f"interrupted; nothing written ({out} is as it was)"


# ---------------------------------------------------------------- the command, end to end

@pytest.mark.slow
def test_quick_calibration_keeps_its_budget(tmp_path):
    """`calibrate --quick --budget 30` ends in time on a busy machine, with progress lines on stderr
    (not a terminal here) and a YAML the loader reads. The wall-clock bound is loose on purpose."""
    import subprocess
    import sys
    import time

    from estimator.hardware import load_hardware

    out = tmp_path / "local.yaml"
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "estimator.cli", "calibrate", "--quick", "--budget", "30",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-2000:]
    assert took < 90, f"took {took:.0f} s"
    hw = load_hardware(str(out))
    assert hw.id == "local" and hw.matrix_flops_per_s["fp32"] > 0
    lines = run.stderr.splitlines()
    progress = [line for line in lines if line.startswith("[") and " s] " in line]
    assert len(progress) >= 5 and any("host costs" in line for line in progress), run.stderr[-2000:]
    assert f"wrote {out}" in run.stdout
