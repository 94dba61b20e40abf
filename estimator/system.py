"""Multi-GPU systems as data: the network of a box and of a cluster of boxes, validated from YAML.

A system (hardware/systems/ID.yaml) names a chip of the catalog (hardware/ID.yaml), how many of
them share a node, and one or two network tiers: `intra_node` (NVLink, xGMI, PCIe, on-chip RoCE,
ICI inside a host) and the optional `inter_node` (the NICs between nodes). Units in the YAML:
bandwidth in GB/s (1e9 B/s, one direction), latency in microseconds; System holds SI units.

Conventions (what the numbers mean, so the collective model can use them):
  * `link_gbps`: the hardware line rate per GPU (intra) or per NIC (inter), one direction.
  * `bus_bandwidth_gbps`: the achieved bus bandwidth in nccl-tests' convention, measured with
    all_reduce_perf at large messages (>= 1 GB): busbw = algbw x 2(n-1)/n with algbw = bytes / time,
    so it is comparable across group sizes. Intra: all gpus_per_node GPUs of one node. Inter: >= 2
    nodes, every GPU of each node in the group. With NVLink SHARP (NVLS) or a 2-node tree the
    busbw of an all-reduce can exceed the line rate (see each file's notes).
  * `ring_bus_bandwidth_gbps` (optional, intra or inter): the busbw of the ring collectives
    (all-gather, reduce-scatter) where an in-network reduction (NVLink SHARP) makes all-reduce
    faster than they are; default the all-reduce figure.
  * `hop_latency_us`: the latency of one step on the tier; `base_latency_us`: the fixed cost of one
    collective call (launch and protocol setup), as NCCL's tuner models them.
  A collective then costs about base latency + hops x hop latency + bytes moved per rank / bus
  bandwidth (the caller picks the hops and the bytes for its algorithm).

The schema is strict like estimator.hardware's: unknown keys are rejected; every number is range
checked; the chip must be a catalog chip (or "local", the calibrated one); errors name the file,
the key, the value and what was expected. `local` is the system `roofline calibrate --network`
measures, at local_system_path().

Example:
    >>> s = load_system("dgx-h100")
    >>> s.chip, s.gpus_per_node, s.intra.bus_bytes_per_s / 1e9
    ('h100-sxm', 8, 476.0)
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from .errors import HardwareSpecError, UnknownHardwareError, did_you_mean, quoted
from .hardware import (ID_PATTERN, _Checker, _shown, catalog_ids, load_yaml, local_hardware_path, mapping_document,
                       spec_path)

REQUIRED = ("id", "name", "chip", "gpus_per_node", "network", "source")
OPTIONAL = ("price_per_gpu_hour", "notes")
NETWORK_KEYS = ("base_latency_us", "intra_node")
TIER_KEYS = ("name", "link_gbps", "bus_bandwidth_gbps", "hop_latency_us", "source")
MAX_GPUS_PER_NODE = 1024  # an NVL72 rack is 72; a "node" is one scale-up domain
MAX_NICS_PER_NODE = 256
SHARP_FACTOR = 2.0  # in-network reduction at most halves the traffic, so busbw <= 2 x line rate


@dataclass(frozen=True)
class Tier:
    """One network tier, SI units."""

    name: str
    link_bytes_per_s: float  # line rate per GPU (intra) or per NIC (inter), one direction
    bus_bytes_per_s: float  # achieved nccl-tests all_reduce busbw at large messages
    hop_latency_s: float
    nics_per_node: int | None  # inter_node only
    source: tuple[str, ...]
    ring_bus_bytes_per_s: float | None = None  # all-gather / reduce-scatter busbw where it differs (NVLink SHARP)

    @property
    def ring_bytes_per_s(self) -> float:
        """Bus bandwidth of the ring collectives (all-gather, reduce-scatter, all-to-all, send/recv)."""
        return self.ring_bus_bytes_per_s or self.bus_bytes_per_s

    def to_dict(self) -> dict:
        return {"name": self.name, "link_bytes_per_s": self.link_bytes_per_s, "bus_bytes_per_s": self.bus_bytes_per_s,
                "ring_bus_bytes_per_s": self.ring_bytes_per_s,
                "hop_latency_s": self.hop_latency_s, "nics_per_node": self.nics_per_node, "source": list(self.source)}


@dataclass(frozen=True)
class System:
    id: str
    name: str
    chip: str  # a chip id of the hardware catalog, or "local"
    gpus_per_node: int
    base_latency_s: float
    intra: Tier
    inter: Tier | None
    price_per_gpu_hour: float | None
    source: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """SI units: bandwidth in bytes/s, latency in seconds, price in USD per GPU-hour."""
        return {"id": self.id, "name": self.name, "chip": self.chip, "gpus_per_node": self.gpus_per_node,
                "base_latency_s": self.base_latency_s, "intra": self.intra.to_dict(),
                "inter": self.inter.to_dict() if self.inter else None,
                "price_per_gpu_hour_usd": self.price_per_gpu_hour, "source": list(self.source),
                "notes": list(self.notes)}


def systems_dir() -> Path:
    return Path(str(resources.files("roofline_hardware"))) / "systems"


def system_ids() -> list[str]:
    return sorted(p.stem for p in systems_dir().glob("*.yaml"))


def local_system_path() -> Path:
    """Where `roofline calibrate --network` writes this machine's system: $ROOFLINE_LOCAL_SYSTEM,
    else local-system.yaml beside the local hardware file (estimator.hardware.local_hardware_path)."""
    if os.environ.get("ROOFLINE_LOCAL_SYSTEM"):
        return Path(os.environ["ROOFLINE_LOCAL_SYSTEM"])
    return local_hardware_path().parent / "local-system.yaml"


def load_system(spec: str) -> System:
    """A system by catalog id ("dgx-h100"), "local" (after calibrate --network), or a YAML path."""
    return parse_system(spec_path(spec, "system", local_system_path(), "measured",
                                  "run `roofline calibrate --network` first to measure this machine's network",
                                  _catalog_path))


def _catalog_path(system_id: str) -> Path:
    """The catalog file of `system_id`, or an error naming the closest catalog ids."""
    path = systems_dir() / f"{system_id}.yaml"
    if ID_PATTERN.fullmatch(system_id) and path.is_file():
        return path
    hint = did_you_mean(system_id[:64], system_ids()) or f"; catalog systems: {', '.join(system_ids())}"
    raise UnknownHardwareError(f"unknown system {quoted(system_id)}{hint} (hardware/systems/*.yaml; a path to a YAML "
                               "file also works)")


def systems_for_chip(chip_id: str) -> list[System]:
    """The catalog systems built on chip `chip_id`, sorted by id."""
    return [s for s in (load_system(i) for i in system_ids()) if s.chip == chip_id]


def write_system_yaml(doc: dict, path: Path) -> None:
    """Write `doc` to `path` atomically, after checking it under the strict schema: it goes to a
    temporary file in the same folder, is parsed with parse_system, then replaces `path`."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".yaml")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            yaml.safe_dump(doc, f, sort_keys=False, allow_unicode=True)
        try:
            parse_system(Path(temporary))
        except HardwareSpecError as e:
            raise HardwareSpecError(str(e).replace(_shown(Path(temporary)), _shown(path))) from None
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def parse_system(path: Path) -> System:
    data = load_yaml(path, "system")
    check = mapping_document(data, path, "id, name, chip, gpus_per_node, network, source", REQUIRED, OPTIONAL)
    chip = data["chip"]
    if not isinstance(chip, str) or (chip not in catalog_ids() and chip != "local"):
        hint = did_you_mean(chip[:64], catalog_ids()) if isinstance(chip, str) else ""
        raise HardwareSpecError(f"{check.where}: key 'chip' is {quoted(chip)}; expected a chip id of the hardware "
                                f"catalog (hardware/*.yaml) or 'local'{hint}")
    network = check.mapping("network", data["network"])
    check.keys("network", network, NETWORK_KEYS, ("inter_node",))
    intra = _tier(check, "network.intra_node", network["intra_node"], inter=False)
    inter = _tier(check, "network.inter_node", network["inter_node"], inter=True) if "inter_node" in network else None
    price = data.get("price_per_gpu_hour")
    return System(
        id=check.chip_id(data["id"]), name=check.text("name", data["name"]), chip=chip,
        gpus_per_node=_count(check, "gpus_per_node", data["gpus_per_node"], MAX_GPUS_PER_NODE),
        base_latency_s=check.non_negative("network.base_latency_us", network["base_latency_us"], 1e-6),
        intra=intra, inter=inter,
        price_per_gpu_hour=check.positive("price_per_gpu_hour", price) if price is not None else None,
        source=check.texts("source", data["source"]), notes=check.texts("notes", data.get("notes", [])))


def _tier(check: _Checker, where: str, value, inter: bool) -> Tier:
    data = check.mapping(where, value)
    check.keys(where, data, (*TIER_KEYS, "nics_per_node") if inter else TIER_KEYS, ("ring_bus_bandwidth_gbps",))
    nics = _count(check, f"{where}.nics_per_node", data["nics_per_node"], MAX_NICS_PER_NODE) if inter else None
    link = check.positive(f"{where}.link_gbps", data["link_gbps"], 1e9)
    bus = check.positive(f"{where}.bus_bandwidth_gbps", data["bus_bandwidth_gbps"], 1e9)
    ceiling = SHARP_FACTOR * link * (nics or 1)
    if bus > ceiling:
        raise HardwareSpecError(f"{check.where}: key '{where}.bus_bandwidth_gbps' is {bus / 1e9:g} GB/s, over "
                                f"{SHARP_FACTOR:g} x the line rate ({ceiling / 1e9:g} GB/s); expected GB/s (not Gb/s) "
                                "of an achieved all-reduce busbw")
    ring = data.get("ring_bus_bandwidth_gbps")
    ring = check.positive(f"{where}.ring_bus_bandwidth_gbps", ring, 1e9) if ring is not None else None
    if ring is not None and ring > bus:
        check.fail(f"{where}.ring_bus_bandwidth_gbps", data["ring_bus_bandwidth_gbps"],
                   f"at most bus_bandwidth_gbps ({bus / 1e9:g}): in-network reduction only speeds up all-reduce")
    return Tier(name=check.text(f"{where}.name", data["name"]), link_bytes_per_s=link, bus_bytes_per_s=bus,
                hop_latency_s=check.non_negative(f"{where}.hop_latency_us", data["hop_latency_us"], 1e-6),
                nics_per_node=nics, source=check.texts(f"{where}.source", data["source"]), ring_bus_bytes_per_s=ring)


def _count(check: _Checker, key: str, value, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        check.fail(key, value, f"a whole number from 1 to {most}")
    return value
