"""Chips as data: a strict YAML schema, validated into a frozen Hardware.

Units in the YAML: peaks in TFLOP/s (1e12, dense, 1 FMA = 2 FLOPs), bandwidth in GB/s (1e9
B/s), capacity in GB (1e9 B), cache in MB, overhead in microseconds. Hardware holds SI units.
Unknown keys are rejected; errors name the file, the key, the value and what was expected.

Example:
    >>> load_hardware("h100-sxm").matrix_flops_per_s["bf16"]
    989400000000000.0
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import HardwareSpecError, PrecisionError, UnknownHardwareError, did_you_mean
from .precision import Precision

KINDS = ("cpu", "gpu", "asic", "soc")
MATRIX_KEYS = ("fp64", "tf32", "fp32", "fp16", "bf16", "fp8", "int8")
VECTOR_KEYS = ("fp64", "fp32", "fp16", "bf16")
EFFICIENCY_KEYS = ("matrix", "vector", "memory")
REQUIRED = ("id", "name", "vendor", "kind", "peak_tflops", "memory", "kernel_overhead_us", "source")
OPTIONAL = ("cache_mb", "tdp_w", "interconnect_gbps", "efficiency", "price_usd", "notes")


@dataclass(frozen=True)
class Hardware:
    id: str
    name: str
    vendor: str
    kind: str
    matrix_flops_per_s: dict[str, float]
    vector_flops_per_s: dict[str, float]
    memory_bytes_per_s: float
    memory_capacity_bytes: float
    kernel_overhead_s: float
    source: tuple[str, ...]
    cache_bytes: float | None = None
    tdp_w: float | None = None
    interconnect_bytes_per_s: float | None = None
    efficiency: dict[str, float] = field(default_factory=dict)  # achievable fraction of peak
    price_usd: float | None = None
    notes: tuple[str, ...] = ()
    path: str = ""

    def matrix_peak(self, precision: Precision) -> float:
        """Dense matrix-unit peak (FLOP/s) at this precision; fp32 falls back to the vector rate."""
        key = precision.matrix_key
        peak = self.matrix_flops_per_s.get(key)
        if peak is None and key == "fp32":
            peak = self.vector_flops_per_s["fp32"]
        if peak is None:
            have = sorted(set(self.matrix_flops_per_s) | {"fp32"})
            raise PrecisionError(f"{self.id} has no {key} matrix peak, so precision {precision.name!r} "
                                 f"cannot run on it; its matrix unit supports {', '.join(have)}")
        return peak

    def vector_peak(self, precision: Precision) -> float:
        return self.vector_flops_per_s.get(precision.vector_key, self.vector_flops_per_s["fp32"])

    def ridge_point(self, precision: Precision) -> float:
        """FLOP/byte where the matrix roof meets the memory slope."""
        return self.matrix_peak(precision) / self.memory_bytes_per_s


def catalog_dir() -> Path:
    return Path(str(resources.files("roofline_hardware")))


def catalog_ids() -> list[str]:
    return sorted(p.stem for p in catalog_dir().glob("*.yaml"))


def load_hardware(spec: str) -> Hardware:
    """A chip by catalog id ("h100-sxm") or by the path of a YAML file."""
    path = Path(spec)
    if spec.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise UnknownHardwareError(f"hardware file {spec!r} does not exist")
        return parse_hardware(path)
    candidate = catalog_dir() / f"{spec}.yaml"
    if not candidate.is_file():
        raise UnknownHardwareError(f"unknown hardware {spec!r}{did_you_mean(spec, catalog_ids())} "
                                   "(`roofline hardware list` shows every chip; a path to a YAML file also works)")
    return parse_hardware(candidate)


def parse_hardware(path: Path) -> Hardware:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise HardwareSpecError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    check = _Checker(path)
    if not isinstance(data, dict):
        raise HardwareSpecError(f"{path}: expected a mapping of keys (id, name, peak_tflops, ...), "
                                f"got {type(data).__name__}")
    check.keys("", data, REQUIRED, OPTIONAL)
    peaks = check.mapping("peak_tflops", data["peak_tflops"])
    check.keys("peak_tflops", peaks, ("vector",), ("matrix",))
    matrix = check.peaks("peak_tflops.matrix", peaks.get("matrix", {}), MATRIX_KEYS)
    vector = check.peaks("peak_tflops.vector", peaks["vector"], VECTOR_KEYS)
    if "fp32" not in vector:
        raise HardwareSpecError(f"{path}: key 'peak_tflops.vector.fp32' is missing; every chip needs its fp32 vector peak")
    memory = check.mapping("memory", data["memory"])
    check.keys("memory", memory, ("bandwidth_gbps", "capacity_gb"), ())
    efficiency = check.mapping("efficiency", data.get("efficiency", {}))
    check.keys("efficiency", efficiency, (), EFFICIENCY_KEYS)
    for k, v in efficiency.items():
        check.fraction(f"efficiency.{k}", v)
    if data["kind"] not in KINDS:
        raise HardwareSpecError(f"{path}: key 'kind' is {data['kind']!r}; expected one of {', '.join(KINDS)}")
    opt = {k: check.positive(k, data[k]) for k in ("cache_mb", "tdp_w", "interconnect_gbps", "price_usd") if k in data}
    return Hardware(
        id=check.text("id", data["id"]), name=check.text("name", data["name"]),
        vendor=check.text("vendor", data["vendor"]), kind=data["kind"],
        matrix_flops_per_s=matrix, vector_flops_per_s=vector,
        memory_bytes_per_s=check.positive("memory.bandwidth_gbps", memory["bandwidth_gbps"]) * 1e9,
        memory_capacity_bytes=check.positive("memory.capacity_gb", memory["capacity_gb"]) * 1e9,
        kernel_overhead_s=check.non_negative("kernel_overhead_us", data["kernel_overhead_us"]) * 1e-6,
        source=check.texts("source", data["source"]), notes=check.texts("notes", data.get("notes", [])),
        cache_bytes=opt["cache_mb"] * 1e6 if "cache_mb" in opt else None, tdp_w=opt.get("tdp_w"),
        interconnect_bytes_per_s=opt["interconnect_gbps"] * 1e9 if "interconnect_gbps" in opt else None,
        efficiency=dict(efficiency), price_usd=opt.get("price_usd"), path=str(path))


class _Checker:
    """Schema checks that raise HardwareSpecError naming file, key, value and expectation."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, value: Any, expected: str):
        raise HardwareSpecError(f"{self.path}: key '{key}' is {value!r}; expected {expected}")

    def keys(self, where: str, data: dict, required, optional):
        prefix = f"{where}." if where else ""
        for k in data:
            if k not in required and k not in optional:
                allowed = ", ".join((*required, *optional))
                raise HardwareSpecError(f"{self.path}: unknown key '{prefix}{k}'"
                                        f"{did_you_mean(str(k), [*required, *optional])}; allowed here: {allowed}")
        for k in required:
            if k not in data:
                raise HardwareSpecError(f"{self.path}: required key '{prefix}{k}' is missing")

    def mapping(self, key, value) -> dict:
        if not isinstance(value, dict):
            self.fail(key, value, "a mapping")
        return value

    def positive(self, key, value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.fail(key, value, "a positive number")
        return float(value)

    def non_negative(self, key, value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            self.fail(key, value, "a number >= 0")
        return float(value)

    def fraction(self, key, value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            self.fail(key, value, "a fraction in (0, 1]")
        return float(value)

    def text(self, key, value) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, value, "a non-empty string")
        return value

    def texts(self, key, value) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(s, str) and s.strip() for s in items):
            self.fail(key, value, "a string or a list of strings")
        return tuple(items)

    def peaks(self, where: str, data, allowed) -> dict[str, float]:
        data = self.mapping(where, data)
        self.keys(where, data, (), allowed)
        return {k: self.positive(f"{where}.{k}", v) * 1e12 for k, v in data.items()}
