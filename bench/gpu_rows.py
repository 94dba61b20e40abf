"""Predicted vs measured steps on a real GPU: every `step` record of a bench/gpu_steps.py run.

    python bench/gpu_rows.py [--steps FILE ...] [--chip h200] [--host measured|catalog]

Default files: validation/h200/gpu_steps.jsonl, gpu_host_in_situ.jsonl, gpu_host_check.jsonl.

Each record (a zoo model, batch, input size, precision, train or inference, execution mode,
measured with PyTorch's defaults on the GPU; a name ending in ":cl"
ran channels_last) is captured here on fake tensors as the GPU would
dispatch it and predicted on the catalog chip. `--host measured` (default) issues the step from
the host costs the same run measured on the GPU's own host (its file's `host` record, from
estimator.host_probes; the in-situ multipliers, measured from the last runs on, fill in for
records that lack them), so the comparison tests the model, not a guess of the host CPU;
`--host catalog` keeps the chip YAML's host. Nothing here is fitted to these records.

Printed per record: measured and predicted step time, the error of the predicted throughput
(measured time / predicted time - 1: positive means too fast, as bench/published.py), the
predicted step's bound, the measured share of the step the host spent before its final
synchronise (amp-fp16 training syncs inside the step, so it is near 1 there), and peak memory,
measured (torch.cuda.max_memory_allocated) and predicted. Then the mean absolute error, bias
and worst record, overall and per kind; the tiny-input steps of bench/gpu_host_in_situ.py
(host-bound by design) are summed apart, as "tiny inputs (host)".
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import roofline_zoo
from error_table import KINDS, file_by_kind, summary
from estimator.capture import capture
from estimator.hardware import load_hardware
from estimator.host import IN_SITU_KEYS, parse_host
from estimator.memory import step_memory
from estimator.report import evaluate

STEPS = Path(__file__).resolve().parents[1] / "validation" / "h200" / "gpu_steps.jsonl"
IN_SITU = STEPS.with_name("gpu_host_in_situ.jsonl")
CHECK = STEPS.with_name("gpu_host_check.jsonl")


def records(*paths: Path) -> tuple[dict[str, dict], list[dict]]:
    """(host record per file name, the step records without errors). A file without a host record
    takes the first file's; a host record without the in-situ multipliers (measured from the
    fifth run on) takes them from one that has them, and its source says so."""
    hosts, steps = {}, []
    for path, line in ((path, line) for path in paths for line in path.read_text().splitlines()):
        r = json.loads(line) | {"file": path.name}
        if r["kind"] == "host" and "error" not in r:
            hosts[path.name] = {k: v for k, v in r.items() if k not in ("kind", "file")}
        elif r["kind"] == "step" and "error" not in r:
            steps.append(r)
    situ = next((h for h in hosts.values() if IN_SITU_KEYS[0] in h), None)
    for h in hosts.values():
        if situ is not None and IN_SITU_KEYS[0] not in h:
            h |= {k: situ[k] for k in IN_SITU_KEYS}
            h["source"] = [*h.get("source", []), f"in-situ multipliers from another run: {situ['name']}"]
    first = next(iter(hosts.values()), None)
    return {p.name: hosts.get(p.name, first) for p in paths}, steps


def predict(r: dict, chip, captures: dict) -> tuple[float, str, float]:
    """(predicted step seconds, bound, predicted peak bytes) of one step record (a model name
    ending in ":cl" ran channels_last)."""
    name, channels_last = r["model"].removesuffix(":cl"), r["model"].endswith(":cl")
    entry = roofline_zoo.get(name)
    image, seq = (r["size"], None) if entry.input_kind == "image" else (None, r["size"])
    train = r["mode"] == "train"
    key = (r["model"], r["batch"], r["size"], train)
    if key not in captures:
        model, inputs = entry.build(batch=r["batch"], image=image, seq=seq, device="meta")
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            inputs = tuple(t.to(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs)
        captures[key] = capture(model, inputs, mode=r["mode"], model_name=name,
                                optimizer=r["optimizer"] if train else None, dispatch="cuda")
    step = captures[key]
    report = evaluate(step, chip, r["precision"], execution=r["execution"])
    totals = report.totals()
    memory = step_memory(step, report.precision, optimizer=step.optimizer)
    return totals["step_time_s"], totals.get("step_bound", "-"), memory.peak_bytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=Path, nargs="+", default=[STEPS, IN_SITU, CHECK],
                        help="JSON-lines files of bench/gpu_steps.py and bench/gpu_host_in_situ.py runs")
    parser.add_argument("--chip", default="h200")
    parser.add_argument("--host", choices=("measured", "catalog"), default="measured")
    args = parser.parse_args(argv)
    hosts, steps = records(*args.steps)
    chip = load_hardware(args.chip)
    chips = {name: chip for name in hosts}
    if args.host == "measured":
        if not any(hosts.values()):
            raise SystemExit(f"{', '.join(map(str, args.steps))}: no host record; use --host catalog")
        chips = {name: dataclasses.replace(chip, host=parse_host(dict(h), name)) for name, h in hosts.items()}
    for name, c in chips.items():
        print(f"# {name}: chip {c.id}, host {c.host.name if c.host else 'none'}, in situ x{c.host.in_situ_forward:g} "
              f"forward, x{c.host.in_situ_backward:g} backward")
    print(f"{'model':<16}{'batch':>6} {'size':>5} {'precision':<10}{'mode':<10}{'execution':<12}{'measured':>10}"
          f"{'predicted':>11}{'error':>9}  {'bound':<8}{'host%':>6}{'peak GB':>9}{'pred GB':>9}")
    kinds: dict[str, list] = {k: [] for k in ("all eager", *KINDS, "cuda-graphs", "compiled", "tiny inputs (host)")}
    captures: dict = {}
    for r in steps:
        predicted_s, bound, peak = predict(r, chips[r["file"]], captures)
        error = r["step_s"] / predicted_s - 1
        label = f"{r['model']} b{r['batch']} {r['precision']} {r['mode']}"
        item = (label, error)
        if r["file"] == IN_SITU.name and not r["model"].endswith(":cl"):
            kinds["tiny inputs (host)"].append(item)
        elif r["execution"] != "eager":
            kinds[r["execution"]].append(item)
        else:
            kinds["all eager"].append(item)
            file_by_kind(kinds, item, r["mode"] == "train", r["batch"])
        print(f"{r['model']:<16}{r['batch']:>6} {str(r['size'] or '-'):>5} {r['precision']:<10}{r['mode']:<10}"
              f"{r['execution']:<12}{1e3 * r['step_s']:>8.2f}ms{1e3 * predicted_s:>9.2f}ms{100 * error:>+8.1f}%  "
              f"{bound:<8}{100 * r['host_s'] / r['step_s']:>5.0f}%{r.get('peak_bytes', 0) / 1e9:>9.2f}"
              f"{peak / 1e9:>9.2f}", flush=True)
    print()
    for label, errors in kinds.items():
        print(summary(label, errors, "steps"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
