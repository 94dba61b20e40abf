"""Predicted vs published LLM serving throughput, one line per row below (each with its source and
software; serving stacks change throughput 2-3x between versions, so the version is part of the row).

Rules for every row (nothing fitted per row):
  * the decoder is the zoo's of that size (estimator.serving_models) at the row's precision;
  * execution: PyTorch eager where the row ran eager PyTorch; compiled-graphs for torch.compile's
    mode="reduce-overhead" (gpt-fast: fused kernels replayed as a CUDA graph); cuda-graphs for
    TensorRT-LLM's C++ runtime (its own fused kernels, launched without Python; our closest mode);
  * a row of a static batch (all users start together) is predicted as one prefill of the batch
    then generate - 1 decode steps; output tokens/s = batch x generate / that time;
  * a row of one user's tokens/s is 1 / the mean time per output token.

    python bench/published_serving.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimator.hardware import load_hardware  # noqa: E402
from estimator.precision import get_precision  # noqa: E402
from estimator.serving import serve  # noqa: E402
from estimator.serving_models import decoder_for  # noqa: E402

ROWS = [
    dict(id="gpt-fast llama-2-7b a100 bs1 eager", model="llama2_7b", chip="a100-80gb-sxm", precision="bf16",
         execution="eager", batch=1, prompt=5, generate=200, metric="tokens/s per user", published=25.5,
         software="gpt-fast (pytorch-labs), PyTorch nightly of Nov 2023, no torch.compile",
         source="pytorch.org/blog/accelerating-generative-ai-2 ('Accelerating Generative AI with PyTorch II: GPT, "
                "Fast'): Llama-7B on an A100-80GB, eager baseline 25.5 tok/s; prompt 'Hello, my name is', 200 "
                "new tokens as in gpt-fast's generate.py"),
    dict(id="gpt-fast llama-2-7b a100 bs1 compiled", model="llama2_7b", chip="a100-80gb-sxm", precision="bf16",
         execution="compiled-graphs", batch=1, prompt=5, generate=200, metric="tokens/s per user", published=104.9,
         software="gpt-fast, torch.compile(mode='reduce-overhead', fullgraph=True), static KV cache",
         source="pytorch-labs/gpt-fast README, benchmark table: Llama-2-7B, A100-80GB, bf16 (base) 104.9 tok/s"),
    dict(id="gpt-fast llama-2-7b a100 bs1 int8", model="llama2_7b", chip="a100-80gb-sxm", precision="bf16",
         weights="int8", execution="compiled-graphs", batch=1, prompt=5, generate=200, metric="tokens/s per user",
         published=155.6, software="gpt-fast, int8 weight-only (torch.compile's generated dequant-matmul), "
                                   "reduce-overhead",
         source="pytorch-labs/gpt-fast README, benchmark table: Llama-2-7B, A100-80GB, 8-bit 155.58 tok/s"),
    dict(id="gpt-fast llama-2-7b a100 bs1 int4", model="llama2_7b", chip="a100-80gb-sxm", precision="bf16",
         weights="int4", execution="compiled-graphs", batch=1, prompt=5, generate=200, metric="tokens/s per user",
         published=196.8, software="gpt-fast, int4 weight-only groups of 32 (tinygemm kernel), reduce-overhead",
         source="pytorch-labs/gpt-fast README, benchmark table: Llama-2-7B, A100-80GB, 4-bit (G=32) 196.80 tok/s"),
    dict(id="trt-llm llama-7b a100 bs256 128/128", model="llama2_7b", chip="a100-80gb-sxm", precision="fp16",
         execution="cuda-graphs", batch=256, prompt=128, generate=128, metric="output tokens/s", published=5353.0,
         software="TensorRT-LLM (v0.5/0.6 era performance table), fp16, static batch",
         source="NVIDIA/TensorRT-LLM docs/source/performance.md: LLaMA 7B, A100-SXM4-80GB, FP16, batch 256, "
                "input 128, output 128: 5,353 tokens/s"),
]


def predict(row: dict) -> float:
    model, config, name = decoder_for(row["model"])
    result = serve(model, config, name, load_hardware(row["chip"]), get_precision(row["precision"]), row["prompt"],
                   row["generate"], [row["batch"]], weights=row.get("weights", "auto"), execution=row["execution"])
    point = result.points[0]
    if row["metric"] == "tokens/s per user":
        return point.tokens_per_s_per_user
    total_s = point.prefill.time_s + (row["generate"] - 1) * point.time_per_token_s
    return row["batch"] * row["generate"] / total_s


def main() -> int:
    print(f"{'row':<40}{'chip':<15}{'execution':<16}{'metric':<19}{'published':>10}{'predicted':>11}{'error':>9}")
    errors = []
    for row in ROWS:
        predicted = predict(row)
        error = predicted / row["published"] - 1
        errors.append(error)
        print(f"{row['id']:<40}{row['chip']:<15}{row['execution']:<16}{row['metric']:<19}{row['published']:>10,.1f}"
              f"{predicted:>11,.1f}{100 * error:>+8.1f}%", flush=True)
    mae = sum(abs(e) for e in errors) / len(errors)
    print(f"\n{len(errors)} rows: mean absolute error {100 * mae:.1f}%, bias {100 * sum(errors) / len(errors):+.1f}%")
    for row in ROWS:
        print(f"  {row['id']}: {row['software']}; {row['source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
