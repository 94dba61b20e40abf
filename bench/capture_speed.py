"""Speed of capture + cost + roofline against FlopCounterMode counting the same step.

Prints, for a ResNet-50 batch-32 training step (override with --model/--batch):
  * FlopCounterMode counting forward+backward on meta tensors (the baseline),
  * our capture + cost + roofline (estimator.capture + evaluate + totals),
  * re-costing the captured step for another chip (no new trace),
each as the first (cold) run and the median of --repeats warm runs.

    python bench/capture_speed.py [--model resnet50] [--batch 32] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import roofline_zoo
from estimator import capture, evaluate, load_hardware


def flop_counter_step(model, inputs) -> None:
    with FlopCounterMode(display=False):
        out = model(*inputs)
        torch.nn.functional.cross_entropy(out, torch.zeros(out.shape[0], dtype=torch.long, device="meta")).backward()
    for p in model.parameters():
        p.grad = None


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first run, median of the next `repeats`) in seconds."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model, inputs = roofline_zoo.get(args.model).build(batch=args.batch)
    a100, h100 = load_hardware("a100-80gb-sxm"), load_hardware("h100-sxm")

    fc_first, fc = timed(lambda: flop_counter_step(model, inputs), args.repeats)
    ours_first, ours = timed(lambda: evaluate(capture(model, inputs, "train"), a100, "fp32").totals(), args.repeats)
    report = evaluate(capture(model, inputs, "train"), a100, "fp32")
    recost_first, recost = timed(lambda: report.recost(hardware=h100).totals(), args.repeats)
    t0 = time.perf_counter()
    report.recost(precision="amp-bf16").totals()
    recost_prec_first = time.perf_counter() - t0

    print(f"{args.model} batch {args.batch} training step, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {len(report.nodes)} aten nodes")
    print(f"{'what':<48}{'first (s)':>11}{'median (s)':>12}")
    print(f"{'FlopCounterMode count on meta tensors':<48}{fc_first:>11.3f}{fc:>12.3f}")
    print(f"{'capture + cost + roofline (ours)':<48}{ours_first:>11.3f}{ours:>12.3f}")
    print(f"{'re-cost for another chip':<48}{recost_first:>11.4f}{recost:>12.4f}")
    print(f"{'re-cost for another precision (rules re-run)':<48}{recost_prec_first:>11.4f}{'':>12}")
    print(f"ratio ours / FlopCounterMode (median): {ours / fc:.2f}x (target <= 2x); "
          f"re-cost {recost * 1e3:.1f} ms (target < 50 ms)")


if __name__ == "__main__":
    main()
