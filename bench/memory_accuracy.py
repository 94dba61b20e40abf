"""How close is the predicted peak memory of a step to the measured one?

For each configuration: the step is captured on the meta device (optimizer=None) and its peak
predicted by estimator.memory.step_memory (fp32, optimizer "sgd": no optimizer state, since
none runs); then the model is built on the CPU with real weights, one real step runs
(training: forward, DefaultLoss, torch.autograd.grad w.r.t. the trainable parameters;
inference: a no_grad forward; "train+recompute": blocks checkpointed, as capture's recompute
does) and estimator.memory.measure_step_memory tracks every tensor
storage the ops create and free, parameters, buffers and inputs included. Prints model,
mode, batch, predicted and measured peak (MiB), error = (predicted - measured) / measured,
the predicted peak's phase and op, and the wall time of the row.

    python bench/memory_accuracy.py            # about a minute on 2 cores

tests/test_memory.py pins smaller sizes of the same check (estimator.memory.zoo_peak_check).
"""
from __future__ import annotations

import argparse
import time


from estimator.memory import zoo_peak_check

# (model, mode, batch, build options); mode "train+recompute" checkpoints the blocks (capture's recompute)
DEFAULT = [
    ("resnet18", "train", 8, {"image": 160}),
    ("resnet50", "train", 8, {"image": 128}),
    ("resnet50", "train+recompute", 8, {"image": 128}),
    ("mobilenet_v2", "train", 8, {"image": 160}),
    ("vit_b_16", "train", 2, {}),
    ("bert_base", "train", 8, {"seq": 128}),
    ("gpt2", "train", 4, {"seq": 256}),
    ("gpt2", "train+recompute", 4, {"seq": 256}),
    ("resnet50", "inference", 8, {}),
    ("mobilenet_v2", "inference", 8, {"image": 160}),
    ("vit_b_16", "inference", 4, {}),
    ("gpt2", "inference", 2, {"seq": 256}),
]


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(f"{'model':<14}{'mode':<17}{'batch':>5}  {'options':<12}{'pred MiB':>10}{'meas MiB':>10}{'error':>8}"
          f"  {'time':>6}  peak at")
    for name, mode, batch, options in DEFAULT:
        start = time.perf_counter()
        est, measured = zoo_peak_check(name, mode, batch, **options)
        predicted = est.peak_bytes
        opts = " ".join(f"{k}={v}" for k, v in options.items())
        print(f"{name:<14}{mode:<17}{batch:>5}  {opts:<12}{predicted / 2**20:>10.1f}{measured / 2**20:>10.1f}"
              f"{(predicted - measured) / measured:>+8.2%}  {time.perf_counter() - start:>5.1f}s  "
              f"{est.peak_phase} {est.peak_op} ({est.peak_module or 'model'})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
