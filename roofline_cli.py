"""The `roofline` command's entry point: the estimator imported with Python's cyclic garbage
collector paused, then what the imports made frozen out of later collections.

Importing torch and the estimator makes about a million long-lived objects; left to the
collector, its passes over them cost 0.35 to 0.4 s of a 2.5 s start on a 2-core machine, and
a first `estimate` spends another 0.3 to 0.6 s collecting (measured with gc.callbacks; docs/speed.md).
A command's process is short and its imports live until it exits, so they are collected
never (`gc.freeze`), and the young generation every 20,000 allocations instead of 700:
capture makes and drops hundreds of thousands of small objects, which reference counting
frees; cycles wait a little longer. Library use (`import estimator`) keeps Python's defaults.

The command runs without importing torch._dynamo, which no command uses but FakeTensorMode and
meta-device initialisers import (as long again as importing torch; estimator.dynamo_free).

Example (pyproject's [project.scripts] points `roofline` here):
    $ roofline estimate resnet50 --train
"""
from __future__ import annotations

import gc


def main() -> int:
    gc.disable()
    try:
        from estimator.cli import main as run_command
        from estimator.dynamo_free import dynamo_unimported
    finally:
        gc.freeze()
        gc.enable()
    gc.set_threshold(20_000, 20, 20)
    with dynamo_unimported():
        return run_command()


if __name__ == "__main__":
    raise SystemExit(main())
