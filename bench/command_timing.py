"""Wall and CPU time of a `roofline` command in a fresh process, first with an empty step cache,
then on what that run wrote (shared by bench/report_speed.py and bench/models_speed.py).

Example:
    >>> cold_then_cached(["models", "--json"], target_s=10.0)
    empty cache   wall   18.5 s  cpu   32.9 s  ratio to the 10 s target 1.85
    cached steps  wall    6.1 s  cpu    8.2 s  ratio to the 10 s target 0.61
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time


def timed_command(arguments: list[str], env: dict) -> tuple[float, float]:
    """(wall s, CPU s of the command and its workers) of `roofline ARGUMENTS`; exits on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "roofline_cli", *arguments], capture_output=True, text=True,
                          check=False, env={**env, "CI": "true"})
    wall_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"roofline {arguments[0]} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return wall_s, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def cold_then_cached(arguments: list[str], target_s: float) -> None:
    """Prints one line per run: with an empty step cache of its own, then on what it wrote."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "ROOFLINE_CACHE_DIR": cache}
        for what in ("empty cache", "cached steps"):
            wall_s, cpu_s = timed_command(arguments, env)
            print(f"{what:<13} wall {wall_s:6.1f} s  cpu {cpu_s:6.1f} s  ratio to the {target_s:.0f} s target "
                  f"{wall_s / target_s:.2f}")
