"""Host time of whole eager steps whose kernels do almost no work, on a CUDA GPU.

Zoo models at tiny inputs (batch 1, 2 in training, 32x32 images, 8 tokens) keep the GPU idle most of the step,
so the step's time is what the host spends issuing it: Python, module calls, dispatch, autograd,
cuDNN/cuBLAS calls, launches. bench/gpu_rows.py-style predictions of the same steps from the
host probes (estimator.host_probes, which time hot loops of one tiny op) show how much more an
op costs inside a real model. Models here are kept apart from the ones bench/gpu_steps.py
validates on, so what is learnt here is checked there.

    python bench/gpu_host_in_situ.py --out DIR
    python bench/gpu_host_in_situ.py --out DIR --device cpu     # structure check

Then a few full-size steps on channels_last tensors (model names ending in ":cl").
`--size-sweep` instead profiles BERT-base and ResNet-50 at batch 1 over growing inputs.

Appends JSON lines to DIR/gpu_host_in_situ.jsonl: {"kind": "step", model, batch, size,
precision, mode, step_s, host_s, runs}, as bench/gpu_steps.py writes them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_steps import Out, env_record, measure_step  # noqa: E402

TINY = [("resnet18", 32), ("resnet101", 32), ("densenet121", 32), ("mobilenet_v3_large", 32), ("vgg16", 32),
        ("convnext_tiny", 32), ("distilbert", 8), ("bert_large", 8), ("gpt2_medium", 8), ("t5_small", 8),
        ("vit_l_16", 32)]
MODES = [("fp32", False), ("amp-fp16", False), ("fp32", True), ("amp-bf16", True)]
# and, after them, full-size channels_last steps (the layout of the published AMP CNN recipes)
CHANNELS_LAST = [("resnet50:cl", 256, "amp-fp16", True, None, True), ("resnet50:cl", 256, "amp-fp16", False, None, False),
                 ("efficientnet_b0:cl", 256, "amp-fp16", True, None, True), ("mobilenet_v2:cl", 256, "amp-fp16", True, None, False)]


# the same models at growing inputs, profiled: does a model's host time grow with its input?
SIZE_SWEEP = ([("bert_base", 1, "amp-fp16", False, seq, True) for seq in (8, 32, 128, 512)]
              + [("resnet50", 1, precision, False, image, True) for precision in ("amp-fp16", "fp32")
                 for image in (32, 96, 224)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-s", type=float, default=200.0)
    parser.add_argument("--size-sweep", action="store_true", help="only the profiled input-size sweep")
    args = parser.parse_args(argv)
    out = Out(args.out, args.budget_s, "gpu_host_in_situ.jsonl")
    out.write(env_record(args.device))
    if args.size_sweep:
        for config in SIZE_SWEEP:
            measure_step(out, config, args.device)
        out.write({"kind": "done"})
        return 0
    for name, size in TINY:
        for precision, train in MODES:
            if out.left_s() < 10:
                out.write({"kind": "skipped", "from": [name, precision, train]})
                return 0
            if args.device == "cpu" and precision.startswith("amp"):
                continue
            batch = 2 if train else 1  # batch norm in training needs more than one value per channel
            measure_step(out, (name, batch, precision, train, size, False), args.device, warmup=5, runs=10)
    if args.device.startswith("cuda"):
        for config in CHANNELS_LAST:
            if out.left_s() < 20:
                break
            measure_step(out, config, args.device)
    out.write({"kind": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
