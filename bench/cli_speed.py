"""Wall time of `roofline estimate` against `python -c "import torch"`, in fresh processes.

Each round runs, in this order, with an empty step cache at the start of the round:
  * `python -c "import torch"` (the baseline),
  * the first estimate: nothing cached, the step is captured (and written to the cache),
  * the same step on another chip: read from the cache,
  * the first estimate again with --no-cache (capture without touching the cache),
  * `import torch` plus the modules torch itself imports when a FakeTensorMode is made and
    runs a conv2d inside estimator.dynamo_free's block, as a capture does (the first size check
    of a Python meta kernel imports torch.fx.experimental.symbolic_shapes, with sympy): the
    floor of our capture, whatever its own cost;
  * the same for a plain FakeTensorMode, which also imports the whole torch._dynamo package
    (its constructor reads torch._dynamo.config): what the floor would be without the block.
The script first checks, in fresh processes, which of those modules each probe imports.
Prints the median of --rounds rounds and each one's ratio to the baseline. The machine may be
shared: the ratios come from runs interleaved in one round.

    python bench/cli_speed.py [--model resnet50] [--rounds 3] [-- extra estimate options]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def wall_s(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {done.stderr.strip()[-300:]}")
    return time.perf_counter() - start


FAKE_MODE_IMPORTS = ("torch._dynamo", "torch.fx.experimental.symbolic_shapes")

PROBE = """
import contextlib, sys, torch
from torch._subclasses.fake_tensor import FakeTensorMode
from estimator.dynamo_free import dynamo_unimported
with dynamo_unimported() if %r else contextlib.nullcontext():
    with FakeTensorMode():
        torch.nn.functional.conv2d(torch.empty(1, 3, 8, 8), torch.empty(4, 3, 3, 3))
print(" ".join(m for m in %r if m in sys.modules))
"""


def imported_by_fake_mode(as_captured: bool) -> list[str]:
    """The modules of FAKE_MODE_IMPORTS that a FakeTensorMode and its first conv2d import, inside
    dynamo_unimported (as a capture runs) or not."""
    done = subprocess.run([sys.executable, "-c", PROBE % (as_captured, FAKE_MODE_IMPORTS)], capture_output=True,
                          text=True, check=True)
    return done.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--first-chip", default="a100-80gb-sxm")
    parser.add_argument("--second-chip", default="h100-sxm")
    parser.add_argument("extra", nargs="*", help="more estimate options (after --), default --train")
    args = parser.parse_args()
    extra = args.extra or ["--train"]
    roofline = [sys.executable, "-m", "roofline_cli", "estimate", args.model, *extra]  # what `roofline` runs
    runs = {"import torch": [], "first estimate (captures)": [], "another chip (cached step)": [],
            "first estimate, --no-cache": [], "import torch + a capture's imports": [],
            "import torch + plain FakeTensorMode's": []}
    floors = {"import torch + a capture's imports": imported_by_fake_mode(True),
              "import torch + plain FakeTensorMode's": imported_by_fake_mode(False)}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, ROOFLINE_CACHE_DIR=cache)
            runs["import torch"].append(wall_s([sys.executable, "-c", "import torch"], env))
            runs["first estimate (captures)"].append(wall_s(roofline + ["--hardware", args.first_chip], env))
            runs["another chip (cached step)"].append(wall_s(roofline + ["--hardware", args.second_chip], env))
            runs["first estimate, --no-cache"].append(wall_s(roofline + ["--hardware", args.first_chip,
                                                                         "--no-cache"], env))
            for what, modules in floors.items():
                runs[what].append(wall_s([sys.executable, "-c", "import torch" + "".join(", " + m for m in modules)],
                                         env))
    base = runs["import torch"]
    print(f"roofline estimate {args.model} {' '.join(extra)}: median of {args.rounds} rounds, fresh processes")
    print(f"{'what':<40}{'median s':>10}{'x import torch':>16}")
    for what, times in runs.items():
        ratios = [t / b for t, b in zip(times, base)]
        print(f"{what:<40}{statistics.median(times):>10.2f}{statistics.median(ratios):>15.2f}x")
    for what, modules in floors.items():
        print(f"{what}: {', '.join(modules) or 'nothing more'}")
    print("targets: first estimate <= 1.6x, another chip from the cache <= 1.3x")


if __name__ == "__main__":
    main()
