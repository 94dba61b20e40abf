"""Chips as data: a strict YAML schema, validated into a frozen Hardware.

Units in the YAML: peaks in TFLOP/s (1e12, dense, 1 FMA = 2 FLOPs), bandwidth in GB/s (1e9
B/s), capacity in GB (1e9 B), cache in MB, overhead in microseconds. Hardware holds SI units.
Unknown keys are rejected; errors name the file, the key, the value and what was expected.
Every number must stay within SI_RANGE after unit conversion (so no ratio or product of two of
them overflows), every fraction at least FRACTION_MIN. A file is UTF-8 text of at most
MAX_FILE_BYTES, without YAML aliases (*name: a few lines of them expand into billions of values).

Execution (estimator.device_model, estimator.host): `family` names the accelerator family
whose kernel constants apply (hardware/kernels/families.yaml), `sm_count` its SMs (compute units),
`host` the host CPU that issues its work (an id in hardware/hosts/ or an inline mapping).

Optional blocks:
  sparse_tflops  the vendor's 2:4-sparse figures, for audit only; a dense peak equal to one of
                 them is rejected (the classic catalog mistake)
  achievable     what real kernels reach, as fractions of the peaks: `matrix`, `vector`,
                 `memory` for large work, falling off for small work either by a saturating
                 function (`matrix_half_flops`, `memory_half_bytes`: the work at which half
                 of the fraction is reached) or by measured `curves` ([work, fraction] points,
                 interpolated in log(work); `roofline calibrate` writes them), and measured
                 `kernels`: per kernel key (estimator.kernels, e.g. "native_batch_norm",
                 "convolution.depthwise"), [FLOPs, bytes, fraction] points: the fraction of
                 the roofline bound that kernel reached on ops of that size; an op takes the
                 inverse-distance-weighted mean of the nearest points in (log FLOPs, log bytes)

Example:
    >>> load_hardware("h100-sxm").matrix_flops_per_s["bf16"]
    989400000000000.0
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .kernels import is_known_key
from .errors import HardwareSpecError, PrecisionError, UnknownHardwareError, did_you_mean, quoted
from .host import HostProfile, load_host, parse_host
from .precision import Precision

KINDS = ("cpu", "gpu", "asic", "soc")
MATRIX_KEYS = ("fp64", "tf32", "fp32", "fp16", "bf16", "fp8", "int8")
VECTOR_KEYS = ("fp64", "fp32", "fp16", "bf16")
ACHIEVABLE_KEYS = ("matrix", "vector", "memory", "matrix_half_flops", "memory_half_bytes", "curves", "kernels",
                   "source")
CURVE_KEYS = ("matrix", "conv", "memory")
KERNEL_NEIGHBOURS = 3
REQUIRED = ("id", "name", "vendor", "kind", "peak_tflops", "memory", "kernel_overhead_us", "source")
OPTIONAL = ("cache_mb", "tdp_w", "interconnect_gbps", "achievable", "sparse_tflops", "price_usd", "notes", "family",
            "sm_count", "host")
MAX_FILE_BYTES = 1_000_000  # a chip file is a few KB
MAX_SPEC_CHARS = 1024  # a --hardware id or path
ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
SI_RANGE = (1e-30, 1e30)  # FLOP/s, bytes/s, bytes, seconds, watts, USD after conversion
FRACTION_MIN = 1e-9  # of an achievable fraction: a time divided by one stays finite
PATH_CHARS = 120  # a path in a message keeps its last PATH_CHARS characters


@dataclass(frozen=True)
class Achievable:
    """Fractions of the peaks real kernels reach; 1.0 everywhere is the datasheet roofline."""

    matrix: float = 1.0
    vector: float = 1.0
    memory: float = 1.0
    matrix_half_flops: float | None = None
    memory_half_bytes: float | None = None
    curves: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    kernels: dict[str, tuple[tuple[float, float, float], ...]] = field(default_factory=dict)
    source: tuple[str, ...] = ()

    def matrix_fraction(self, flops: float, conv: bool = False) -> float:
        curve = self.curves.get("conv") if conv and "conv" in self.curves else self.curves.get("matrix")
        if curve:
            return _interpolate_log(curve, flops)
        return self.matrix * _saturation(flops, self.matrix_half_flops)

    def kernel_fraction(self, key: str, flops: float, nbytes: float) -> float:
        """Fraction of the roofline bound kernel `key` (which must have points) reaches on an op of
        `flops` and `nbytes`: the geometric mean of the fractions of the KERNEL_NEIGHBOURS nearest
        points in (log10 FLOPs, log10 bytes), weighted by 1 / distance^2 (a point at distance 0
        gives its own fraction)."""
        here = (math.log10(flops + 1), math.log10(nbytes + 1))
        near = sorted((math.dist(here, (math.log10(f + 1), math.log10(b + 1))), frac)
                      for f, b, frac in self.kernels[key])[:KERNEL_NEIGHBOURS]
        if near[0][0] < 1e-9:
            return near[0][1]
        weights = [1 / d ** 2 for d, _ in near]
        return math.exp(sum(w * math.log(frac) for w, (_, frac) in zip(weights, near)) / sum(weights))

    def memory_fraction(self, nbytes: float) -> float:
        if "memory" in self.curves:
            return _interpolate_log(self.curves["memory"], nbytes)
        return self.memory * _saturation(nbytes, self.memory_half_bytes)


def _saturation(work: float, half: float | None) -> float:
    """work / (work + half): 1/2 at `half`, towards 1 for large work; 1 when no half is given."""
    if not half or work <= 0:
        return 1.0
    return work / (work + half)


def _interpolate_log(points: tuple[tuple[float, float], ...], work: float) -> float:
    """Piecewise-linear in log(work) through measured points, flat beyond the ends."""
    if work <= points[0][0]:
        return points[0][1]
    for (w0, f0), (w1, f1) in zip(points, points[1:]):
        if work <= w1:
            t = (math.log(work) - math.log(w0)) / (math.log(w1) - math.log(w0))
            return f0 + t * (f1 - f0)
    return points[-1][1]


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
    achievable: Achievable = field(default_factory=Achievable)
    sparse_flops_per_s: dict[str, float] = field(default_factory=dict)  # audit only
    price_usd: float | None = None
    notes: tuple[str, ...] = ()
    path: str = ""
    family: str | None = None  # accelerator family (hardware/kernels/families.yaml): kernel constants
    sm_count: int | None = None  # streaming multiprocessors (compute units): GEMM waves
    host: HostProfile | None = None  # the host CPU that issues its work (estimator.host)

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

    @property
    def half_matrix_key(self) -> str | None:
        """The chip's 16-bit matrix precision (bf16, else fp16), None if it has neither."""
        return next((k for k in ("bf16", "fp16") if k in self.matrix_flops_per_s), None)

    def to_dict(self) -> dict:
        """SI units: peaks in FLOP/s, bandwidth in bytes/s, capacity and cache in bytes."""
        a = self.achievable
        return {
            "id": self.id, "name": self.name, "vendor": self.vendor, "kind": self.kind,
            "matrix_flops_per_s": self.matrix_flops_per_s, "vector_flops_per_s": self.vector_flops_per_s,
            "sparse_flops_per_s": self.sparse_flops_per_s,
            "memory_bytes_per_s": self.memory_bytes_per_s, "memory_capacity_bytes": self.memory_capacity_bytes,
            "cache_bytes": self.cache_bytes, "tdp_w": self.tdp_w, "interconnect_bytes_per_s": self.interconnect_bytes_per_s,
            "kernel_overhead_s": self.kernel_overhead_s, "price_usd": self.price_usd,
            "ridge_point_flops_per_byte": {k: v / self.memory_bytes_per_s for k, v in self.matrix_flops_per_s.items()},
            "achievable": {"matrix": a.matrix, "vector": a.vector, "memory": a.memory,
                           "matrix_half_flops": a.matrix_half_flops, "memory_half_bytes": a.memory_half_bytes,
                           "curves": {k: [list(p) for p in v] for k, v in a.curves.items()},
                           "kernels": {k: [list(p) for p in v] for k, v in a.kernels.items()}, "source": list(a.source)},
            "source": list(self.source), "notes": list(self.notes), "path": self.path,
            "family": self.family, "sm_count": self.sm_count, "host": self.host.to_dict() if self.host else None,
        }


def catalog_dir() -> Path:
    return Path(str(resources.files("roofline_hardware")))


def catalog_ids() -> list[str]:
    return sorted(p.stem for p in catalog_dir().glob("*.yaml"))  # "local" lives in the user's config


def catalog_and_local() -> list[Hardware]:
    """Every catalog chip, and the calibrated `local` one when this machine has it."""
    chips = [load_hardware(chip_id) for chip_id in catalog_ids()]
    if local_hardware_path().is_file():
        chips.append(load_hardware("local"))
    return chips


def local_hardware_path() -> Path:
    """Where `roofline calibrate` writes this machine's YAML ($ROOFLINE_LOCAL_HARDWARE, else
    $XDG_CONFIG_HOME/torch-roofline/local.yaml, else ~/.config/torch-roofline/local.yaml)."""
    if os.environ.get("ROOFLINE_LOCAL_HARDWARE"):
        return Path(os.environ["ROOFLINE_LOCAL_HARDWARE"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "torch-roofline" / "local.yaml"


def load_hardware(spec: str) -> Hardware:
    """A chip by catalog id ("h100-sxm"), "local" (after calibrate), or a YAML file's path."""
    return parse_hardware(spec_path(spec, "hardware", local_hardware_path(), "calibrated",
                                    "run `roofline calibrate` first (about a minute with --quick)", _catalog_path))


def spec_path(spec: str, what: str, local_path: Path, local_made: str, local_hint: str, catalog_path) -> Path:
    """The YAML file a --hardware / --system value names: "local" (the file at `local_path`, or
    an error with `local_hint`), a path, or a catalog id (`catalog_path(id)`, which names the
    closest ids when there is none)."""
    if spec == "local":
        if not local_path.is_file():
            raise UnknownHardwareError(f"no {local_made} 'local' {what} at {local_path}; {local_hint}")
        return local_path
    if len(spec) > MAX_SPEC_CHARS:
        raise UnknownHardwareError(f"{what} {quoted(spec)} is too long: an id or a path has at most "
                                   f"{MAX_SPEC_CHARS:,} characters")
    if spec.endswith((".yaml", ".yml")) or "/" in spec or os.sep in spec or _probe(Path(spec), Path.is_file):
        return Path(spec)
    return catalog_path(spec)


def _catalog_path(chip_id: str) -> Path:
    """The catalog file of `chip_id`, or an error naming it with the closest catalog ids."""
    hint = did_you_mean(max(re.split(r"[^A-Za-z0-9._-]+", chip_id), key=len)[:64], catalog_ids())
    hint += " (`roofline hardware list` shows every chip; a path to a YAML file also works)"
    if not ID_PATTERN.fullmatch(chip_id):
        at = "; ID@PRECISION is for `roofline plot` and `report`" if "@" in chip_id else ""
        raise UnknownHardwareError(f"unknown hardware {quoted(chip_id)}: an id is 1 to 64 letters, digits, '.', "
                                   f"'_' or '-'{at}{hint}")
    if _probe(Path(chip_id), Path.is_dir):
        raise UnknownHardwareError(f"hardware {quoted(chip_id)} is a directory here, not a catalog id; give a YAML "
                                   "file in it")
    candidate = catalog_dir() / f"{chip_id}.yaml"
    if not candidate.is_file():
        raise UnknownHardwareError(f"unknown hardware {quoted(chip_id)}{hint}")
    return candidate


def _probe(path: Path, test) -> bool:
    """`test(path)` (Path.is_file, Path.is_dir), an OS error (a name too long...) a clear one."""
    try:
        return test(path)
    except OSError as e:
        raise UnknownHardwareError(f"hardware path '{_shown(path)}' ({len(str(path)):,} characters): "
                                   f"{e.strerror}") from None


def _shown(path: Path) -> str:
    """`path` for a message: its last PATH_CHARS characters, where the file name is."""
    text = str(path)
    return text if len(text) <= PATH_CHARS else "..." + text[3 - PATH_CHARS:]


EXAMPLE_FILES = {"hardware": "hardware/h100-sxm.yaml", "system": "hardware/systems/dgx-h100.yaml"}


def _read_text(path: Path, what: str = "hardware") -> str:
    """The text of the `what` ("hardware" or "system") YAML at `path`: UTF-8, at most MAX_FILE_BYTES."""
    if _probe(path, Path.is_dir):
        raise UnknownHardwareError(f"{what} path '{_shown(path)}' is a directory; expected a YAML file such as "
                                   f"{EXAMPLE_FILES[what]}")
    if not _probe(path, Path.is_file):
        raise UnknownHardwareError(f"{what} file '{_shown(path)}' does not exist")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        size = path.stat().st_size
    except OSError as e:
        raise UnknownHardwareError(f"{what} file '{_shown(path)}': cannot read it ({e.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise HardwareSpecError(f"{_shown(path)}: {size:,} bytes is too big for a {what} YAML (at most "
                                f"{MAX_FILE_BYTES:,}; one is a few KB)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HardwareSpecError(f"{_shown(path)}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start:,}); "
                                f"save the {what} YAML as UTF-8") from None


class _ChipLoader(yaml.SafeLoader):
    """SafeLoader refusing aliases (*name): a chip file needs none, and nested ones expand
    exponentially (the "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed in a hardware "
                                              "or system file; write the value out", self.peek_event().start_mark)
        return super().compose_node(parent, index)


def load_yaml(path: Path, what: str = "hardware"):
    """The YAML document of a `what` file at `path`; any problem one HardwareSpecError with its
    line and column."""
    text = _read_text(path, what)
    try:
        return yaml.load(text, Loader=_ChipLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(e.problem or e.context)[:PATH_CHARS]
        raise HardwareSpecError(f"{_shown(path)}: not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as e:  # a reader error: a control character
        raise HardwareSpecError(f"{_shown(path)}: not valid YAML: {str(e).splitlines()[0][:PATH_CHARS]}") from None
    except RecursionError:
        raise HardwareSpecError(f"{_shown(path)}: not valid YAML: nested too deeply") from None


def mapping_document(data, path: Path, keys: str, required, optional) -> "_Checker":
    """The checker of a YAML document that must be a mapping with `required` and `optional` keys
    (`keys` names them in the message when it is not a mapping)."""
    check = _Checker(path)
    if not isinstance(data, dict):
        raise HardwareSpecError(f"{check.where}: expected a mapping of keys ({keys}), got {type(data).__name__}")
    check.keys("", data, required, optional)
    return check


def parse_hardware(path: Path) -> Hardware:
    data = load_yaml(path)
    check = mapping_document(data, path, "id, name, peak_tflops, ...", REQUIRED, OPTIONAL)
    peaks = check.mapping("peak_tflops", data["peak_tflops"])
    check.keys("peak_tflops", peaks, ("vector",), ("matrix",))
    matrix = check.peaks("peak_tflops.matrix", peaks.get("matrix", {}), MATRIX_KEYS)
    vector = check.peaks("peak_tflops.vector", peaks["vector"], VECTOR_KEYS)
    if "fp32" not in vector:
        raise HardwareSpecError(f"{check.where}: key 'peak_tflops.vector.fp32' is missing; every chip needs its fp32 "
                                "vector peak")
    memory = check.mapping("memory", data["memory"])
    check.keys("memory", memory, ("bandwidth_gbps", "capacity_gb"), ())
    sparse = check.peaks("sparse_tflops", data.get("sparse_tflops") or {}, MATRIX_KEYS)
    for key, dense in matrix.items():
        if key in sparse and dense >= sparse[key] * 0.999:
            raise HardwareSpecError(f"{check.where}: key 'peak_tflops.matrix.{key}' is {dense / 1e12:g} TFLOP/s, the "
                                    f"2:4-sparse figure (sparse_tflops.{key}); peaks must be dense, usually half of it")
    achievable = check.achievable(data.get("achievable") or {})
    if data["kind"] not in KINDS:
        check.fail("kind", data["kind"], f"one of {', '.join(KINDS)}")
    scales = {"cache_mb": 1e6, "tdp_w": 1.0, "interconnect_gbps": 1e9, "price_usd": 1.0}
    opt = {k: check.positive(k, data[k], scale) for k, scale in scales.items() if k in data}
    return Hardware(
        id=check.chip_id(data["id"]), name=check.text("name", data["name"]),
        vendor=check.text("vendor", data["vendor"]), kind=data["kind"],
        matrix_flops_per_s=matrix, vector_flops_per_s=vector,
        memory_bytes_per_s=check.positive("memory.bandwidth_gbps", memory["bandwidth_gbps"], 1e9),
        memory_capacity_bytes=check.positive("memory.capacity_gb", memory["capacity_gb"], 1e9),
        kernel_overhead_s=check.non_negative("kernel_overhead_us", data["kernel_overhead_us"], 1e-6),
        source=check.texts("source", data["source"]), notes=check.texts("notes", data.get("notes", [])),
        cache_bytes=opt.get("cache_mb"), tdp_w=opt.get("tdp_w"), interconnect_bytes_per_s=opt.get("interconnect_gbps"),
        achievable=achievable, sparse_flops_per_s=sparse, price_usd=opt.get("price_usd"), path=str(path),
        family=check.text("family", data["family"]) if "family" in data else None,
        sm_count=int(check.positive("sm_count", data["sm_count"])) if "sm_count" in data else None,
        host=check.host(data["host"]) if "host" in data else None)


class _Checker:
    """Schema checks that raise HardwareSpecError naming file, key, value and expectation."""

    def __init__(self, path: Path):
        self.path = path
        self.where = _shown(path)

    def fail(self, key: str, value: Any, expected: str):
        raise HardwareSpecError(f"{self.where}: key '{key}' is {quoted(value)}; expected {expected}")

    def keys(self, where: str, data: dict, required, optional):
        prefix = f"{where}." if where else ""
        for k in data:
            if k not in required and k not in optional:
                allowed = ", ".join((*required, *optional))
                raise HardwareSpecError(f"{self.where}: unknown key {quoted(f'{prefix}{k}')}"
                                        f"{did_you_mean(str(k), [*required, *optional])}; allowed here: {allowed}")
        for k in required:
            if k not in data:
                raise HardwareSpecError(f"{self.where}: required key '{prefix}{k}' is missing")

    def mapping(self, key, value) -> dict:
        if not isinstance(value, dict):
            self.fail(key, value, "a mapping")
        return value

    @staticmethod
    def _number(value) -> float | None:
        """A YAML number; also '1e9', which YAML 1.1 (PyYAML) reads as a string."""
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return None
        try:
            return float(value)
        except (ValueError, OverflowError):  # OverflowError: an int beyond any float
            return None

    def positive(self, key, value, scale: float = 1.0) -> float:
        """value x scale (its unit conversion): finite, > 0 and within SI_RANGE."""
        number = self._number(value)
        if number is None or not number > 0 or math.isinf(number):
            self.fail(key, value, "a positive number")
        return self._in_range(key, value, number * scale)

    def non_negative(self, key, value, scale: float = 1.0) -> float:
        """value x scale: 0, or finite and within SI_RANGE."""
        number = self._number(value)
        if number is None or not number >= 0 or math.isinf(number):
            self.fail(key, value, "a number >= 0")
        return self._in_range(key, value, number * scale) if number else 0.0

    def _in_range(self, key, value, si: float) -> float:
        low, high = SI_RANGE
        if not low <= si <= high:
            raise HardwareSpecError(f"{self.where}: key '{key}' is {quoted(value)}, {si:g} in SI units after "
                                    f"conversion; expected {low:g} to {high:g}")
        return si

    def fraction(self, key, value) -> float:
        number = self._number(value)
        if number is None or not FRACTION_MIN <= number <= 1:
            self.fail(key, value, f"a fraction in (0, 1], at least {FRACTION_MIN:g}")
        return number

    def chip_id(self, value) -> str:
        if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
            self.fail("id", value, "1 to 64 letters, digits, '.', '_' or '-'")
        return value

    def text(self, key, value) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, value, "a non-empty string")
        return value

    def texts(self, key, value) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(s, str) and s.strip() for s in items):
            self.fail(key, value, "a string or a list of strings")
        return tuple(items)

    def achievable(self, data) -> Achievable:
        data = self.mapping("achievable", data)
        self.keys("achievable", data, (), ACHIEVABLE_KEYS)
        fractions = {k: self.fraction(f"achievable.{k}", data[k]) for k in ("matrix", "vector", "memory") if k in data}
        halves = {k: self.positive(f"achievable.{k}", data[k]) for k in ("matrix_half_flops", "memory_half_bytes")
                  if k in data}
        curves_data = self.mapping("achievable.curves", data.get("curves") or {})
        self.keys("achievable.curves", curves_data, (), CURVE_KEYS)
        curves = {k: self.curve(f"achievable.curves.{k}", v) for k, v in curves_data.items()}
        kernels_data = self.mapping("achievable.kernels", data.get("kernels") or {})
        for k in kernels_data:
            if not is_known_key(str(k)):
                raise HardwareSpecError(f"{self.where}: unknown kernel {quoted(f'achievable.kernels.{k}')}; expected "
                                        "an aten op name (e.g. gelu), convolution or convolution_backward optionally "
                                        "with .depthwise or .pointwise, or native_batch_norm optionally with .eval")
        kernels = {k: self.kernel_points(f"achievable.kernels.{k}", v) for k, v in kernels_data.items()}
        return Achievable(**fractions, **halves, curves=curves, kernels=kernels,
                          source=self.texts("achievable.source", data.get("source", [])))

    def curve(self, key, value) -> tuple[tuple[float, float], ...]:
        ok = isinstance(value, list) and value and all(isinstance(p, list) and len(p) == 2 for p in value)
        if not ok:
            self.fail(key, value, "a list of [work, fraction] pairs")
        points = tuple((self.positive(key, w), self.fraction(key, f)) for w, f in value)
        if any(b[0] <= a[0] for a, b in zip(points, points[1:])):
            self.fail(key, value, "points in ascending order of work")
        return points

    def kernel_points(self, key, value) -> tuple[tuple[float, float, float], ...]:
        ok = isinstance(value, list) and value and all(isinstance(p, list) and len(p) == 3 for p in value)
        if not ok:
            self.fail(key, value, "a list of [FLOPs, bytes, fraction] points")
        return tuple((self.non_negative(key, f), self.positive(key, b), self.fraction(key, frac))
                     for f, b, frac in value)

    def host(self, value) -> HostProfile:
        """`host: ID` (a file in hardware/hosts/) or an inline mapping (estimator.host)."""
        if isinstance(value, str):
            return load_host(value)
        if not isinstance(value, dict):
            self.fail("host", value, "a catalog host id (hardware/hosts/) or a mapping of host keys")
        return parse_host(value, self.where)

    def peaks(self, where: str, data, allowed) -> dict[str, float]:
        data = self.mapping(where, data)
        self.keys(where, data, (), allowed)
        return {k: self.positive(f"{where}.{k}", v, 1e12) for k, v in data.items()}
