"""Does `roofline calibrate` give the same roofs twice? Runs calibrate() twice in this process and
compares the GEMM peak per dtype, the memory bandwidth and the per-op overhead.

Target: GEMM peaks and bandwidth agree within 5% (relative difference |a - b| / mean). The
overhead is reported but not held to the target: a microsecond-scale figure moves with the
machine's background activity far more than the roofs do.

    python bench/calibrate_repeatability.py --quick
    python bench/calibrate_repeatability.py            # full plan: a few minutes
    python bench/calibrate_repeatability.py --quick --runs 3
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimator.calibrate import calibrate, summary_lines  # noqa: E402

TARGET = 0.05


def figures(doc: dict) -> dict[str, float]:
    out = {f"GEMM {k} TFLOP/s": v for k, v in doc["peak_tflops"]["matrix"].items()}
    out["bandwidth GB/s"] = doc["memory"]["bandwidth_gbps"]
    out["overhead us"] = doc["kernel_overhead_us"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick plan (under a minute per run)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--runs", type=int, default=2, help="calibrations to compare (default 2)")
    parser.add_argument("--verbose", action="store_true", help="print each run's summary lines")
    args = parser.parse_args(argv)

    runs, seconds = [], []
    for i in range(args.runs):
        t0 = time.perf_counter()
        doc = calibrate(device=args.device, quick=args.quick)
        seconds.append(time.perf_counter() - t0)
        runs.append(figures(doc))
        print(f"run {i + 1}: {seconds[-1]:.1f} s", flush=True)
        if args.verbose:
            print("  " + "\n  ".join(summary_lines(doc)), flush=True)

    keys = [k for k in runs[0] if all(k in r for r in runs)]
    head = f"{'figure':<22}" + "".join(f"{'run ' + str(i + 1):>12}" for i in range(len(runs))) + f"{'rel. diff':>12}"
    print(f"\n{'quick' if args.quick else 'full'} plan, {args.device}, {len(runs)} runs\n{head}")
    verdict = {}
    for k in keys:
        values = [r[k] for r in runs]
        rel = max(abs(a - b) / ((a + b) / 2) for a, b in itertools.combinations(values, 2))
        verdict[k] = rel
        print(f"{k:<22}" + "".join(f"{v:>12.4g}" for v in values) + f"{100 * rel:>11.1f}%")
    for k in sorted(set().union(*runs) - set(keys)):
        print(f"{k:<22} measured in some runs only (a dtype probe decided differently)")
    held = [k for k in keys if not k.startswith("overhead")]
    ok = all(verdict[k] <= TARGET for k in held)
    print(f"\nGEMM peaks and bandwidth within {100 * TARGET:.0f}%: {'yes' if ok else 'NO'}"
          + ("" if ok else " (" + ", ".join(f"{k} {100 * verdict[k]:.1f}%" for k in held
                                             if verdict[k] > TARGET) + ")"))
    print(f"durations: {', '.join(f'{s:.1f} s' for s in seconds)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
