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

from command_timing import cold_then_cached
from estimator.parallel_work import usable_cores

TARGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"roofline models: {usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f}")
    for _ in range(args.repeats):
        cold_then_cached(["models", "--json"], TARGET_S)


if __name__ == "__main__":
    main()
