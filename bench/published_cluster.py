"""Predicted vs published multi-GPU training throughput, one line per multi-GPU row of
../shared/reference/published_sample.yaml.

Every row is mapped by rules that hold for every row; nothing is fitted per row:
  * model: ResNet-50 is the zoo's (channels_last under AMP, as bench/published.py maps the
    NVIDIA DeepLearningExamples recipe, SGD with momentum); GPT-style decoders are built from the
    row's size (ARCHITECTURES below, each with its source) with the zoo's GPT-2 block (pre-norm,
    GELU MLP of 4 x width, tied embeddings), AdamW;
  * system: the catalog system of the row's chip named by the row (DGX-1 for V100, RoCE for
    MosaicML's A100 table), else the chip's DGX/HGX system;
  * layout: from the row's `framework`: FSDP -> fsdp (FULL_SHARD), "TP t, PP p" -> tp=t,pp=p
    (dp the rest); over dp: distopt where the notes name Megatron's overlapped param gather (its
    distributed optimizer), else ddp;
  * micro-batch and accumulation: the row's batch per GPU and `grad-accum N` in its notes;
    where the row gives only a global batch, the micro-batch its source script uses (MICRO_BATCH);
  * precision: AMP-* as our amp-*; Megatron's "mixed precision" and BF16 also as amp-fp16 /
    amp-bf16: Megatron computes in half precision but keeps fp32 master weights and fp32 main
    gradients (megatron/core/optimizer), and runs the loss's softmax in fp32, as autocast does;
  * recompute: as the row or its source states (GPT-3 175B's HFU counts recompute);
  * attention: fused (FlashAttention) where the framework has it (bench/published.py's rule),
    eager execution (PyTorch issues every op).
Compared with: images/s or tokens/s per GPU where the row gives them; Megatron rows give TFLOP/s
per GPU by Megatron's formula (Narayanan et al. 2021, eq. 3: 72 B s l h^2 (1 + s/6h + V/12lh) per
iteration, 96 ... V/16lh with full recompute), so the prediction is converted with the same
formula: the error is the throughput error either way.

    python bench/published_cluster.py [--reference PATH] [--only ID-SUBSTRING]
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from pathlib import Path

import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import roofline_zoo  # noqa: E402
from published import PRECISIONS, REFERENCE, channels_last, chip_id, fused_attention  # noqa: E402
from roofline_zoo.gpt2 import GPT2, GPT2Config  # noqa: E402

from estimator.capture import capture  # noqa: E402
from estimator.cluster import predict_cluster  # noqa: E402
from estimator.hardware import load_hardware  # noqa: E402
from estimator.parallel_layout import parse_layout  # noqa: E402
from estimator.precision import get_precision  # noqa: E402
from estimator.system import load_system, systems_for_chip  # noqa: E402

# (layers, heads, width, vocabulary), each from the model's own publication
ARCHITECTURES = {
    "MPT-1B": (24, 16, 2048, 50368),  # mosaicml/llm-foundry scripts/train/yamls/pretrain/mpt-1b.yaml
    "MPT-7B": (32, 32, 4096, 50368),  # mosaicml/llm-foundry scripts/train/yamls/pretrain/mpt-7b.yaml
    "GPT-3 175B": (96, 96, 12288, 51200),  # Brown et al. 2020, Table 2.1; vocabulary padded as Megatron pads it
    "GPT 1.7B": (24, 16, 2048, 131072),  # the row: hidden 2048, 24 layers, 16 heads; vocabulary 131,072 (notes)
}
MICRO_BATCH = {"GPT-3 175B": 1, "GPT 1.7B": 4}  # Megatron-LM examples/gpt3 (micro-batch 1); 1.7B: 192 / 48 GPUs
RECOMPUTE = {"GPT-3 175B": True}  # the README's 44% is HFU: its formula counts the recomputed forward
MEGATRON_RECOMPUTE_FACTOR = {True: 96, False: 72}


def architecture(row: dict) -> str | None:
    return next((name for name in ARCHITECTURES if row["model"].startswith(name)), None)


def system_for(row: dict):
    chip = chip_id(row["hardware_id"])
    text = " ".join(str(row.get(k, "")) for k in ("hardware", "source_locator", "framework"))
    candidates = systems_for_chip(chip)
    if "RoCE" in text:
        roce = [s for s in candidates if "roce" in s.id]
        if roce:
            return roce[0]
    if "DGX-1" in text:
        return load_system("dgx-1-v100")
    preferred = [s for s in candidates if s.id.startswith(("dgx", "hgx"))]
    return (preferred or candidates)[0]


def layout_text(row: dict) -> str:
    framework = row["framework"]
    if "FSDP" in framework:
        return "fsdp"
    data = "distopt" if "overlap-param-gather" in str(row.get("notes", "")) else "ddp"
    parts = []
    for key in ("TP", "PP"):
        found = re.search(rf"{key} (\d+)", framework)
        if found and found.group(1) != "1":
            parts.append(f"{key.lower()}={found.group(1)}")
    return ",".join(parts + [data])


def precision_of(row: dict):
    text = row["precision"]
    if "Megatron" in row["framework"]:  # half model, fp32 master weights and gradients: mixed precision
        return get_precision("amp-bf16" if "BF16" in text else "amp-fp16")
    return get_precision(PRECISIONS[text])


def batch_plan(row: dict, name: str | None) -> tuple[int, int]:
    """(micro-batch per GPU, micro-batches per step)."""
    accumulate = re.search(r"grad-accum (\d+)", str(row.get("notes", "")))
    if row.get("batch_size_per_gpu"):
        return row["batch_size_per_gpu"], int(accumulate.group(1)) if accumulate else 1
    global_batch = int(re.search(r"global batch (\d+)", str(row.get("notes", "")) + " " + str(
        row.get("source_locator", ""))).group(1))
    return MICRO_BATCH[name], global_batch  # micro-batches per replica set once dp is known


def build(row: dict, name: str | None, micro: int):
    if name is None:  # a zoo model
        zoo = {"ResNet-50": "resnet50"}[row["model"].split(" v")[0]]
        model, inputs = roofline_zoo.get(zoo).build(batch=micro, image=row.get("image_size"), device="meta")
        if channels_last(row):
            model = model.to(memory_format=torch.channels_last)
            inputs = tuple(t.to(memory_format=torch.channels_last) for t in inputs)
        return model, inputs, zoo, "sgd-momentum"
    layers, heads, width, vocab = ARCHITECTURES[name]
    seq = row["seq_len"]
    with torch.device("meta"):
        model = GPT2(GPT2Config(vocab_size=vocab, max_positions=seq, layers=layers, heads=heads, dim=width))
    return model, (torch.zeros(micro, seq, dtype=torch.long, device="meta"),), name, "adamw"


def predict(row: dict):
    name = architecture(row)
    micro, accumulate = batch_plan(row, name)
    system = system_for(row)
    hardware = load_hardware(system.chip)
    layout = parse_layout(layout_text(row), row["num_gpus"])
    if row.get("batch_size_per_gpu") is None:
        accumulate = accumulate // (micro * layout.dp)  # the global batch over the replicas
    precision = precision_of(row)
    model, inputs, label, optimizer = build(row, name, micro)
    recompute = RECOMPUTE.get(name, False)
    attention = contextlib.nullcontext() if fused_attention(row) else sdpa_kernel([SDPBackend.MATH])
    with attention:
        step = capture(model, inputs, mode="train", model_name=label, optimizer=optimizer, accumulate=accumulate,
                       recompute=recompute, dispatch="cuda")
    return predict_cluster(step, system, hardware, precision, layout), name, recompute


def published_and_predicted(row: dict, result, name: str | None, recompute: bool) -> tuple[str, float, float]:
    """(what is compared, published, predicted) in the row's own unit."""
    if row.get("throughput") and "images" in row["throughput_unit"]:
        return "images/s", float(row["throughput"]), result.samples_per_s
    if row.get("throughput") and "tokens/s per GPU" in row["throughput_unit"]:
        return "tokens/s/GPU", float(row["throughput"]), result.tokens_per_s / result.gpus
    layers, _, width, vocab = ARCHITECTURES[name]
    seq = row["seq_len"]
    per_token = MEGATRON_RECOMPUTE_FACTOR[recompute] * layers * width ** 2 * (
        1 + seq / (6 * width) + vocab / ((16 if recompute else 12) * layers * width))
    return "TFLOP/s/GPU", float(row["tflops_per_gpu_reported"]), result.tokens_per_s / result.gpus * per_token / 1e12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--only", default="", help="rows whose id contains this text")
    args = parser.parse_args(argv)
    rows = [r for r in yaml.safe_load(args.reference.read_text())["rows"]
            if r.get("num_gpus", 1) > 1 and args.only in r["id"]]
    print(f"{'row':<50}{'system':<20}{'layout':<22}{'unit':<14}{'published':>11}{'predicted':>11}{'error':>9}"
          f"{'exposed comm':>14}{'memory GB':>11}")
    errors = []
    for row in rows:
        started = time.perf_counter()
        result, name, recompute = predict(row)
        unit, published, predicted = published_and_predicted(row, result, name, recompute)
        error = predicted / published - 1
        errors.append((row["id"], error))
        print(f"{row['id'][:49]:<50}{result.system:<20}{result.layout.name[:21]:<22}{unit:<14}{published:>11,.1f}"
              f"{predicted:>11,.1f}{100 * error:>+8.1f}%{result.communication_exposed_s * 1e3:>11.1f} ms"
              f"{result.memory_per_gpu_bytes / 1e9:>9.1f}{'' if result.fits else ' NO'}"
              f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    if errors:
        mae = sum(abs(e) for _, e in errors) / len(errors)
        bias = sum(e for _, e in errors) / len(errors)
        worst = max(errors, key=lambda item: abs(item[1]))
        within = sum(abs(e) <= 0.2 for _, e in errors)
        print(f"\n{len(errors)} rows: mean absolute error {100 * mae:.1f}%, bias {100 * bias:+.1f}%, "
              f"{within} within 20%, worst {worst[0]} {100 * worst[1]:+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
