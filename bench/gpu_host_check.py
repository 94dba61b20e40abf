"""Host costs with the in-situ multipliers, then ten steps that depend on them, on one GPU machine.

The host probes (estimator.host_probes, now with in_situ_forward / in_situ_backward) and
batch-1/8 steps measured in one run, so bench/gpu_rows.py can check the multipliers on steps of
the same machine (host speed differs between machines; validation/h200/README.md).

    python bench/gpu_host_check.py cuda DIR 80      # device, output folder, time budget (s)
    python bench/gpu_host_check.py cpu DIR 20       # structure check: tiny fp32 steps
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpu_steps  # noqa: E402
from estimator.host_probes import measure_host  # noqa: E402

STEPS = [("resnet50", 1, "amp-fp16", False, None, False), ("resnet50", 1, "fp32", False, None, False),
         ("bert_base", 1, "amp-fp16", False, 128, False), ("bert_base", 8, "amp-fp16", False, 128, False),
         ("gpt2", 1, "amp-bf16", False, 128, False), ("vit_b_16", 1, "amp-bf16", False, None, False),
         ("efficientnet_b0", 1, "amp-fp16", False, None, False), ("resnet50", 8, "amp-fp16", True, None, False),
         ("bert_base", 8, "amp-fp16", True, 128, False), ("bert_large", 64, "amp-fp16", True, 128, False)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("device", choices=("cuda", "cpu"))
    parser.add_argument("out", type=Path)
    parser.add_argument("budget_s", type=float)
    args = parser.parse_args(argv)
    out = gpu_steps.Out(args.out, args.budget_s, "gpu_host_check.jsonl")
    out.write(gpu_steps.env_record(args.device))
    out.write({"kind": "host", **measure_host(args.device, plan="full" if args.device == "cuda" else "tiny")})
    for config in STEPS:
        if out.left_s() < 5:
            break
        if args.device == "cpu":  # structure check: tiny fp32 steps
            config = (config[0], 1, "fp32", config[3], 16 if config[4] else 32, False)
        gpu_steps.measure_step(out, config, args.device)
    out.write({"kind": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
