"""Wall time of the default `roofline report` (predictions only) against its 30 s target.

Runs the command as a user would, in a fresh process, into a temporary folder; prints the wall
time, the CPU time it used (all its processes), the ratio to the target, and the cores it could
use. Each repeat starts with an empty step cache of its own (the first run captures every
step) and runs again on what the first wrote (estimator.step_cache). Timings on a shared
machine are noisy: repeat, and compare runs made back to back.

    python bench/report_speed.py [--hardware local,a100-80gb-sxm] [--repeats 1] [--jobs N]

`local` needs `roofline calibrate` first; without it pass e.g. --hardware v100-pcie,a100-80gb-sxm.
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

TARGET_S = 30.0


def run_once(hardware: str, jobs: int | None, env: dict) -> tuple[float, float]:
    """(wall s, CPU s of the command and its workers) of one report."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "estimator.cli", "report", "--hardware", hardware, "--out", out, "--force"]
        command += ["--jobs", str(jobs)] if jobs else []
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              env={**env, "CI": "true"})
        wall_s = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"roofline report failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return wall_s, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hardware", default="local,a100-80gb-sxm")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--jobs", type=int, help="worker processes (default: the command's own default)")
    args = parser.parse_args()
    print(f"roofline report --hardware {args.hardware} (10 models x 3 batches, predictions only); "
          f"{usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f}")
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "ROOFLINE_CACHE_DIR": cache}
            for what in ("empty cache", "cached steps"):
                wall_s, cpu_s = run_once(args.hardware, args.jobs, env)
                print(f"{what:<13} wall {wall_s:6.1f} s  cpu {cpu_s:6.1f} s  ratio to the {TARGET_S:.0f} s target "
                      f"{wall_s / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
