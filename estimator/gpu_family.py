"""Kernel constants per accelerator family (hardware/kernels/families.yaml), each with its source.

A family (volta, turing, ampere, ada, hopper, ...) shares its SM design, cuBLAS/cuDNN kernels
and launch path, so what fraction of the datasheet roofs each kind of kernel reaches is a
property of the family, not of each SKU. A chip YAML names its family (`family: ampere`).

Per family:
  kernel_floor_us       device time of the shortest kernel, back to back in a stream
  graph_kernel_us       the same inside a replayed CUDA graph
  gemm.efficiency       fraction of the dense matrix peak a large GEMM reaches, per precision key
                        (fp32: of the fp32 vector peak, where GEMMs run on the CUDA cores)
  gemm.tiles            output tile shapes (M x N) the library chooses among
  gemm.small_tile_throughput  per-SM rate of the smallest tile relative to the largest
  gemm.k_half           reduction length at which a tile reaches half its steady rate
  conv_efficiency       implicit-GEMM convolution relative to a GEMM of the same shape
  attention.forward/backward  fused (flash) attention, fraction of the matrix peak
  bandwidth.KIND        fraction of the DRAM bandwidth a large kernel of each kind reaches
  bandwidth_half_bytes  bytes at which a bandwidth-bound kernel reaches half that rate

Shared by every family (`kernel_shapes`, measured on the lent H200, validation/h200/): how a
kind's rate depends on the shape and memory layout of its tensors (KernelShapes below).

Example:
    >>> load_family("ampere").bandwidth["elementwise"]
    0.85
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from .errors import HardwareSpecError, did_you_mean

BANDWIDTH_KINDS = ("copy", "elementwise", "batch_norm", "norm", "softmax", "reduction", "pooling", "embedding",
                   "depthwise_conv", "optimizer")
DEFAULT_FAMILY = "ampere"


@dataclass(frozen=True)
class Family:
    name: str
    kernel_floor_s: float
    graph_kernel_s: float
    gemm_efficiency: dict[str, float]
    gemm_tiles: tuple[tuple[int, int], ...]
    small_tile_throughput: float
    k_half: float
    conv_efficiency: float
    attention_forward: float
    attention_backward: float
    bandwidth: dict[str, float]
    bandwidth_half_bytes: float
    source: dict[str, str]

    def gemm_fraction(self, key: str) -> float:
        """Large-GEMM fraction at a precision key; a key the family does not list takes its 16-bit
        one (fp16, else bf16); a family with neither is an error, never a made-up fraction."""
        for candidate in (key, "fp16", "bf16"):
            if candidate in self.gemm_efficiency:
                return self.gemm_efficiency[candidate]
        raise HardwareSpecError(f"{families_path()}: family {self.name!r} lists no gemm.efficiency for {key!r} "
                                "nor for fp16 or bf16; add the measured fraction with its source")

    @functools.cached_property
    def tile_rates(self) -> tuple[tuple[int, int, float], ...]:
        """(tile_m, tile_n, tile_rate) of every tile shape, computed once."""
        return tuple((m, n, self.tile_rate((m, n))) for m, n in self.gemm_tiles)

    @functools.cached_property
    def smallest_tile_side(self) -> int:
        """The shortest side of any tile shape (a GEMM thinner than it gets the skinny tiles)."""
        return min(min(m, n) for m, n in self.gemm_tiles)

    def tile_rate(self, tile: tuple[int, int]) -> float:
        """Per-SM rate of a tile relative to the largest: log-linear in tile area between the
        smallest (small_tile_throughput) and the largest (1)."""
        areas = [m * n for m, n in self.gemm_tiles]
        lo, hi = min(areas), max(areas)
        if hi == lo:
            return 1.0
        t = (math.log(tile[0] * tile[1]) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return self.small_tile_throughput + t * (1 - self.small_tile_throughput)


@dataclass(frozen=True)
class KernelShapes:
    """How a kernel kind's rate depends on its shape and layout (families.yaml `kernel_shapes`).

    batch_norm_channel_gbps  NCHW training batch norm (cuDNN's per-channel kernels): GB/s each
                             channel streams, by element kind and phase (half_forward,
                             half_backward, fp32_forward, fp32_backward); the kernel reaches
                             min(the kind's fraction x batch_norm_nchw_ratio, C x this / DRAM)
    batch_norm_nchw_ratio    where NCHW training batch norm saturates, relative to the kind's
                             fraction (which NHWC kernels reach)
    batch_norm_eval_ratio    NCHW or NHWC inference batch norm, relative to an elementwise kernel,
                             by element kind
    batch_norm_eval_plane    NCHW inference batch norm runs one block per (n, c) plane: planes
                             of fewer H x W elements than this leave the block part idle
    norm_row_half            layer norm (one block per row): row length, in elements, at which it
                             reaches half the kind's fraction
    norm_backward_ratio      a norm's backward relative to the kind's fraction (no row law)
    depthwise_backward_ratio depthwise convolution's backward relative to its forward
    depthwise_channels_last_ratio  depthwise convolution on channels_last tensors relative to NCHW
    transpose_ratio          cuDNN's NCHW <-> NHWC transposes around a 16-bit convolution with a
                             spatial kernel, relative to a copy
    """

    batch_norm_channel_gbps: dict[str, float]
    batch_norm_nchw_ratio: float
    batch_norm_eval_ratio: dict[str, float]
    batch_norm_eval_plane: int
    norm_row_half: int
    norm_backward_ratio: float
    depthwise_backward_ratio: float
    depthwise_channels_last_ratio: float
    transpose_ratio: float
    source: str


def families_path() -> Path:
    return Path(str(resources.files("roofline_hardware"))) / "kernels" / "families.yaml"


@functools.cache
def _families_document() -> dict:
    """families.yaml, read once per process (libyaml's loader where installed: the file is large)."""
    path = families_path()
    data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(data, dict) or not isinstance(data.get("families"), dict):
        raise HardwareSpecError(f"{path}: expected a mapping with key 'families'")
    return data


def _families() -> dict:
    return _families_document()["families"]


@functools.cache
def load_shapes() -> KernelShapes:
    """The shared `kernel_shapes` of families.yaml."""
    path = families_path()
    try:
        k = _families_document()["kernel_shapes"]
        shapes = KernelShapes(
            batch_norm_channel_gbps={str(a): float(b) for a, b in k["batch_norm_channel_gbps"].items()},
            batch_norm_nchw_ratio=float(k["batch_norm_nchw_ratio"]),
            batch_norm_eval_ratio={str(a): float(b) for a, b in k["batch_norm_eval_ratio"].items()},
            batch_norm_eval_plane=int(k["batch_norm_eval_plane"]), norm_row_half=int(k["norm_row_half"]),
            norm_backward_ratio=float(k["norm_backward_ratio"]),
            depthwise_backward_ratio=float(k["depthwise_backward_ratio"]),
            depthwise_channels_last_ratio=float(k["depthwise_channels_last_ratio"]),
            transpose_ratio=float(k["transpose_ratio"]), source=str(k["source"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise HardwareSpecError(f"{path}: kernel_shapes malformed ({type(e).__name__}: {e})") from None
    rates = {f"{e}_{p}" for e in ("half", "fp32") for p in ("forward", "backward")}
    if set(shapes.batch_norm_channel_gbps) != rates or set(shapes.batch_norm_eval_ratio) != {"half", "fp32"}:
        raise HardwareSpecError(f"{path}: kernel_shapes.batch_norm_channel_gbps needs {sorted(rates)} and "
                                "batch_norm_eval_ratio needs half and fp32")
    return shapes


def family_names() -> list[str]:
    return sorted(_families())


@functools.cache
def load_family(name: str) -> Family:
    families = _families()
    if name not in families:
        raise HardwareSpecError(f"unknown accelerator family {name!r}{did_you_mean(name, list(families))}; "
                                f"families in {families_path().name}: {', '.join(sorted(families))}")
    where = f"{families_path()}: family {name!r}"
    try:
        f = families[name]
        gemm, attention, bandwidth = f["gemm"], f["attention"], f["bandwidth"]
        missing = [k for k in BANDWIDTH_KINDS if k not in bandwidth]
        if missing:
            raise HardwareSpecError(f"{where}: bandwidth kinds missing: {', '.join(missing)}")
        family = Family(
            name=name, kernel_floor_s=float(f["kernel_floor_us"]) * 1e-6, graph_kernel_s=float(f["graph_kernel_us"]) * 1e-6,
            gemm_efficiency={k: float(v) for k, v in gemm["efficiency"].items()},
            gemm_tiles=tuple((int(m), int(n)) for m, n in gemm["tiles"]),
            small_tile_throughput=float(gemm["small_tile_throughput"]), k_half=float(gemm["k_half"]),
            conv_efficiency=float(f["conv_efficiency"]), attention_forward=float(attention["forward"]),
            attention_backward=float(attention["backward"]),
            bandwidth={k: float(bandwidth[k]) for k in BANDWIDTH_KINDS},
            bandwidth_half_bytes=float(f["bandwidth_half_bytes"]),
            source={str(k): str(v) for k, v in (f.get("source") or {}).items()})
    except (KeyError, TypeError, ValueError) as e:
        raise HardwareSpecError(f"{where}: malformed ({type(e).__name__}: {e})") from None
    fractions = [*family.gemm_efficiency.values(), *family.bandwidth.values(), family.small_tile_throughput,
                 family.conv_efficiency, family.attention_forward, family.attention_backward]
    if not all(0 < x <= 1 for x in fractions):
        raise HardwareSpecError(f"{where}: every efficiency must be a fraction in (0, 1]")
    return family
