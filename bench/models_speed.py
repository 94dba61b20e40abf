"""Wall time of `roofline models` (every zoo model captured at batch 1) against its 10 s target.

Runs the command as a user would, in a fresh process; prints the wall time, the CPU time it
used (all its processes), the ratio to the target and the cores it could use. Timings on a
shared machine are noisy: repeat, and compare runs made back to back. Each repeat
starts with an empty step cache of its own (the first run captures every model) and runs
again on what the first wrote (estimator.step_cache).

    python bench/models_speed.py [--repeats 1]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

from estimator.parallel_work import usable_cores

TARGET_S = 10.0


def run_once(env: dict) -> tuple[float, float]:
    """(wall s, CPU s of the command and its workers) of one `roofline models --json`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "estimator.cli", "models", "--json"], capture_output=True, text=True,
                          check=False, env=env)
    wall_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"roofline models failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return wall_s, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"roofline models: {usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f}")
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "ROOFLINE_CACHE_DIR": cache}
            for what in ("empty cache", "cached steps"):
                wall_s, cpu_s = run_once(env)
                print(f"{what:<13} wall {wall_s:6.1f} s  cpu {cpu_s:6.1f} s  ratio to the {TARGET_S:.0f} s target "
                      f"{wall_s / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
