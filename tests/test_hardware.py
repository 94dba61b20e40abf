"""The chip catalog against the datasheet reference, and the YAML schema's error messages."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from estimator.errors import HardwareSpecError, PrecisionError, UnknownHardwareError
from estimator.hardware import catalog_ids, load_hardware
from estimator.precision import PRECISIONS

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "hardware_specs.yaml"
# our id -> the reference's id (../shared/reference/hardware_specs.yaml)
REFERENCE_IDS = {
    "v100-sxm2": "nvidia_v100_sxm2", "v100-pcie": "nvidia_v100_pcie", "a100-40gb-sxm": "nvidia_a100_40gb_sxm",
    "a100-80gb-sxm": "nvidia_a100_80gb_sxm", "h100-sxm": "nvidia_h100_sxm", "h100-pcie": "nvidia_h100_pcie",
    "h200": "nvidia_h200_sxm", "t4": "nvidia_t4", "rtx-4090": "nvidia_rtx_4090", "mi300x": "amd_mi300x",
    "xeon-8480": "intel_xeon_platinum_8480plus", "epyc-9654": "amd_epyc_9654",
    "b200": "nvidia_b200", "l4": "nvidia_l4", "a100-80gb-pcie": "nvidia_a100_80gb_pcie", "rtx-3090": "nvidia_rtx_3090",
    "gtx-1080ti": "nvidia_gtx_1080_ti", "mi250x": "amd_mi250x", "tpu-v4": "google_tpu_v4", "tpu-v5e": "google_tpu_v5e",
    "tpu-v5p": "google_tpu_v5p", "gaudi2": "intel_gaudi2", "m2-pro": "apple_m2_pro", "m3-max": "apple_m3_max",
    "jetson-agx-orin": "nvidia_jetson_agx_orin_64gb", "i9-10940x": "intel_core_i9_10940x",
}
# the ids users type, as the catalog issue lists them
REQUIRED_CHIPS = ["v100-sxm2", "v100-pcie", "a100-40gb-sxm", "a100-80gb-sxm", "h100-sxm", "h100-pcie", "h200", "b200",
                  "l4", "t4", "mi250x", "mi300x", "gtx-1080ti", "rtx-3090", "rtx-4090", "tpu-v4", "tpu-v5e", "gaudi2",
                  "m2-pro", "jetson-agx-orin", "xeon-8480", "epyc-9654"]


def test_catalog_has_25_chips_of_every_kind():
    chips = [load_hardware(c) for c in catalog_ids()]
    assert len(chips) >= 25
    assert {hw.kind for hw in chips} == {"cpu", "gpu", "asic", "soc"}
    for hw in chips:  # every chip says where its numbers and its achievable fractions come from
        assert hw.source and hw.achievable.source, hw.id


def test_required_chips_ship_and_parse():
    ids = catalog_ids()
    for chip in REQUIRED_CHIPS:
        assert chip in ids
    for chip in ids:
        assert load_hardware(chip).id == chip  # the id inside equals the file name


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_file():
        pytest.skip(f"reference datasheet file not found at {REFERENCE}")
    return {c["id"]: c for c in yaml.safe_load(REFERENCE.read_text())["chips"]}


# deliberate departures from the reference, each explained in the chip's YAML notes
DOCUMENTED_EXTRAS = {
    # GP102's native fp16 is a 1/64-rate path PyTorch never uses; fp16 matmuls run at the fp32 rate
    ("gtx-1080ti", "fp16"): 11.34e12,
    # Orin's Ampere GPU: NVIDIA states only sparse INT8; fp16 = dense INT8 / 2 (the reference's
    # `derived` figure), bf16 at the fp16 rate, tf32 at half of it
    ("jetson-agx-orin", "fp16"): 42.5e12, ("jetson-agx-orin", "bf16"): 42.5e12, ("jetson-agx-orin", "tf32"): 21.25e12,
    # Apple GPUs have no matrix engine: half-precision matmuls run on the fp32 ALUs
    ("m2-pro", "fp16"): 6.8e12, ("m2-pro", "bf16"): 6.8e12, ("m3-max", "fp16"): 14.3e12, ("m3-max", "bf16"): 14.3e12,
}


def _reference_peak(dense: dict, key: str, unit: str) -> float | None:
    """The reference's figure for a precision, whatever its vendor's key spelling."""
    names = ([f"{key}_tensor_tflops", f"{key}_matrix_tflops", f"gpu_{key}_tensor_tflops", f"{key}_tflops"]
             if unit == "matrix" else [f"{key}_tflops", f"{key}_vector_tflops", f"gpu_{key}_tflops"])
    return next((dense[n] for n in names if dense.get(n)), None)


@pytest.mark.parametrize("chip", sorted(REFERENCE_IDS))
def test_catalog_agrees_with_datasheet_reference(chip, reference):
    ref = reference[REFERENCE_IDS[chip]]
    hw = load_hardware(chip)
    dense = ref["peak_dense"]
    # bandwidth in GB/s and capacity in GB (the largest where the reference lists options)
    assert hw.memory_bytes_per_s == pytest.approx(ref["memory"]["bandwidth_gbps"] * 1e9)
    capacity = ref["memory"]["capacity_gb"]
    assert hw.memory_capacity_bytes == pytest.approx(max(capacity if isinstance(capacity, list) else [capacity]) * 1e9)
    fp32 = _reference_peak(dense, "fp32", "vector")
    if fp32:  # CPUs, TPUs and Gaudi publish none: their YAMLs derive it and say so
        assert hw.vector_flops_per_s["fp32"] == pytest.approx(fp32 * 1e12)
    for key in ("bf16", "fp16", "tf32", "fp8"):
        theirs = _reference_peak(dense, key, "matrix")
        if (chip, key) in DOCUMENTED_EXTRAS:
            assert hw.matrix_flops_per_s[key] == pytest.approx(DOCUMENTED_EXTRAS[chip, key])
        elif theirs:
            assert hw.matrix_flops_per_s[key] == pytest.approx(theirs * 1e12), key
        elif hw.kind != "cpu":  # CPU peaks are all derived (the reference has only `derived:` figures)
            assert key not in hw.matrix_flops_per_s, f"{chip} lists {key}, which the datasheet lacks"


@pytest.mark.parametrize("chip", sorted(REFERENCE_IDS))
def test_no_classic_catalog_mistakes(chip, reference):
    hw = load_hardware(chip)
    sparse = reference[REFERENCE_IDS[chip]].get("peak_sparse") or {}
    for key, value in hw.matrix_flops_per_s.items():
        # a 2:4-sparse figure listed as a dense peak
        for name in (f"{key}_tensor_tflops", f"{key}_matrix_tflops"):
            assert value != pytest.approx(sparse.get(name, -1) * 1e12), f"{key} peak is the sparse figure"
    half = hw.matrix_flops_per_s.get("fp16") or hw.matrix_flops_per_s.get("bf16")
    if half:  # a half-precision matrix peak below the fp32 vector peak means a unit mix-up
        assert half >= hw.vector_flops_per_s["fp32"]
    # bandwidth in bytes/s, not bits or MiB: between 50 GB/s and 20 TB/s for every chip here
    assert 50e9 <= hw.memory_bytes_per_s <= 20e12


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "chip.yaml"
    path.write_text(text)
    return str(path)


GOOD = """
id: mychip
name: My chip
vendor: Me
kind: gpu
peak_tflops:
  matrix: {bf16: 100}
  vector: {fp32: 10}
memory: {bandwidth_gbps: 1000, capacity_gb: 16}
kernel_overhead_us: 4
source: my measurements
"""


def test_user_yaml_by_path(tmp_path):
    hw = load_hardware(_write(tmp_path, GOOD))
    assert hw.matrix_flops_per_s["bf16"] == 100e12  # TFLOP/s -> FLOP/s
    assert hw.memory_bytes_per_s == 1000e9  # GB/s -> B/s
    assert hw.ridge_point(PRECISIONS["bf16"]) == pytest.approx(100e12 / 1000e9)


@pytest.mark.parametrize("text, fragment", [
    (GOOD + "colour: red\n", "unknown key 'colour'"),
    (GOOD.replace("bandwidth_gbps: 1000", "bandwith_gbps: 1000"), "unknown key 'memory.bandwith_gbps'; did you mean 'bandwidth_gbps'"),
    (GOOD.replace("bandwidth_gbps: 1000", "bandwidth_gbps: fast"), "key 'memory.bandwidth_gbps' is 'fast'; expected a positive number"),
    (GOOD.replace("kind: gpu", "kind: fpga"), "key 'kind' is 'fpga'; expected one of cpu, gpu, asic, soc"),
    (GOOD.replace("source: my measurements\n", ""), "required key 'source' is missing"),
    (GOOD.replace("bf16: 100", "bf17: 100"), "unknown key 'peak_tflops.matrix.bf17'"),
    (GOOD.replace("bf16: 100", "bf16: -5"), "key 'peak_tflops.matrix.bf16' is -5; expected a positive number"),
    (GOOD.replace("bandwidth_gbps: 1000", "bandwidth_gbps: 0"), "key 'memory.bandwidth_gbps' is 0"),
    (GOOD + "sparse_tflops: {bf16: 100}\n", "key 'peak_tflops.matrix.bf16' is 100 TFLOP/s, the 2:4-sparse figure"),
    (GOOD + "achievable: {matrix: 1.4}\n", "key 'achievable.matrix' is 1.4; expected a fraction in (0, 1]"),
    (GOOD + "achievable: {curves: {matrix: [[1e9, 0.5], [1e6, 0.2]]}}\n", "points in ascending order of work"),
    (GOOD + "achievable: {curves: {gemm: [[1e9, 0.5]]}}\n", "unknown key 'achievable.curves.gemm'"),
    (GOOD + "achievable: {kernels: {batchnorm: [[0, 1e6, 0.5]]}}\n", "unknown kernel 'achievable.kernels.batchnorm'"),
    (GOOD + "achievable: {kernels: {gelu.depthwise: [[0, 1e6, 0.5]]}}\n",
     "unknown kernel 'achievable.kernels.gelu.depthwise'"),
    (GOOD + "achievable: {kernels: {gelu: [[0, 1e6, 1.5]]}}\n", "key 'achievable.kernels.gelu' is 1.5"),
    (GOOD + "achievable: {kernels: {gelu: [[1e6, 0.5]]}}\n", "expected a list of [FLOPs, bytes, fraction] points"),
    (GOOD + "achievable: {kernels: {gelu: [[-1, 1e6, 0.5]]}}\n", "is -1; expected a number >= 0"),
    ("id: [unclosed", "not valid YAML"),
    ("- a list\n", "expected a mapping"),
])
def test_invalid_yaml_errors_name_file_key_value(tmp_path, text, fragment):
    path = _write(tmp_path, text)
    with pytest.raises(HardwareSpecError) as info:
        load_hardware(path)
    assert fragment in str(info.value)
    assert path in str(info.value)


def test_unknown_chip_suggests_close_ids():
    with pytest.raises(UnknownHardwareError, match="did you mean 'h100-sxm'"):
        load_hardware("h100-sx")


def test_precision_the_chip_lacks_is_a_clear_error():
    v100 = load_hardware("v100-sxm2")  # Volta: no bf16 tensor cores, no fp8
    with pytest.raises(PrecisionError, match="v100-sxm2 has no bf16 matrix peak"):
        v100.matrix_peak(PRECISIONS["bf16"])
    assert v100.matrix_peak(PRECISIONS["fp32"]) == v100.vector_flops_per_s["fp32"]  # no tf32: CUDA cores


def test_achievable_roofs_fall_off_for_small_work(tmp_path):
    text = GOOD + ("achievable: {matrix: 0.8, memory: 0.9, matrix_half_flops: 1.0e9, memory_half_bytes: 1.0e6,\n"
                   "             source: [a microbenchmark]}\n")
    a = load_hardware(_write(tmp_path, text)).achievable
    assert a.matrix_fraction(1e9) == pytest.approx(0.8 / 2)  # half of the large-work fraction at half_flops
    assert a.matrix_fraction(1e15) == pytest.approx(0.8, rel=1e-5)
    assert a.memory_fraction(1e6) == pytest.approx(0.45)


def test_measured_curves_interpolate_in_log_work(tmp_path):
    text = GOOD + "achievable: {curves: {matrix: [[1.0e6, 0.2], [1.0e8, 0.6]], memory: [[1.0e3, 0.1], [1.0e9, 0.9]]}}\n"
    a = load_hardware(_write(tmp_path, text)).achievable
    assert a.matrix_fraction(1e7) == pytest.approx(0.4)  # halfway in log10: 6 -> 7 -> 8
    assert a.matrix_fraction(1e3) == 0.2 and a.matrix_fraction(1e12) == 0.6  # flat beyond the ends
    assert a.matrix_fraction(1e7, conv=True) == pytest.approx(0.4)  # no conv curve: the matrix one


def test_achievable_estimate_is_never_faster_than_the_datasheet_bound():
    import estimator
    import roofline_zoo
    model, inputs = roofline_zoo.get("resnet18").build(batch=2)
    for chip in catalog_ids():
        hw = load_hardware(chip)
        precision = "amp-bf16" if "bf16" in hw.matrix_flops_per_s else "fp32"
        totals = estimator.estimate(model, inputs, hardware=hw, precision=precision).totals()
        assert totals["roofline_step_time_s"] <= totals["step_time_s"], chip


def test_local_needs_calibrate_first(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOFLINE_LOCAL_HARDWARE", str(tmp_path / "local.yaml"))
    with pytest.raises(UnknownHardwareError, match="run `roofline calibrate` first"):
        load_hardware("local")
    (tmp_path / "local.yaml").write_text(GOOD.replace("id: mychip", "id: local"))
    assert load_hardware("local").id == "local"
