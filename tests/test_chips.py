"""Chips side by side, the memory block of `estimate`, and refusing a step that fits nowhere."""
from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from estimator.capture import capture
from estimator.chips import AMORTIZATION_YEARS, side_by_side, usd_per_million
from estimator.cli import main
from estimator.hardware import load_hardware
from estimator.memory import step_memory
from estimator.report import evaluate


def test_cost_per_million_is_the_amortized_price_over_the_throughput():
    seconds = AMORTIZATION_YEARS * 365 * 24 * 3600
    assert usd_per_million(1599.0, 1000.0) == pytest.approx(1599.0 / seconds / 1000.0 * 1e6)
    assert usd_per_million(None, 1000.0) is None and usd_per_million(1599.0, 0.0) is None


def _mlp(batch: int):
    with torch.device("meta"):  # shapes only: nothing is allocated
        return nn.Sequential(nn.Linear(4096, 16384), nn.ReLU(), nn.Linear(16384, 10)), (torch.empty(batch, 4096),)


def test_rows_follow_the_report_and_the_memory_of_each_chip():
    chips = [load_hardware(c) for c in ("rtx-4090", "rtx-3090", "a100-80gb-sxm")]
    step = capture(*_mlp(32), mode="train")
    rows = side_by_side(step, chips, "amp-bf16", capture_at=lambda b: capture(*_mlp(b), mode="train"))
    peak = step_memory(step, "amp-bf16", optimizer="adamw").peak_bytes
    for row, chip in zip(rows, chips):
        totals = evaluate(step, chip, "amp-bf16").totals()
        assert row.chip == chip.id
        assert row.step_time_s == pytest.approx(totals["step_time_s"])
        assert row.samples_per_s == pytest.approx(totals["throughput_samples_per_s"])
        assert row.peak_bytes == peak and row.fits == (peak <= chip.memory_capacity_bytes)
        assert row.usd_per_million == (usd_per_million(chip.price_usd, totals["throughput_samples_per_s"]))
        # the largest batch fits and one more does not (a real bound, not the search's limit)
        assert 1 < row.max_batch < 1 << 20
        assert step_memory(capture(*_mlp(row.max_batch), mode="train"), "amp-bf16", "adamw").peak_bytes \
            <= chip.memory_capacity_bytes
        assert step_memory(capture(*_mlp(row.max_batch + 1), mode="train"), "amp-bf16", "adamw").peak_bytes \
            > chip.memory_capacity_bytes
    assert [r.chip for r in rows if r.fastest] == [min(rows, key=lambda r: r.step_time_s).chip]
    priced = [r for r in rows if r.usd_per_million is not None]
    assert [r.chip for r in rows if r.cheapest] == [min(priced, key=lambda r: r.usd_per_million).chip]
    assert rows[2].usd_per_million is None  # no list price in the A100's YAML


def test_cli_side_by_side_json_and_table(capsys, tmp_path):
    path = tmp_path / "chips.json"
    code = main(["estimate", "gpt2", "--hardware", "a100-80gb-sxm,h100-sxm,rtx-4090", "--precision", "amp-bf16",
                 "--batch", "2", "--seq", "128", "--train", "--json", str(path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(path.read_text())
    assert [c["hardware"] for c in data["chips"]] == ["a100-80gb-sxm", "h100-sxm", "rtx-4090"]
    for chip in data["chips"]:
        assert {"step_time_s", "throughput_samples_per_s", "throughput_tokens_per_s", "utilization", "memory_peak_bytes",
                "capacity_bytes", "fits", "max_batch", "usd_per_million", "fastest", "cheapest"} <= set(chip)
        assert chip["throughput_tokens_per_s"] == pytest.approx(128 * chip["throughput_samples_per_s"])
    assert sum(c["fastest"] for c in data["chips"]) == 1
    assert "chips side by side" in captured.out and "fastest" in captured.out and "cheapest" in captured.out


def test_cli_single_chip_json_has_the_memory_block(capsys):
    assert main(["estimate", "resnet18", "--hardware", "t4", "--batch", "4", "--train", "--json", "-"]) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]
    assert {"parameters_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "peak_bytes",
            "capacity_bytes", "fits"} <= set(memory)
    params = 11_689_512  # resnet18, reference_counts.yaml
    assert memory["parameters_bytes"] == memory["gradients_bytes"] == 4 * params
    assert memory["optimizer_bytes"] == 2 * 4 * params  # AdamW: two fp32 moments
    assert memory["fits"] and memory["capacity_bytes"] == 16e9


def test_a_step_that_fits_nowhere_is_refused_after_the_numbers(capsys):
    assert main(["estimate", "gpt2_xl", "--hardware", "t4,rtx-4090", "--precision", "amp-fp16", "--batch", "16",
                 "--seq", "1024", "--train"]) == 2
    captured = capsys.readouterr()
    assert "chips side by side" in captured.out
    # GPT-2 XL's fp32 weights and Adam state, with its gradients (larger than autocast's half weight
    # copies, which are freed before the last gradients exist) exceed 24 GB: no batch helps, sharding
    # over two chips or a bigger chip does
    message = " ".join(captured.err.split())
    assert "but the largest memory among t4, rtx-4090 is 24 GB; the weights, gradients and optimizer state alone" in message
    assert "shard them over at least 2 chips" in message and "smaller --batch" not in message
    needs, alone = (float(re.search(pattern, message).group(1).replace(",", "")) for pattern in
                    (r"the step needs ([\d,.]+) GB", r"optimizer state alone take ([\d,.]+) GB"))
    assert alone <= needs  # the floor is part of the step's own peak


def test_a_step_too_big_only_for_its_activations_gets_batch_advice(capsys):
    assert main(["estimate", "gpt2", "--hardware", "t4", "--precision", "amp-fp16", "--batch", "64", "--seq", "1024",
                 "--train", "--top", "1"]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "but the largest memory among t4 is 16 GB: use a smaller --batch" in message
