"""JSON Schemas (draft 2020-12) of the hardware, system and host YAMLs, for editors.

The checkers (estimator.hardware.parse_hardware, estimator.system.parse_system,
estimator.host.parse_host) stay the authority: they run on every load and their messages name
the file, the key, the value and what was expected. A schema lets an editor (VS Code with the
YAML extension, any yaml-language-server client) complete keys and underline mistakes while the
file is written. It is built here from the checkers' own tables (REQUIRED, OPTIONAL, MATRIX_KEYS,
KINDS, TIER_KEYS, HOST_KEYS, ID_PATTERN, FRACTION_MIN, MAX_GPUS_PER_NODE, the catalog's chip ids
...), so a key added to a checker appears here, and one without a type in the tables below fails
when the schema is built (tests/test_hardware_schema.py builds all three).

What a schema cannot say, only the checker checks: a dense peak equal to its 2:4-sparse figure,
bus bandwidth over 2 x the line rate, a ring bandwidth over the all-reduce one, curve points in
ascending order, the SI range after unit conversion, kernel keys (estimator.kernels).

Example:
    >>> schema = json_schema("system")
    >>> schema["required"][:3]
    ['id', 'name', 'chip']
"""
from __future__ import annotations

import json

from . import hardware, host, system
from .errors import RooflineError

DIALECT = "https://json-schema.org/draft/2020-12/schema"
KINDS = ("hardware", "system", "host")
SCHEMA_FILES = {"hardware": "roofline-hardware.schema.json", "system": "roofline-system.schema.json",
                "host": "roofline-host.schema.json"}
# a number, or a string YAML 1.1 (PyYAML) reads for 1e9 and the checker takes as one
NUMERIC_TEXT = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
# matmul_op_us may be left out of a host mapping: parse_host derives it from op_us
HOST_DEFAULTED = ("matmul_op_us",)


def _number(minimum: float | None = None, exclusive: bool = False, maximum: float | None = None) -> dict:
    bound = {}
    if minimum is not None:
        bound["exclusiveMinimum" if exclusive else "minimum"] = minimum
    if maximum is not None:
        bound["maximum"] = maximum
    return {"anyOf": [{"type": "number", **bound}, {"type": "string", "pattern": NUMERIC_TEXT}]}


POSITIVE = _number(0, exclusive=True)
NON_NEGATIVE = _number(0)
FRACTION = _number(hardware.FRACTION_MIN, maximum=1)
TEXT = {"type": "string", "pattern": r"\S"}
TEXTS = {"anyOf": [TEXT, {"type": "array", "items": TEXT}]}
ID = {"type": "string", "pattern": f"^{hardware.ID_PATTERN.pattern}$"}


def _object(properties: dict, required=(), description: str | None = None, nullable: bool = False) -> dict:
    """A mapping with exactly these keys (unknown keys rejected, as the checkers do)."""
    schema = {"type": ["object", "null"] if nullable else "object", "properties": properties,
              "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


def _typed(keys, types: dict, where: str) -> dict:
    """{key: its schema} for every key the checker accepts; a key without a type is a bug here."""
    missing = [k for k in keys if k not in types]
    if missing:
        raise RooflineError(f"hardware_schema: no schema type for {where} key(s) {', '.join(missing)}; add them to "
                            "estimator/hardware_schema.py")
    return {k: types[k] for k in keys}


def _peaks(keys) -> dict:
    return _object({k: {**POSITIVE, "description": "TFLOP/s, dense"} for k in keys}, nullable=True)


def _points(*items: dict, what: str) -> dict:
    pair = {"type": "array", "prefixItems": list(items), "minItems": len(items), "maxItems": len(items)}
    return {"type": "array", "items": pair, "minItems": 1, "description": what}


def host_schema(inline: bool) -> dict:
    """A host file (hardware/hosts/ID.yaml: an `id` too) or the mapping a chip's `host:` takes."""
    types = {k: {**NON_NEGATIVE, "description": "microseconds"} for k in host.HOST_KEYS}
    types.update({k: {**POSITIVE, "description": "multiplier, default 1"} for k in host.IN_SITU_KEYS})
    types.update({"name": TEXT, "source": TEXTS, "id": ID})
    keys = (*host.HOST_KEYS, *host.IN_SITU_KEYS, "name", "source", *(() if inline else ("id",)))
    required = [k for k in host.HOST_KEYS if k not in HOST_DEFAULTED]
    return _object(_typed(keys, types, "host"), required, "host issue costs (estimator.host)")


def hardware_schema() -> dict:
    achievable_types = {
        "matrix": FRACTION, "vector": FRACTION, "memory": FRACTION,
        "matrix_half_flops": POSITIVE, "memory_half_bytes": POSITIVE, "source": TEXTS,
        "curves": _object({k: _points(POSITIVE, FRACTION, what="[work, fraction] points, ascending work")
                           for k in hardware.CURVE_KEYS}, nullable=True),
        "kernels": {"type": ["object", "null"], "description": "kernel key (estimator.kernels) -> points",
                    "additionalProperties": _points(NON_NEGATIVE, POSITIVE, FRACTION,
                                                    what="[FLOPs, bytes, fraction] points")},
    }
    types = {
        "id": ID, "name": TEXT, "vendor": TEXT, "kind": {"enum": list(hardware.KINDS)},
        "peak_tflops": _object({"vector": {**_peaks(hardware.VECTOR_KEYS), "type": "object", "required": ["fp32"]},
                                "matrix": _peaks(hardware.MATRIX_KEYS)}, ["vector"], "dense peaks, TFLOP/s"),
        "memory": _object({"bandwidth_gbps": {**POSITIVE, "description": "GB/s"},
                           "capacity_gb": {**POSITIVE, "description": "GB"}}, ["bandwidth_gbps", "capacity_gb"]),
        "kernel_overhead_us": {**NON_NEGATIVE, "description": "microseconds"}, "source": TEXTS,
        "cache_mb": POSITIVE, "tdp_w": POSITIVE, "interconnect_gbps": POSITIVE, "price_usd": POSITIVE, "notes": TEXTS,
        "achievable": _object(_typed(hardware.ACHIEVABLE_KEYS, achievable_types, "achievable"), nullable=True,
                              description="fractions of the peaks real kernels reach"),
        "sparse_tflops": {**_peaks(hardware.MATRIX_KEYS), "description": "2:4-sparse figures, audit only"},
        "family": TEXT, "sm_count": POSITIVE,
        "host": {"anyOf": [{**TEXT, "description": "a host id of hardware/hosts/"}, host_schema(inline=True)]},
    }
    keys = (*hardware.REQUIRED, *hardware.OPTIONAL)
    return _object(_typed(keys, types, "hardware"), hardware.REQUIRED, "a chip of torch-roofline (hardware/ID.yaml)")


def _tier(inter: bool) -> dict:
    types = {"name": TEXT, "link_gbps": {**POSITIVE, "description": "GB/s, one direction"},
             "bus_bandwidth_gbps": {**POSITIVE, "description": "GB/s, nccl-tests all_reduce busbw"},
             "ring_bus_bandwidth_gbps": POSITIVE, "hop_latency_us": NON_NEGATIVE, "source": TEXTS,
             "nics_per_node": {"type": "integer", "minimum": 1, "maximum": system.MAX_NICS_PER_NODE}}
    required = (*system.TIER_KEYS, "nics_per_node") if inter else system.TIER_KEYS
    return _object(_typed((*required, "ring_bus_bandwidth_gbps"), types, "tier"), required)


def system_schema() -> dict:
    network = _object({"base_latency_us": NON_NEGATIVE, "intra_node": _tier(False), "inter_node": _tier(True)},
                      system.NETWORK_KEYS)
    types = {"id": ID, "name": TEXT, "chip": {"enum": [*hardware.catalog_ids(), "local"]},
             "gpus_per_node": {"type": "integer", "minimum": 1, "maximum": system.MAX_GPUS_PER_NODE},
             "network": network, "source": TEXTS, "price_per_gpu_hour": {"anyOf": [POSITIVE, {"type": "null"}]},
             "notes": TEXTS}
    keys = (*system.REQUIRED, *system.OPTIONAL)
    return _object(_typed(keys, types, "system"), system.REQUIRED,
                   "a multi-GPU system of torch-roofline (hardware/systems/ID.yaml)")


def json_schema(kind: str = "hardware") -> dict:
    """The schema of `kind` ("hardware", "system" or "host") as a dict."""
    builders = {"hardware": hardware_schema, "system": system_schema, "host": lambda: host_schema(inline=False)}
    if kind not in builders:
        raise RooflineError(f"unknown schema kind {kind!r}; expected one of {', '.join(KINDS)}")
    body = builders[kind]()
    return {"$schema": DIALECT, "title": f"torch-roofline {kind} YAML", **body}


def schema_text(kind: str = "hardware") -> str:
    return json.dumps(json_schema(kind), indent=2) + "\n"
