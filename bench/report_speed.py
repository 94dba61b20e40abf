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
import tempfile

from command_timing import cold_then_cached
from estimator.parallel_work import usable_cores

TARGET_S = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hardware", default="local,a100-80gb-sxm")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--jobs", type=int, help="worker processes (default: the command's own default)")
    args = parser.parse_args()
    print(f"roofline report --hardware {args.hardware} (10 models x 3 batches, predictions only); "
          f"{usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f}")
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            command = ["report", "--hardware", args.hardware, "--out", out, "--force"]
            cold_then_cached(command + (["--jobs", str(args.jobs)] if args.jobs else []), TARGET_S)


if __name__ == "__main__":
    main()
