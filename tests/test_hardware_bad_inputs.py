"""Bad hardware input (issue 14): each gives one short RooflineError naming the file or value,
never a traceback, a hang, or a message that repeats a huge value back."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from estimator.errors import HardwareSpecError, RooflineError, UnknownHardwareError, did_you_mean, quoted
from estimator.hardware import MAX_FILE_BYTES, load_hardware
from test_hardware import GOOD as VALID_CHIP

GOOD = VALID_CHIP.lstrip("\n")  # a valid chip file (line 1: id), which each case breaks in one place
# nine levels of nine aliases: 9^9 (387 million) leaves once expanded
BOMB = ('a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
        + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")))


def _short(message: str) -> str:
    """`message`, checked to be one short line: what the CLI prints as a single error."""
    assert len(message.splitlines()) < 4 and len(message) < 400, message
    return message


def _fails(spec, error=RooflineError) -> str:
    with pytest.raises(error) as info:
        load_hardware(str(spec))
    return _short(str(info.value))


def _file(tmp_path, content: str | bytes, name: str = "chip.yaml"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_the_good_file_loads(tmp_path):
    assert load_hardware(str(_file(tmp_path, GOOD))).id == "mychip"


def test_not_utf8_names_the_file_and_byte(tmp_path):
    path = _file(tmp_path, GOOD.replace("My chip", "Caf\xe9").encode("latin-1"))
    message = _fails(path, HardwareSpecError)
    assert str(path) in message and "not UTF-8" in message and "0xe9" in message


def test_oversized_file_is_refused_unread(tmp_path):
    path = _file(tmp_path, GOOD + "notes:\n" + "- padding line\n" * (MAX_FILE_BYTES // 15 + 10))
    message = _fails(path, HardwareSpecError)
    size = path.stat().st_size
    assert str(path) in message and f"{size:,} bytes" in message and f"{MAX_FILE_BYTES:,}" in message


@pytest.mark.parametrize("name", ["a" * 5000, "a" * 300, "a" * 300 + ".yaml", "e" * 300 + ".yaml"])
def test_overlong_names_and_paths(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    message = _fails(name if name.startswith("a") else tmp_path / name, UnknownHardwareError)
    assert "too long" in message.lower()


def test_alias_bomb_is_refused_with_its_place(tmp_path):
    path = _file(tmp_path, BOMB)
    message = _fails(path, HardwareSpecError)
    assert str(path) in message and "aliases" in message and "line 2, column" in message


def test_a_single_alias_is_refused_too(tmp_path):
    path = _file(tmp_path, GOOD.replace("source: my measurements", "source: &s my measurements\nnotes: *s"))
    assert "line 11, column 8" in _fails(path, HardwareSpecError)


@pytest.mark.parametrize("value", ["x" * 100_000, list(range(100_000)), {"k" * 1000: [[["deep"] * 50] * 50] * 50}])
def test_quoted_values_are_capped(value):
    text = quoted(value)
    assert len(text) < 110 and "\n" not in text


def test_huge_value_in_a_schema_error_is_not_repeated(tmp_path):
    path = _file(tmp_path, GOOD.replace("name: My chip", f"name: [{', '.join(['big'] * 50_000)}]"))
    message = _fails(path, HardwareSpecError)
    assert "key 'name'" in message and "a non-empty string" in message


def test_huge_unknown_key_is_capped(tmp_path):
    path = _file(tmp_path, GOOD + "k" * 1000 + ": 1\n")  # YAML allows keys of up to 1024 characters
    assert "(1,000 characters)" in _fails(path, HardwareSpecError)


@pytest.mark.parametrize("text, line, column", [
    (GOOD.replace("name: My chip", "name: [unclosed"), 3, 7),
    (GOOD.replace("kind: gpu", "kind: gpu: gpu"), 4, 10),
    ("id: x\n\tname: tab\n", 2, 1),
])
def test_syntax_errors_give_line_and_column(tmp_path, text, line, column):
    path = _file(tmp_path, text)
    message = _fails(path, HardwareSpecError)
    assert str(path) in message and f"line {line}, column {column}" in message


@pytest.mark.parametrize("text", ["[" * 100_000, "id: a\x00b\n"])
def test_deep_nesting_and_control_characters(tmp_path, text):
    path = _file(tmp_path, text)
    assert str(path) in _fails(path, HardwareSpecError)


@pytest.mark.parametrize("name", ["chips", "chips.yaml"])
def test_a_folder_is_called_a_folder(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    message = _fails(folder, UnknownHardwareError)
    assert str(folder) in message and "is a directory" in message and "YAML file" in message


def test_a_folder_named_like_an_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mychips").mkdir()
    assert "is a directory" in _fails("mychips", UnknownHardwareError)


@pytest.mark.parametrize("old, new, key", [
    ("bf16: 100", "bf16: 1e300", "peak_tflops.matrix.bf16"),  # 1e312 FLOP/s: inf
    ("bandwidth_gbps: 1000", "bandwidth_gbps: 1e-320", "memory.bandwidth_gbps"),  # denormal, then a zero ridge
    ("bandwidth_gbps: 1000", "bandwidth_gbps: .nan", "memory.bandwidth_gbps"),
    ("capacity_gb: 16", "capacity_gb: .inf", "memory.capacity_gb"),
    ("capacity_gb: 16", "capacity_gb: " + "9" * 400, "memory.capacity_gb"),  # an int beyond any float
    ("kernel_overhead_us: 4", "kernel_overhead_us: 1e300", "kernel_overhead_us"),
    ("source:", "achievable: {matrix: 1e-320}\nsource:", "achievable.matrix"),
])
def test_numbers_that_overflow_after_conversion(tmp_path, old, new, key):
    path = _file(tmp_path, GOOD.replace(old, new))
    message = _fails(path, HardwareSpecError)
    assert str(path) in message and f"key '{key}'" in message


def test_extreme_but_valid_chip_gives_finite_json(tmp_path):
    text = GOOD.replace("bf16: 100", "bf16: 1e17").replace("bandwidth_gbps: 1000", "bandwidth_gbps: 1e-38")
    hw = load_hardware(str(_file(tmp_path, text)))
    json.dumps(hw.to_dict(), allow_nan=False)  # raises on inf or nan
    assert all(math.isfinite(v) for v in hw.to_dict()["ridge_point_flops_per_byte"].values())


@pytest.mark.parametrize("spec", ["a100-80gb-sxm@", "@fp16", "a100-80gb-sxm@bf16", "h100 sxm", ""])
def test_ids_with_characters_outside_the_id_alphabet(spec):
    message = _fails(spec, UnknownHardwareError)
    assert quoted(spec) in message and "letters, digits" in message


def test_bad_id_suggests_its_valid_part():
    assert "did you mean 'a100-80gb-sxm'" in _fails("a100-80gb-sxm@", UnknownHardwareError)


def test_did_you_mean_prefers_ids_containing_the_text():
    message = _fails("a100", UnknownHardwareError)
    assert "'a100-80gb-sxm'" in message and "'a100-40gb-sxm'" in message
    assert "h100" not in message and "h200" not in message and "b200" not in message
    assert did_you_mean("sxm2", ["v100-sxm2", "h100-sxm"]) == "; did you mean 'v100-sxm2'?"
    assert did_you_mean("h100-sxn", ["h100-sxm", "t4"]) == "; did you mean 'h100-sxm'?"  # edit distance fallback
    assert did_you_mean("", ["h100-sxm"]) == ""


def test_cli_prints_one_short_line(tmp_path):
    bad = {"not_utf8.yaml": b"name: \xff\xfe chip\n", "bomb.yaml": BOMB.encode(),
           "syntax.yaml": b"id: x\npeaks: [1, 2\n", "inf.yaml": GOOD.replace("bf16: 100", "bf16: 1e300").encode()}
    (tmp_path / "folder").mkdir()
    specs = [str(_file(tmp_path, content, name)) for name, content in bad.items()]
    for spec in [*specs, str(tmp_path / "folder"), "x" * 5000, "a100-80gb-sxm@"]:
        done = subprocess.run([sys.executable, "-m", "estimator.cli", "hardware", "show", spec],
                              check=False, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[:2000]
        assert 1 <= len(done.stderr.strip().splitlines()) <= 3, done.stderr[:2000]
