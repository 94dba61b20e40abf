"""Predicted vs published training throughput, one row per entry of
../shared/reference/published_sample.yaml (vendor-measured single-GPU numbers).

Each row is mapped, by rules that hold for every row, to a zoo model, a catalog chip and one of
our precisions; the model's training step is captured at the row's batch and input size and
costed on the chip's achievable roofs. Nothing is fitted per row. Workload choices, stated once:
  * the optimizer is the one the published recipe trains with where our catalog has it:
    SGD with momentum for ResNet-50 (NVIDIA DeepLearningExamples), AdamW otherwise (BERT's LAMB
    and EfficientNet's RMSprop keep one or two state tensors per parameter, as AdamW does);
  * BERT-large pre-training is our BertModel-large encoder at the row's sequence length with
    the default loss: the masked-LM head, which NVIDIA evaluates at the ~15% masked positions
    only, is left out (a few percent of the FLOPs).

    python bench/published.py [--reference PATH]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import roofline_zoo  # noqa: E402
from estimator.capture import capture  # noqa: E402
from estimator.hardware import catalog_ids, load_hardware  # noqa: E402
from estimator.report import evaluate  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "published_sample.yaml"
MODELS = {"ResNet-50 v1.5": "resnet50", "BERT-large (pre-training)": "bert_large", "EfficientNet-B0": "efficientnet_b0"}
PRECISIONS = {"FP32": "fp32", "TF32": "tf32", "AMP-FP16": "amp-fp16", "AMP-BF16": "amp-bf16", "BF16": "bf16"}
OPTIMIZERS = {"resnet50": "sgd-momentum"}
TARGET = 0.20


def chip_id(hardware_id: str) -> str:
    """nvidia_a100_80gb_sxm -> a100-80gb-sxm: the vendor prefix dropped, underscores as dashes."""
    chip = hardware_id.split("_", 1)[1].replace("_", "-")
    if chip not in catalog_ids():
        raise SystemExit(f"published row names hardware {hardware_id!r}, which is not in the catalog as {chip!r}")
    return chip


def predict(row: dict) -> float:
    """Predicted samples/s of one published row."""
    name = MODELS[row["model"]]
    model, inputs = roofline_zoo.get(name).build(batch=row["batch_size_per_gpu"], image=row.get("image_size"),
                                                 seq=row.get("seq_len"), device="meta")
    step = capture(model, inputs, mode="train", model_name=name, optimizer=OPTIMIZERS.get(name, "adamw"))
    report = evaluate(step, load_hardware(chip_id(row["hardware_id"])), PRECISIONS[row["precision"]])
    return report.totals()["throughput_samples_per_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    args = parser.parse_args(argv)
    rows = yaml.safe_load(args.reference.read_text())["rows"]
    print(f"{'row':<42}{'chip':<15}{'precision':<10}{'batch':>6}{'published':>11}{'predicted':>11}{'error':>9}")
    errors = []
    for row in rows:
        if row.get("task") != "training" or row.get("num_gpus", 1) != 1:
            continue
        predicted = predict(row)
        published = float(row["throughput_per_gpu"])
        error = predicted / published - 1
        errors.append(error)
        print(f"{row['id']:<42}{chip_id(row['hardware_id']):<15}{PRECISIONS[row['precision']]:<10}"
              f"{row['batch_size_per_gpu']:>6}{published:>11,.1f}{predicted:>11,.1f}{100 * error:>+8.1f}%", flush=True)
    within = sum(abs(e) <= TARGET for e in errors)
    print(f"{within} of {len(errors)} rows within {100 * TARGET:.0f}%; mean absolute error "
          f"{100 * sum(map(abs, errors)) / len(errors):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
