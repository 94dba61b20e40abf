"""Which ops carry the prediction error? Times every aten op of a real step and sets it beside
the prediction for the same op.

The real model runs on the CPU under a dispatch mode that times each aten op, the same ops at
the same level the capture records (forward, loss and backward), so the timed sequence lines up
with the captured nodes (estimator.op_timer.align; ops only one side has are counted and
left out). Each op's time is the median over --runs steps; the dispatch mode's own Python
cost is outside the timed call.
Prints predicted vs measured per op class and per kernel (estimator.kernels), each with its
phase, largest error first.

    python bench/op_errors.py mobilenet_v2 --batch 8 --train
    python bench/op_errors.py gpt2 --batch 1 --seq 128 --top 15
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import roofline_zoo  # noqa: E402
from estimator.capture import DefaultLoss, capture  # noqa: E402
from estimator.hardware import load_hardware  # noqa: E402
from estimator.op_timer import OpTimer, align  # noqa: E402
from estimator.precision import get_precision  # noqa: E402
from estimator.roofline import node_time, step_costs  # noqa: E402


def timed_step(model, inputs, train: bool) -> list[tuple[str, float]]:
    params = [p for p in model.parameters() if p.requires_grad]
    with OpTimer() as timer, torch.set_grad_enabled(train):
        out = model(*inputs)
        if train:
            torch.autograd.grad(DefaultLoss()(out), params, allow_unused=True)
    return timer.ops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int)
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--hardware", default="local")
    args = parser.parse_args(argv)
    entry = roofline_zoo.get(args.model)
    chip, precision = load_hardware(args.hardware), get_precision("fp32")
    mode = "train" if args.train else "inference"

    meta_model, meta_inputs = entry.build(batch=args.batch, seq=args.seq, device="meta")
    step = capture(meta_model, meta_inputs, mode=mode, optimizer=None)
    costs = step_costs(step, precision)
    predicted = [node_time(c, chip, precision).total_s for c in costs]

    model, inputs = entry.build(batch=args.batch, seq=args.seq, device="cpu")
    model.train(args.train)
    timed_step(model, inputs, args.train)  # warm-up
    runs = [timed_step(model, inputs, args.train) for _ in range(args.runs)]
    if any(len(r) != len(step.nodes) for r in runs):
        print(f"note: {len(step.nodes)} captured ops, {[len(r) for r in runs]} timed")
    measured = [statistics.median(r[i][1] for r in runs) for i in range(min(len(r) for r in runs))]

    by_class: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    by_op: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    pairs = align([n.name for n in step.nodes], [name for name, _ in runs[0]])
    skipped = len(step.nodes) - len(pairs)
    for i, j in pairs:
        node = step.nodes[i]
        phase = "backward" if node.phase == "backward" else "forward"
        for table, key in ((by_class, (costs[i].op_class, phase)), (by_op, (costs[i].kernel, phase))):
            row = table[key]
            row[0] += 1
            row[1] += predicted[i]
            row[2] += measured[j]
    total_p, total_m = sum(r[1] for r in by_class.values()), sum(r[2] for r in by_class.values())
    print(f"{args.model} {mode} batch {args.batch} on {chip.id}: predicted {1e3 * total_p:.1f} ms, "
          f"measured {1e3 * total_m:.1f} ms (sum of op times), {skipped} captured ops unmatched")
    for title, table in (("op class", by_class), ("kernel", by_op)):
        print(f"\n{title:<44}{'count':>6}{'pred ms':>10}{'meas ms':>10}{'ratio':>7}{'err ms':>9}")
        rows = sorted(table.items(), key=lambda kv: -abs(kv[1][1] - kv[1][2]))[:args.top]
        for (key, phase), (count, p, m) in rows:
            print(f"{key + ' ' + phase:<44}{count:>6}{1e3 * p:>10.2f}{1e3 * m:>10.2f}"
                  f"{p / m if m else float('inf'):>7.2f}{1e3 * (p - m):>+9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
