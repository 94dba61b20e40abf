"""Speed of capture + cost + roofline against FlopCounterMode counting the same step, and of
block replay on a large decoder.

Prints:
  * for ResNet-50 batch 32, ViT-B/16 batch 32 and GPT-2 batch 8 training steps (override with
    --models NAME:BATCH ...): FlopCounterMode counting forward+backward on meta tensors (the baseline)
    and our capture + cost + roofline (estimator.capture + evaluate + totals), each as the first
    (cold) run and the median of --repeats warm runs (the two interleaved), with the ratio
    (target <= 1.0x); for the first model also re-costing the captured step for each other GPU
    in the catalog (its first re-cost there: median and slowest) and for another precision (no
    new trace);
  * for Llama-3-70B at sequence 4096 (--llama-seq), the training capture with and without
    block replay (estimator.block_replay: 78 of 80 decoder layers replayed) and the ratio
    (target: <= 5 s with replay).

Timings on a shared machine are noisy: compare the ratios, each measured within this run.

    python bench/capture_speed.py [--models resnet50:32 vit_b_16:32 gpt2:8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time

import roofline_zoo
import torch
from torch.utils.flop_counter import FlopCounterMode

from estimator import capture, evaluate, load_hardware
from estimator.errors import RooflineError
from estimator.execution import execution_defaults
from estimator.precision import get_precision
from estimator.hardware import catalog_ids
from estimator.memory import step_memory


def flop_counter_step(model, inputs) -> None:
    with FlopCounterMode(display=False):
        out = model(*inputs)
        logits = out.reshape(-1, out.shape[-1])  # (N, classes) or (N*S, vocab)
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        torch.nn.functional.cross_entropy(logits, target).backward()
    for p in model.parameters():
        p.grad = None


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first run, median of the next `repeats`) in seconds."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:])


def timed_pair(fn_a, fn_b, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """timed() of both, their runs interleaved so that a shared machine's load falls on both;
    the garbage of one run is collected before the next (capture pauses the cyclic collector)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats + 1):
        for fn, out in zip((fn_a, fn_b), times):
            gc.collect()
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return tuple((t[0], statistics.median(t[1:])) for t in times)


def runs_fp32(hardware) -> bool:
    try:
        hardware.matrix_peak(get_precision("fp32"))
        return True
    except RooflineError:
        return False


def versus_flop_counter(name: str, batch: int, repeats: int, recost: bool) -> None:
    model, inputs = roofline_zoo.get(name).build(batch=batch)
    a100 = load_hardware("a100-80gb-sxm")
    (fc_first, fc), (ours_first, ours) = timed_pair(
        lambda: flop_counter_step(model, inputs),
        lambda: evaluate(capture(model, inputs, "train"), a100, "fp32").totals(), repeats)
    step = capture(model, inputs, "train")
    print(f"\n{name} batch {batch} training step: {len(step.nodes)} aten nodes, "
          f"{step.extra['replayed_blocks']} blocks replayed")
    print(f"{'what':<48}{'first (s)':>11}{'median (s)':>12}")
    print(f"{'FlopCounterMode count on meta tensors':<48}{fc_first:>11.3f}{fc:>12.3f}")
    print(f"{'capture + cost + roofline (ours)':<48}{ours_first:>11.3f}{ours:>12.3f}")
    if recost:
        report = evaluate(step, a100, "fp32")
        gpus = [load_hardware(c) for c in catalog_ids()]
        gpus = [h for h in gpus if h.kind != "cpu" and h.id != a100.id and runs_fp32(h)]
        for h in gpus:  # each chip's YAML and family read once, as a sweep would have them
            execution_defaults(h)
        per_chip, per_chip_cpu = [], []
        gc.collect()  # the captures' garbage, so that no re-cost pays for collecting it
        for h in gpus:
            t0, c0 = time.perf_counter(), time.process_time()
            report.recost(hardware=h).totals()
            per_chip.append(time.perf_counter() - t0)
            per_chip_cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        report.recost(precision="amp-bf16").totals()
        print(f"{'re-cost for another chip (median of %d chips)' % len(gpus):<48}{'':>11}"
              f"{statistics.median(per_chip):>12.4f}")
        print(f"{'re-cost for another precision (rules re-run)':<48}{time.perf_counter() - t0:>11.4f}{'':>12}")
        print(f"re-cost {statistics.median(per_chip) * 1e3:.1f} ms per chip, median of {len(gpus)} chips "
              f"(slowest {max(per_chip) * 1e3:.1f} ms; this process's CPU time {statistics.median(per_chip_cpu) * 1e3:.1f} "
              "ms, which other processes on the machine do not inflate; target < 5 ms)")
    print(f"ratio ours / FlopCounterMode (median): {ours / fc:.2f}x (target <= 1.0x)")


def block_replay_speed(seq: int) -> None:
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # after the imports (Linux: KiB)
    whole_s = []
    for _ in range(2):  # the first pays FakeTensorMode's one-time set-up (torch._dynamo's import)
        t0 = time.perf_counter()
        model, inputs = roofline_zoo.get("llama3_70b").build(batch=1, seq=seq)
        step = capture(model, inputs, "train")
        evaluate(step, load_hardware("h100-sxm"), "amp-bf16").totals()
        step_memory(step, "amp-bf16", optimizer=step.optimizer)
        whole_s.append(time.perf_counter() - t0)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 1024
    print(f"\nllama3_70b seq {seq} training, build + capture + cost + roofline + memory: {whole_s[0]:.2f} s first "
          f"in this process, {whole_s[1]:.2f} s again; peak memory {grown_mb:,.0f} MB above the imports "
          "(targets <= 5 s, <= 1 GB)")
    t0 = time.perf_counter()
    fast = capture(model, inputs, "train")
    fast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = capture(model, inputs, "train", replay_blocks=False)
    full_s = time.perf_counter() - t0
    same = fast.nodes == full.nodes
    print(f"\nllama3_70b seq {seq} training capture: {len(fast.nodes)} aten nodes, "
          f"{fast.extra['replayed_blocks']} of 80 layers replayed, same nodes: {same}")
    print(f"{'capture with block replay (s)':<48}{fast_s:>11.3f}")
    print(f"{'capture of every block (s)':<48}{full_s:>11.3f}")
    print(f"ratio every block / replay: {full_s / fast_s:.1f}x (target: replay <= 5 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50:32", "vit_b_16:32", "gpt2:8"],
                        help="zoo model:batch pairs compared with FlopCounterMode")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--llama-seq", type=int, default=4096, help="0 skips the Llama-3-70B capture")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.llama_seq:  # first: its memory is measured above what the imports took
        block_replay_speed(args.llama_seq)
    for i, spec in enumerate(args.models):
        name, _, batch = spec.partition(":")
        versus_flop_counter(name, int(batch or 1), args.repeats, recost=i == 0)


if __name__ == "__main__":
    main()
