"""Every bad input of tests/bad_inputs.py fails cleanly: a non-zero exit, one to three lines on
stderr, no traceback, no user file changed. The default run calls the command line in this
process (fast); `-m slow` runs each case as its own `python -m estimator.cli` subprocess with a
time limit, as a user would, plus the cases that need the environment (encodings, pipes)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bad_inputs import all_cases, make_user_files
from estimator.cli import main

CASES = all_cases()
MAX_LINES = 3


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def _user_files_unchanged(before: dict, after: dict) -> list[str]:
    return [name for name, digest in before.items() if after.get(name) != digest]


def _check(code: int, stderr: str, before: dict, after: dict, argv: list[str]) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code not in (0, None), f"{argv}: exit {code}"
    assert "Traceback" not in stderr, f"{argv}:\n{stderr}"
    assert 1 <= len(lines) <= MAX_LINES, f"{argv}: {len(lines)} lines:\n{stderr[:2000]}"
    assert len(stderr) < 1200, f"{argv}: {len(stderr)} characters"
    assert not _user_files_unchanged(before, after), f"{argv} changed {_user_files_unchanged(before, after)}"


def test_the_corpus_is_broad():
    assert len(CASES) >= 250 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c for c in CASES if not c.env], ids=lambda c: c.name)
def test_bad_input_fails_cleanly_in_process(case, tmp_path, monkeypatch, capsys):
    make_user_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    try:
        code = main(case.argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    _check(code, capsys.readouterr().err, before, _snapshot(tmp_path), case.argv)


def _run(argv: list[str], cwd: Path, env: dict | None = None, timeout: int = 120):
    return subprocess.run([sys.executable, "-m", "estimator.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_fails_cleanly_as_a_subprocess(case, tmp_path):
    make_user_files(tmp_path)
    before = _snapshot(tmp_path)
    done = _run(case.argv, tmp_path, case.env)
    _check(done.returncode, done.stderr, before, _snapshot(tmp_path), case.argv)


def test_streams_that_fail_or_lack_characters(tmp_path):
    """An ASCII-only terminal gets replacement characters, a closed pipe ends quietly, a full
    disk (/dev/full) gives one line."""
    ascii_run = _run(["estimate", "resnet18", "--top", "2"], tmp_path, {"PYTHONIOENCODING": "ascii"})
    assert ascii_run.returncode == 0 and "Traceback" not in ascii_run.stderr and "resnet18" in ascii_run.stdout
    piped = subprocess.run(f"{sys.executable} -m estimator.cli hardware list --json | head -c 0", shell=True,
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in piped.stderr and "Broken" not in piped.stderr
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "estimator.cli", "hardware", "list"], cwd=tmp_path,
                                  stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
