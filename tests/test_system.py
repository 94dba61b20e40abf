"""Multi-GPU systems (estimator.system): the catalog loads and cites its numbers; a bad file gives
one short RooflineError naming the file, the key and the value; `local` and paths work."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from estimator.errors import HardwareSpecError, RooflineError, UnknownHardwareError
from estimator.hardware import catalog_ids
from estimator.system import (local_system_path, load_system, parse_system, system_ids, systems_dir,
                              systems_for_chip, write_system_yaml)

GOOD = {
    "id": "mybox", "name": "My box", "chip": "h100-sxm", "gpus_per_node": 8,
    "network": {
        "base_latency_us": 6.8,
        "intra_node": {"name": "NVLink", "link_gbps": 450, "bus_bandwidth_gbps": 360, "hop_latency_us": 0.6,
                       "source": ["a datasheet"]},
        "inter_node": {"name": "8x NDR", "nics_per_node": 8, "link_gbps": 50, "bus_bandwidth_gbps": 180,
                       "hop_latency_us": 5, "source": ["a measurement"]},
    },
    "source": ["the box's datasheet"],
}


def _doc(**changes) -> dict:
    """GOOD with dotted keys replaced (value None deletes the key)."""
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = doc
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return doc


def _write(tmp_path, doc, name="box.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _fails(tmp_path, doc, error=HardwareSpecError) -> str:
    path = _write(tmp_path, doc)
    with pytest.raises(error) as info:
        load_system(str(path))
    message = str(info.value)
    assert str(path) in message and len(message.splitlines()) == 1 and len(message) < 400, message
    return message


@pytest.mark.parametrize("system_id", system_ids())
def test_every_catalog_system_loads_and_cites(system_id):
    s = load_system(system_id)
    assert s.id == system_id  # the id matches the file name
    assert s.chip in catalog_ids(), f"{system_id}: chip {s.chip!r} is not in hardware/*.yaml"
    assert s.source and s.intra.source and (s.inter is None or s.inter.source)
    assert s.intra.nics_per_node is None and (s.inter is None or s.inter.nics_per_node >= 1)
    # the file's numbers, converted: GB/s x 1e9 = bytes/s, us x 1e-6 = s
    raw = yaml.safe_load((systems_dir() / f"{system_id}.yaml").read_text(encoding="utf-8"))
    intra = raw["network"]["intra_node"]
    assert s.intra.bus_bytes_per_s == pytest.approx(intra["bus_bandwidth_gbps"] * 1e9)
    assert s.intra.hop_latency_s == pytest.approx(intra["hop_latency_us"] * 1e-6)
    assert s.base_latency_s == pytest.approx(raw["network"]["base_latency_us"] * 1e-6)


def test_catalog_covers_the_systems_the_collectives_need():
    assert {"dgx-1-v100", "dgx-a100", "dgx-a100-40gb", "mosaicml-a100-roce", "dgx-h100", "hgx-h200", "hgx-b200",
            "mi300x-platform", "gaudi2-hls", "tpu-v4-pod", "tpu-v5p-pod"} <= set(system_ids())


def test_inter_node_is_slower_per_node_than_the_sum_of_its_nics_allows():
    """busbw across nodes is bounded by the NICs: at most nics x line rate x 2 (SHARP's ceiling)."""
    for s in map(load_system, system_ids()):
        if s.inter:
            assert s.inter.bus_bytes_per_s <= 2 * s.inter.nics_per_node * s.inter.link_bytes_per_s


def test_systems_for_chip_is_sorted_and_filtered():
    found = systems_for_chip("a100-80gb-sxm")
    assert [s.id for s in found] == sorted(s.id for s in found)
    assert {"dgx-a100", "mosaicml-a100-roce"} <= {s.id for s in found}
    assert all(s.chip == "a100-80gb-sxm" for s in found)
    assert systems_for_chip("no-such-chip") == []


def test_to_dict_is_si_with_units_in_names():
    d = load_system("dgx-h100").to_dict()
    assert d["intra"]["link_bytes_per_s"] == pytest.approx(450e9)  # NVLink 4: 900 GB/s both ways / 2
    assert d["inter"]["nics_per_node"] == 8 and d["inter"]["link_bytes_per_s"] == pytest.approx(400e9 / 8)
    assert d["base_latency_s"] == pytest.approx(6.8e-6)
    assert set(d) >= {"id", "chip", "gpus_per_node", "base_latency_s", "intra", "inter", "price_per_gpu_hour_usd"}


def test_a_yaml_path_works(tmp_path):
    s = load_system(str(_write(tmp_path, GOOD)))
    assert (s.id, s.gpus_per_node, s.inter.nics_per_node) == ("mybox", 8, 8)
    assert s.intra.bus_bytes_per_s == pytest.approx(360e9) and s.inter.hop_latency_s == pytest.approx(5e-6)
    assert parse_system(_write(tmp_path, _doc(network__inter_node=None), "one-box.yml")).inter is None


def test_local_reads_the_file_at_local_system_path(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOFLINE_LOCAL_SYSTEM", str(tmp_path / "mine.yaml"))
    assert local_system_path() == tmp_path / "mine.yaml"
    _write(tmp_path, _doc(id="local", chip="local"), "mine.yaml")
    assert load_system("local").chip == "local"


def test_local_system_path_defaults_beside_the_local_hardware(tmp_path, monkeypatch):
    monkeypatch.delenv("ROOFLINE_LOCAL_SYSTEM", raising=False)
    monkeypatch.setenv("ROOFLINE_LOCAL_HARDWARE", str(tmp_path / "cfg" / "local.yaml"))
    assert local_system_path() == tmp_path / "cfg" / "local-system.yaml"


def test_local_without_a_file_says_to_calibrate(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOFLINE_LOCAL_SYSTEM", str(tmp_path / "absent.yaml"))
    with pytest.raises(RooflineError, match=r"roofline calibrate --network"):
        load_system("local")


def test_unknown_id_suggests_the_closest():
    with pytest.raises(UnknownHardwareError, match=r"unknown system 'dgx-h10'.*did you mean 'dgx-h100'"):
        load_system("dgx-h10")


def test_unknown_key_is_named(tmp_path):
    message = _fails(tmp_path, _doc(network__intra_node__bandwidth_gbps=300))
    assert "unknown key 'network.intra_node.bandwidth_gbps'" in message and "bus_bandwidth_gbps" in message
    assert "unknown key 'colour'" in _fails(tmp_path, _doc(colour="green"))


def test_missing_key_is_named(tmp_path):
    assert "'network.intra_node.hop_latency_us' is missing" in _fails(
        tmp_path, _doc(network__intra_node__hop_latency_us=None))
    assert "'network.inter_node.nics_per_node' is missing" in _fails(
        tmp_path, _doc(network__inter_node__nics_per_node=None))
    assert "'source' is missing" in _fails(tmp_path, _doc(source=None))


def test_negative_bandwidth_names_key_and_value(tmp_path):
    message = _fails(tmp_path, _doc(network__intra_node__bus_bandwidth_gbps=-5))
    assert "'network.intra_node.bus_bandwidth_gbps' is -5" in message and "positive" in message


def test_gigabits_for_gigabytes_is_caught(tmp_path):
    """8x 400 Gb/s written as 3200 'GB/s': over 2 x 8 x 50 GB/s, the most a busbw can be."""
    message = _fails(tmp_path, _doc(network__inter_node__bus_bandwidth_gbps=3200))
    assert "3200 GB/s" in message and "not Gb/s" in message


def test_chip_not_in_the_catalog(tmp_path):
    message = _fails(tmp_path, _doc(chip="h100-sxn"))
    assert "key 'chip' is 'h100-sxn'" in message and "did you mean 'h100-sxm'" in message


@pytest.mark.parametrize("value", [0, -1, 2.5, "8", True, 100000])
def test_gpus_per_node_must_be_a_whole_number_in_range(tmp_path, value):
    message = _fails(tmp_path, _doc(gpus_per_node=value))
    assert "key 'gpus_per_node'" in message and "whole number from 1 to" in message


def test_non_yaml_and_non_mapping(tmp_path):
    assert "not valid YAML at line" in _fails(tmp_path, "id: [unclosed\nname: x\n")
    assert "expected a mapping" in _fails(tmp_path, "- just\n- a list\n")
    assert "aliases" in _fails(tmp_path, "a: &a [1, 2]\nb: *a\n")


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "box.yaml"
    path.write_bytes(yaml.safe_dump(GOOD).replace("My box", "Caf\xe9").encode("latin-1"))
    with pytest.raises(HardwareSpecError, match=r"not UTF-8.*0xe9"):
        load_system(str(path))
    with pytest.raises(UnknownHardwareError, match=r"does not exist"):
        load_system(str(tmp_path / "nothing.yaml"))
    with pytest.raises(UnknownHardwareError, match=r"is a directory"):
        load_system(str(tmp_path) + "/")


def test_write_system_yaml_validates_then_replaces(tmp_path):
    target = tmp_path / "local-system.yaml"
    write_system_yaml(_doc(id="local"), target)
    assert load_system(str(target)).id == "local"
    with pytest.raises(HardwareSpecError) as info:
        write_system_yaml(_doc(id="broken", gpus_per_node=0), target)
    assert str(target) in str(info.value)  # the message names the target, not the temporary file
    assert load_system(str(target)).id == "local"  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["local-system.yaml"]  # no temporary left behind


def test_systems_ship_in_the_wheel():
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("roofline_hardware = ["))
    assert '"systems/*.yaml"' in line
