"""Predicted vs published single-GPU throughput, one line per row of
../shared/reference/published_sample.yaml (third-party measurements), training and inference.

Each row is mapped, by rules that hold for every row, to a zoo model, a catalog chip, one of our
precisions and eager execution (what the published PyTorch/TensorFlow scripts ran); the step is
captured at the row's batch and input size and predicted on the chip. Nothing is fitted per
row. Workload choices, stated once:
  * the optimizer is the one the published recipe trains with where our catalog has it:
    SGD with momentum for ResNet-50 and SSD300 (NVIDIA DeepLearningExamples), AdamW otherwise
    (BERT's LAMB and EfficientNet's RMSprop keep one or two state tensors per parameter, as
    AdamW does);
  * BERT pre-training / SQuAD is our BertModel encoder at the row's sequence length with the
    default loss (the task heads are a few percent of the FLOPs);
  * inference rows are a forward under no_grad; training rows a whole step with the update;
  * memory layout: channels_last where the row says so (its `framework` field) or where the
    recipe sets it: NVIDIA DeepLearningExamples' PyTorch ConvNets (ResNet-50, EfficientNet) run
    AMP with `memory_format: nhwc` (PyTorch/Classification/ConvNets/configs.yml) and TF32/FP32
    without; every other row NCHW, PyTorch's default;
  * attention: fused (scaled_dot_product_attention's flash/memory-efficient kernels, PyTorch 2.0
    and later, NGC containers 23.xx on) where the row's framework had it; earlier stacks
    (PyTorch 1.x, NGC 20.xx-22.xx, TensorFlow 1.15) ran it as matmul, softmax, matmul, which the
    capture records by running SDPA's math path.

Printed per row: published and predicted samples/s, the error (predicted / published - 1), and
what bounds the predicted step (host, compute or memory: the resource that carries most of
its time). Then the mean absolute error, the bias (mean signed error) and the worst row,
overall and per kind (training, inference, small batch <= 8, large batch >= 64).

    python bench/published.py [--reference PATH] [--execution eager]
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path

import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import roofline_zoo
from error_table import KINDS, file_by_kind, summary  # noqa: E402
from estimator.capture import capture  # noqa: E402
from estimator.hardware import catalog_ids, load_hardware  # noqa: E402
from estimator.memory import step_memory  # noqa: E402
from estimator.report import evaluate  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "published_sample.yaml"
MODELS = {"resnet-50": "resnet50", "bert-large": "bert_large", "bert-base": "bert_base",
          "efficientnet-b0": "efficientnet_b0", "efficientnet-b4": "efficientnet_b4", "deit-s": "deit_small",
          "swin-t": "swin_tiny", "ssd300": "ssd300", "vit-b/16": "vit_b_16", "convnext-t": "convnext_tiny",
          "electra-base": "bert_base", "mobilenetv2": "mobilenet_v2", "resnet-101": "resnet101"}
PRECISIONS = {"FP32": "fp32", "TF32": "tf32", "AMP-FP16": "amp-fp16", "AMP-BF16": "amp-bf16", "BF16": "bf16",
              "FP16": "fp16"}
OPTIMIZERS = {"resnet50": "sgd-momentum", "ssd300": "sgd-momentum"}


def zoo_name(model: str) -> str:
    """'ResNet-50 v1.5' -> resnet50: the first word of the published name, matched case-blind."""
    key = model.lower().split(" ")[0].split("/")[0]
    if key not in MODELS:
        raise SystemExit(f"published row names model {model!r}; add its zoo model to MODELS")
    return MODELS[key]


def chip_id(hardware_id: str) -> str:
    """nvidia_a100_80gb_sxm -> a100-80gb-sxm: the vendor prefix dropped, underscores as dashes."""
    chip = hardware_id.split("_", 1)[1].replace("_", "-")
    if chip not in catalog_ids():
        raise SystemExit(f"published row names hardware {hardware_id!r}, which is not in the catalog as {chip!r}")
    return chip


def channels_last(row: dict) -> bool:
    """Whether the published run kept 4-D activations channels_last (module docstring)."""
    if "channels_last" in str(row.get("framework", "")):
        return True
    return "Classification/ConvNets" in row["source"] and row["precision"].startswith("AMP")


def fused_attention(row: dict) -> bool:
    """Whether the row's framework had fused attention kernels (module docstring)."""
    framework = str(row.get("framework", ""))
    version = re.search(r"PyTorch (\d+)\.", framework)
    if version:
        return int(version.group(1)) >= 2
    container = re.search(r"NGC (?:pytorch-)?(\d\d)\.\d\d", framework)
    if container:
        return int(container.group(1)) >= 23
    return "TensorFlow" not in framework


def has_attention(row: dict) -> bool:
    return roofline_zoo.get(zoo_name(row["model"])).family in ("encoder", "decoder", "vit", "seq2seq")


def predict(row: dict, execution: str, captures: dict) -> tuple[float, str, bool]:
    """(predicted samples/s, the step's bound, fits in memory) of one published row."""
    name = zoo_name(row["model"])
    train = row["task"] == "training"
    layout, fused = channels_last(row), fused_attention(row)
    key = (name, row["batch_size_per_gpu"], row.get("image_size"), row.get("seq_len"), train, layout, fused)
    if key not in captures:
        model, inputs = roofline_zoo.get(name).build(batch=row["batch_size_per_gpu"], image=row.get("image_size"),
                                                     seq=row.get("seq_len"), device="meta")
        if layout:
            model = model.to(memory_format=torch.channels_last)
            inputs = tuple(t.to(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs)
        with contextlib.nullcontext() if fused else sdpa_kernel([SDPBackend.MATH]):
            captures[key] = capture(model, inputs, mode="train" if train else "inference", model_name=name,
                                    optimizer=OPTIMIZERS.get(name, "adamw") if train else None, dispatch="cuda")
    report = evaluate(captures[key], load_hardware(chip_id(row["hardware_id"])), PRECISIONS[row["precision"]],
                      execution=execution)
    totals = report.totals()
    memory = step_memory(captures[key], report.precision, optimizer=captures[key].optimizer)
    fits = memory.peak_bytes <= report.hardware.memory_capacity_bytes
    return totals["throughput_samples_per_s"], totals.get("step_bound", "-"), fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--execution", default="eager")
    args = parser.parse_args(argv)
    rows = [r for r in yaml.safe_load(args.reference.read_text())["rows"] if r.get("num_gpus", 1) == 1]
    print(f"{'row':<48}{'chip':<15}{'precision':<10}{'batch':>6}{'published':>11}{'predicted':>11}{'error':>9}"
          f"  bound    fits layout")
    kinds: dict[str, list[tuple[str, float]]] = {k: [] for k in ("all", *KINDS)}
    captures: dict = {}
    for row in rows:
        predicted, bound, fits = predict(row, args.execution, captures)
        published = float(row["throughput_per_gpu"])
        error = predicted / published - 1
        item = (row["id"], error)
        kinds["all"].append(item)
        file_by_kind(kinds, item, row["task"] == "training", row["batch_size_per_gpu"])
        print(f"{row['id'][:47]:<48}{chip_id(row['hardware_id']):<15}{PRECISIONS[row['precision']]:<10}"
              f"{row['batch_size_per_gpu']:>6}{published:>11,.1f}{predicted:>11,.1f}{100 * error:>+8.1f}%"
              f"  {bound:<8} {'yes' if fits else 'NO':<5}{'NHWC' if channels_last(row) else 'NCHW'}"
              f"{', unfused attention' if has_attention(row) and not fused_attention(row) else ''}", flush=True)
    print()
    for label, errors in kinds.items():
        print(summary(label, errors, "rows"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
