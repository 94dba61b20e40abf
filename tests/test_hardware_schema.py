"""The JSON Schemas of the hardware, system and host YAMLs: every catalog file passes, broken
files fail both the schema and the checker, and `roofline hardware schema` writes them safely."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from estimator import hardware, host, system
from estimator.cli import main
from estimator.errors import HardwareSpecError
from estimator.hardware_schema import json_schema

ROOT = Path(__file__).resolve().parent.parent / "hardware"
CATALOG = {"hardware": sorted(ROOT.glob("*.yaml")), "system": sorted((ROOT / "systems").glob("*.yaml")),
           "host": sorted((ROOT / "hosts").glob("*.yaml"))}


def _validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)  # a valid draft 2020-12 schema
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("kind", ["hardware", "system", "host"])
def test_every_catalog_file_validates_against_its_schema(kind):
    assert len(CATALOG[kind]) >= 5
    validator = _validator(kind)
    for path in CATALOG[kind]:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path.name, errors)


def test_the_schemas_take_their_keys_from_the_checkers():
    chip, box, host_file = (json_schema(k) for k in ("hardware", "system", "host"))
    assert set(chip["properties"]) == {*hardware.REQUIRED, *hardware.OPTIONAL}
    assert chip["required"] == list(hardware.REQUIRED) and chip["additionalProperties"] is False
    assert set(chip["properties"]["peak_tflops"]["properties"]["matrix"]["properties"]) == set(hardware.MATRIX_KEYS)
    assert chip["properties"]["kind"]["enum"] == list(hardware.KINDS)
    assert set(box["properties"]) == {*system.REQUIRED, *system.OPTIONAL}
    assert set(box["properties"]["chip"]["enum"]) == {*hardware.catalog_ids(), "local"}
    assert set(host_file["properties"]) >= {*host.HOST_KEYS, *host.IN_SITU_KEYS}


def _set(doc: dict, dotted: str, value) -> dict:
    """A copy of `doc` with the key at `dotted` set to `value` (None: deleted)."""
    doc = copy.deepcopy(doc)
    *parents, last = dotted.split(".")
    at = doc
    for key in parents:
        at = at[key]
    if value is None:
        del at[last]
    else:
        at[last] = value
    return doc


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


BROKEN = {  # (kind, key, value): None deletes the key
    "hardware": [("memory", None), ("name", 42), ("kind", "fpga"), ("memory.bandwidth_gbps", -3350),
                 ("peak_tflops.vector.fp32", "fast"), ("kernel_overhead_us", -1), ("bandwith_gbps", 3350),
                 ("peak_tflops.matrix.fp4", 100), ("achievable.matrix", 1.5)],
    "system": [("chip", None), ("gpus_per_node", "eight"), ("gpus_per_node", 0), ("network.intra_node.link_gbps", -1),
               ("network.intra_node.latency_us", 3), ("price", 2.0), ("chip", "h100-sxm5")],
    "host": [("op_us", None), ("op_us", -1.0), ("view_us", "fast"), ("launch_us", 4.0), ("in_situ_forward", 0)],
}


def _checker(kind: str, doc: dict, tmp_path: Path):
    if kind == "host":  # a catalog host file is its id plus the mapping parse_host checks
        return host.parse_host({k: v for k, v in doc.items() if k != "id"}, "host.yaml")
    path = tmp_path / f"broken-{kind}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return (hardware.parse_hardware if kind == "hardware" else system.parse_system)(path)


@pytest.mark.parametrize("kind, key, value", [(k, key, v) for k, cases in BROKEN.items() for key, v in cases])
def test_a_broken_file_fails_the_schema_and_the_checker(kind, key, value, tmp_path):
    good = _load({"hardware": ROOT / "h100-sxm.yaml", "system": ROOT / "systems" / "dgx-h100.yaml",
                  "host": ROOT / "hosts" / "dgx-h100-xeon-8480.yaml"}[kind])
    if kind == "hardware":
        good.setdefault("achievable", {})["matrix"] = 0.8
    validator = _validator(kind)
    assert not list(validator.iter_errors(good))
    _checker(kind, good, tmp_path)  # the unbroken file passes both
    broken = _set(good, key, value)
    assert list(validator.iter_errors(broken)), (key, value)
    with pytest.raises(HardwareSpecError) as caught:
        _checker(kind, broken, tmp_path)
    assert key.split(".")[-1] in str(caught.value)  # the checker's message names the key


def test_cli_prints_writes_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["hardware", "schema", "--kind", "system"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema("system")
    out = tmp_path / "hardware.schema.json"
    assert main(["hardware", "schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json_schema("hardware")
    out.write_text("{}")
    assert main(["hardware", "schema", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert str(out) in err and "--force" in err
    assert out.read_text() == "{}"  # left as it was
    assert main(["hardware", "schema", "--kind", "host", "--out", str(out), "--force"]) == 0
    assert json.loads(out.read_text()) == json_schema("host")
