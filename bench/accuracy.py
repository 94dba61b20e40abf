"""Prediction accuracy on this machine: predicted vs measured step time over zoo models.

For each model: inference at batch 1, 16 and 64, and a training step at batch 8 (token models at
--seq, default 128), measured with estimator.measure on the calibrated `local` chip (run
`roofline calibrate` first). Prints each case and the mean absolute percentage error (MAPE)
per mode and per inference batch, and the bias (mean signed error); writes the rows to --out as JSON (targets: training < 15%, inference < 20%).

    python bench/accuracy.py [--models resnet50,vit_b_16,...] [--warmup 1] [--runs 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from estimator.hardware import load_hardware
from estimator.measure import measure

DEFAULT_MODELS = ("resnet18,resnet50,mobilenet_v2,efficientnet_b0,convnext_tiny,densenet121,vit_b_16,deit_small,"
                  "swin_tiny,bert_base,distilbert,gpt2")
CASES = (("inference", 1), ("inference", 16), ("inference", 64), ("train", 8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--seq", type=int, default=128, help="sequence length of token models")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="validation/cpu_accuracy.json")
    args = parser.parse_args()
    hardware = load_hardware("local")
    rows = []
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':<16}{'mode':<10}{'batch':>6}{'measured ms':>13}{'predicted ms':>14}{'error':>9}{'spread':>8}")
    for name in args.models.split(","):
        for mode, batch in CASES:
            seq = args.seq if name in ("bert_base", "distilbert", "gpt2", "bert_large") else None
            started = time.perf_counter()
            m = measure(name, batch, train=mode == "train", warmup=args.warmup, runs=args.runs, hardware=hardware,
                        seq=seq)
            rows.append({"model": name, "mode": mode, "batch": batch, "seq": seq, "measured_s": m.latency_s,
                         "predicted_s": m.predicted_s, "error": m.prediction_error, "spread": m.spread,
                         "runs_s": list(m.runs_s), "wall_s": time.perf_counter() - started})
            print(f"{name:<16}{mode:<10}{batch:>6}{m.latency_s * 1e3:>13,.1f}{m.predicted_s * 1e3:>14,.1f}"
                  f"{100 * m.prediction_error:>+8.1f}%{100 * m.spread:>7.1f}%", flush=True)
    summary = {}
    for mode in ("inference", "train"):
        errors = [abs(r["error"]) for r in rows if r["mode"] == mode]
        summary[mode] = 100 * sum(errors) / len(errors)
        print(f"MAPE {mode}: {summary[mode]:.1f}% over {len(errors)} cases "
              f"(target {'< 15%' if mode == 'train' else '< 20%'})")
    for mode, batch in CASES:
        errors = [r["error"] for r in rows if r["mode"] == mode and r["batch"] == batch]
        print(f"  {mode} batch {batch}: MAPE {100 * sum(map(abs, errors)) / len(errors):.1f}%, "
              f"bias {100 * sum(errors) / len(errors):+.1f}%")
    with open(args.out, "w") as f:
        json.dump({"hardware": hardware.to_dict(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                   "mape_percent": summary, "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
