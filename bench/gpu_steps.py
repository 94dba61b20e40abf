"""Measure real steps and kernels on a CUDA GPU: the ground truth the execution model is checked on.

Run where there is a CUDA GPU (in this project: the lent device machine), from the repo root:

    python bench/gpu_steps.py --out DIR [--budget-s 420]
    python bench/gpu_steps.py --out DIR --smoke --device cpu     # structure check, no GPU, ~1 min

It appends one JSON object a line to DIR/gpu_steps.jsonl as it goes (a run cut short keeps what
it measured), section by section, most valuable first, and skips what the time budget leaves no
room for (a record of kind "skipped" says so):
  env      the GPU, its SMs and L2, the host CPU, torch/CUDA versions, the date
  host     estimator.host_probes.measure_host on the GPU (the `host:` keys of a chip YAML)
  step     one zoo model step, eager PyTorch defaults: model, batch, input, precision, mode,
           optimizer; median step time (synchronised wall clock), median host time (until the
           step's Python returns, before the synchronise), peak and resting allocated memory
  profile  one profiled step of some configs: device time and calls per aten op and per kernel
  kernel   micro-benchmarks, one kernel kind and shape a record: median microseconds per call
           (CUDA events around a loop), with the FLOPs and bytes an ideal kernel needs
  graphs   inference replayed as one CUDA graph (--execution cuda-graphs)
  compiled torch.compile'd inference (--execution compiled)

The training step is the loop PyTorch users write, with each library's defaults:
zero_grad(set_to_none=True); forward under autocast for amp-*; the documented default loss
(estimator.capture.DefaultLoss); backward; the optimizer's step (AdamW, or SGD with momentum
for ResNet-50 and SSD300, as bench/published.py; torch's default implementation: foreach on
CUDA); amp-fp16 through torch.amp.GradScaler. Inference is the forward under inference_mode.
No cudnn.benchmark, and TF32 only for --precision tf32 (matmuls and convolutions), as PyTorch's
defaults are; fp32 convolutions use TF32 (cudnn.allow_tf32 defaults to True).

bench/gpu_rows.py predicts every step record and prints the errors.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import roofline_zoo

from estimator.capture import DefaultLoss
from gpu_kernel_kinds import graphed

AMP = {"amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}
SGD_MODELS = {"resnet50", "ssd300"}  # as bench/published.py: the published recipes' optimizer

# (model, batch, precision, train, seq or image or None, profile?): the published rows' settings
# (../shared/reference/published_sample.yaml) moved to this GPU, then small batches (host-bound)
# and a few more families. Order: most informative first.
STEPS = [
    ("resnet50", 256, "amp-fp16", True, None, True),
    ("resnet50", 1, "amp-fp16", False, None, True),
    ("bert_base", 8, "amp-fp16", False, 128, True),
    ("bert_large", 64, "amp-fp16", True, 128, True),
    ("efficientnet_b0", 256, "amp-fp16", True, None, True),
    ("resnet50", 128, "fp32", True, None, False),
    ("resnet50", 256, "tf32", True, None, False),
    ("resnet50", 256, "amp-fp16", False, None, True),
    ("bert_large", 64, "tf32", True, 128, False),
    ("bert_large", 32, "tf32", True, 384, False),
    ("bert_large", 32, "amp-fp16", False, 384, False),
    ("bert_base", 8, "amp-fp16", False, 384, False),
    ("bert_base", 8, "tf32", False, 128, False),
    ("bert_base", 1, "amp-fp16", False, 128, False),
    ("efficientnet_b0", 256, "tf32", True, None, False),
    ("efficientnet_b0", 256, "amp-fp16", False, None, False),
    ("efficientnet_b0", 1, "amp-fp16", False, None, False),
    ("efficientnet_b4", 128, "amp-fp16", True, None, True),
    ("deit_small", 384, "amp-fp16", True, None, True),
    ("swin_tiny", 1024, "amp-fp16", False, None, True),
    ("ssd300", 64, "amp-fp16", True, None, True),
    ("resnet50", 8, "amp-fp16", True, None, False),
    ("bert_base", 8, "amp-fp16", True, 128, False),
    ("resnet50", 1, "fp32", False, None, False),
    ("resnet50", 32, "amp-bf16", False, None, False),
    ("vit_b_16", 128, "amp-bf16", True, None, True),
    ("vit_b_16", 1, "amp-bf16", False, None, False),
    ("gpt2", 8, "amp-bf16", True, 1024, True),
    ("gpt2", 1, "amp-bf16", False, 128, False),
    ("convnext_tiny", 128, "amp-fp16", True, None, True),
    ("swin_tiny", 128, "amp-fp16", True, None, False),
    ("mobilenet_v2", 256, "amp-fp16", True, None, True),
    ("mobilenet_v2", 1, "amp-fp16", False, None, False),
    ("resnet50", 64, "amp-fp16", False, None, False),
    ("bert_base", 32, "amp-fp16", True, 512, False),
]
GRAPHS = [("resnet50", 1, "amp-fp16", None), ("bert_base", 8, "amp-fp16", 128), ("vit_b_16", 1, "amp-bf16", None),
          ("gpt2", 1, "amp-bf16", 128), ("resnet50", 256, "amp-fp16", None)]
COMPILED = [("resnet50", 1, "amp-fp16", None), ("bert_base", 8, "amp-fp16", 128)]
SMOKE_STEPS = [("resnet18", 2, "fp32", True, 64, True), ("bert_base", 1, "fp32", False, 16, True)]


class Out:
    """Appends JSON records to DIR/NAME (gpu_steps.jsonl), flushed each time, and keeps the time budget."""

    def __init__(self, directory: Path, budget_s: float, name: str = "gpu_steps.jsonl"):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / name
        self.file = self.path.open("a")
        self.deadline = time.monotonic() + budget_s

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        print(json.dumps(record)[:300], flush=True)

    def left_s(self) -> float:
        return self.deadline - time.monotonic()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextlib.contextmanager
def tf32(enabled: bool):
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def env_record(device: str) -> dict:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    record = {"kind": "env", "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
              "python": platform.python_version(), "cpu": cpu, "cpu_count": os.cpu_count(), "device": device}
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        record |= {"gpu": p.name, "sm_count": p.multi_processor_count, "memory_bytes": p.total_memory,
                   "l2_bytes": getattr(p, "L2_cache_size", None), "capability": f"{p.major}.{p.minor}"}
    return record


def make_step(name, batch, precision, train, size, device):
    """(run_step, model, inputs): one step of zoo model `name` as the module doc says; a name
    ending in ":cl" runs the model and its 4-D inputs channels_last."""
    name, channels_last = name.removesuffix(":cl"), name.endswith(":cl")
    entry = roofline_zoo.get(name)
    image, seq = (size, None) if entry.input_kind == "image" else (None, size)
    model, inputs = entry.build(batch=batch, image=image, seq=seq, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = tuple(t.to(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs)
    dtype = AMP.get(precision)
    autocast = (lambda: torch.autocast(device.split(":")[0], dtype=dtype)) if dtype else contextlib.nullcontext
    if not train:
        model.eval()

        def infer():
            with torch.inference_mode(), autocast():
                return model(*inputs)
        return infer, model, inputs
    model.train()
    if name in SGD_MODELS:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=precision == "amp-fp16")
    loss_fn = DefaultLoss()

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(model(*inputs))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return train_step, model, inputs


def time_runs(run, device, warmup, runs):
    """(step seconds, host seconds) of `runs` runs after `warmup`: wall clock to the synchronise,
    and to the moment the step's Python returned (the host's share)."""
    for _ in range(warmup):
        run()
    sync(device)
    steps, hosts = [], []
    for _ in range(runs):
        sync(device)
        t0 = time.perf_counter()
        run()
        t1 = time.perf_counter()
        sync(device)
        t2 = time.perf_counter()
        steps.append(t2 - t0)
        hosts.append(t1 - t0)
    return steps, hosts


def profile_step(run, device) -> dict:
    """Device time and calls per aten op (inclusive of its kernels) and per kernel, of one step."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        run()
        sync(device)
    ops, kernels = {}, {}
    for e in prof.key_averages():
        device_us = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0.0)
        self_device_us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0)
        if e.key.startswith("aten::"):
            ops[e.key] = [e.count, round(device_us, 1), round(e.self_cpu_time_total, 1)]
        elif self_device_us > 0 and not e.key.startswith(("cuda", "Memcpy", "Memset")):
            kernels[e.key[:160]] = [e.count, round(self_device_us, 1)]
    kernel_calls = sum(c for c, _ in kernels.values())
    top_ops = dict(sorted(ops.items(), key=lambda kv: -kv[1][1])[:80])
    top_kernels = dict(sorted(kernels.items(), key=lambda kv: -kv[1][1])[:60])
    return {"aten_ops": top_ops, "kernels": top_kernels, "kernel_calls": kernel_calls,
            "kernel_us": round(sum(t for _, t in kernels.values()), 1), "aten_op_kinds": len(ops)}


def measure_step(out: Out, config, device, execution="eager", warmup=3, runs=10) -> None:
    name, batch, precision, train, size, want_profile = config
    record = {"kind": "step", "model": name, "batch": batch, "precision": precision,
              "mode": "train" if train else "inference", "size": size, "execution": execution,
              "optimizer": ("sgd-momentum" if name.removesuffix(":cl") in SGD_MODELS else "adamw") if train else None}
    try:
        with tf32(precision == "tf32"):
            run, model, inputs = make_step(name, batch, precision, train, size, device)
            if execution == "cuda-graphs":
                run = graphed(run)
            elif execution == "compiled":
                compiled = torch.compile(model)
                dtype = AMP.get(precision)

                def run():
                    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
                        return compiled(*inputs)
                t0 = time.perf_counter()
                run()
                sync(device)
                record["compile_s"] = round(time.perf_counter() - t0, 2)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
                rest = torch.cuda.memory_allocated()
            if not train and batch <= 8:
                warmup, runs = 2 * warmup, 3 * runs  # short steps: more of them
            steps, hosts = time_runs(run, device, warmup, runs)
            record |= {"step_s": statistics.median(steps), "step_s_min": min(steps), "host_s": statistics.median(hosts),
                       "runs": len(steps)}
            if device.startswith("cuda"):
                record |= {"peak_bytes": torch.cuda.max_memory_allocated(), "resting_bytes": rest,
                           "after_bytes": torch.cuda.memory_allocated()}
            out.write(record)
            if want_profile and execution == "eager":
                out.write({**{k: record[k] for k in ("model", "batch", "precision", "mode", "size", "execution")},
                           "kind": "profile", **profile_step(run, device)})
    except Exception as e:  # noqa: BLE001 - one failed config must not lose the rest
        out.write({**record, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"})
    finally:
        run = model = inputs = None
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def event_us(fn, device, reps) -> float:
    """Median microseconds per call of fn over 3 loops of `reps` calls (CUDA events; CPU: wall)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(3):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e3 / reps)
        else:
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            times.append((time.perf_counter() - t0) * 1e6 / reps)
    return statistics.median(times)


def kernel_cases(device, smoke):
    """(kind, shape/dtype description, fn, flops, bytes) for the micro-benchmarks."""
    s = 16 if smoke else 1
    dev = device
    cases = []
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "tf32": torch.float32}
    gemms = [(n, n, n) for n in (256, 512, 1024, 2048, 4096, 8192)] + [
        (1024, 768, 768), (1024, 3072, 768), (1024, 768, 3072), (8192, 1024, 1024), (8192, 4096, 1024),
        (8192, 1024, 4096), (12288, 1024, 1024), (1, 4096, 4096), (16, 4096, 4096), (128, 4096, 4096),
        (1000, 1000, 2048), (3136, 256, 64)]
    for name, dtype in dtypes.items():
        for m, n, k in gemms:
            m, n, k = max(1, m // s), max(1, n // s), max(1, k // s)
            a, b = torch.randn(m, k, device=dev, dtype=dtype), torch.randn(k, n, device=dev, dtype=dtype)
            size = dtype.itemsize
            cases.append(("gemm", f"{name} {m}x{n}x{k}", (lambda a=a, b=b: torch.mm(a, b)), 2 * m * n * k,
                          size * (m * k + k * n + m * n), name == "tf32"))
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        for exp in (16, 20, 22, 24, 26, 28):
            n = max(1, 2 ** exp // s)
            x, y = torch.randn(n, device=dev, dtype=dtype), torch.randn(n, device=dev, dtype=dtype)
            cases.append(("add", f"{name} {n}", (lambda x=x, y=y: x + y), n, 3 * n * dtype.itemsize, False))
        for rows, cols in ((8192, 768), (65536, 1024), (4096, 50257 // 4)):
            rows = max(1, rows // s)
            x = torch.randn(rows, cols, device=dev, dtype=dtype)
            w = torch.ones(cols, device=dev, dtype=dtype)
            size = x.numel() * dtype.itemsize
            cases.append(("layer_norm", f"{name} {rows}x{cols}", (lambda x=x, w=w: F.layer_norm(x, w.shape, w, w)),
                          8 * x.numel(), 2 * size, False))
            cases.append(("softmax", f"{name} {rows}x{cols}", (lambda x=x: torch.softmax(x, -1)), 5 * x.numel(),
                          2 * size, False))
            cases.append(("gelu", f"{name} {rows}x{cols}", (lambda x=x: F.gelu(x)), 8 * x.numel(), 2 * size, False))
    half = torch.float16
    for (nb, c, hw, k, groups, stride) in ((256, 64, 56, 64, 1, 1), (256, 256, 56, 64, 1, 1), (256, 128, 28, 128, 1, 1),
                                           (256, 96, 112, 96, 96, 1), (256, 240, 28, 240, 240, 1), (64, 512, 7, 512, 1, 1),
                                           (1, 64, 56, 64, 1, 1), (256, 3, 224, 64, 1, 2)):
        nb = max(1, nb // s)
        ksize = 7 if c == 3 else (1 if (groups == 1 and c != k) else 3)
        for name, dtype in (("fp16", half), ("tf32", torch.float32)):
            x = torch.randn(nb, c, hw, hw, device=dev, dtype=dtype)
            w = torch.randn(k, c // groups, ksize, ksize, device=dev, dtype=dtype)
            ho = (hw + 2 * (ksize // 2) - ksize) // stride + 1
            flops = 2 * nb * k * ho * ho * (c // groups) * ksize * ksize
            size = dtype.itemsize * (x.numel() + w.numel() + nb * k * ho * ho)
            cases.append(("conv", f"{name} n{nb} c{c} {hw}x{hw} k{k} g{groups} r{ksize} s{stride}",
                          (lambda x=x, w=w, st=stride, p=ksize // 2, g=groups: F.conv2d(x, w, stride=st, padding=p, groups=g)),
                          flops, size, name == "tf32"))
    for nb, c, hw in ((256, 64, 56), (256, 256, 56), (256, 1024, 14)):
        nb = max(1, nb // s)
        x = torch.randn(nb, c, hw, hw, device=dev, dtype=half)
        bn = torch.nn.BatchNorm2d(c, device=dev).train()
        cases.append(("batch_norm", f"fp16 train n{nb} c{c} {hw}x{hw}",
                      (lambda x=x, bn=bn: F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, True)), 8 * x.numel(), 3 * x.numel() * 2, False))
        cases.append(("relu", f"fp16 n{nb} c{c} {hw}x{hw}", (lambda x=x: torch.relu(x)), x.numel(), 2 * x.numel() * 2,
                      False))
    for nb, heads, seq, d in ((8, 12, 128, 64), (8, 16, 384, 64), (8, 12, 1024, 64), (1, 12, 128, 64)):
        nb = max(1, nb // s)
        q = torch.randn(nb, heads, seq, d, device=dev, dtype=half, requires_grad=True)
        grad = torch.randn_like(q)
        attn_flops = 4 * nb * heads * seq * seq * d
        cases.append(("sdpa", f"fp16 fwd {tuple(q.shape)}", (lambda q=q: F.scaled_dot_product_attention(q, q, q)),
                      attn_flops, 4 * q.numel() * 2, False))
        cases.append(("sdpa_fwd_bwd", f"fp16 fwd+bwd {tuple(q.shape)}",
                      (lambda q=q, g=grad: F.scaled_dot_product_attention(q, q, q).backward(g)),
                      attn_flops * 3.5, 12 * q.numel() * 2, False))
    for n_params, tensors in ((25_000_000, 160), (110_000_000, 200), (340_000_000, 390)):
        n_params = max(tensors, n_params // (s * s))
        params = [torch.zeros(n_params // tensors, device=dev, requires_grad=True) for _ in range(tensors)]
        for p in params:
            p.grad = torch.zeros_like(p)
        for label, opt in (("adamw foreach", torch.optim.AdamW(params, lr=1e-4)),
                           ("adamw fused", torch.optim.AdamW(params, lr=1e-4, fused=device.startswith("cuda")
                                                             or None)),
                           ("sgd-momentum foreach", torch.optim.SGD(params, lr=0.01, momentum=0.9))):
            cases.append(("optimizer", f"{label} {n_params} params in {tensors} tensors", opt.step, 0,
                          n_params * 4 * (7 if label.startswith("adamw") else 5), False))  # fp32 p,g,m,v in, p,m,v out
    return cases


def run_kernels(out: Out, device, smoke):
    for kind, what, fn, flops, nbytes, allow_tf32 in kernel_cases(device, smoke):
        if out.left_s() < 60:
            out.write({"kind": "skipped", "section": "kernel", "from": f"{kind} {what}"})
            return
        try:
            with tf32(allow_tf32), contextlib.nullcontext() if kind in ("optimizer", "sdpa_fwd_bwd") else torch.no_grad():
                torch.backends.cudnn.allow_tf32 = allow_tf32 or kind != "conv"
                first = event_us(fn, device, 1)
                reps = int(min(200, max(3, 20_000 / max(first, 1.0))))
                us = event_us(fn, device, reps)
        except Exception as e:  # noqa: BLE001
            out.write({"kind": "kernel", "op": kind, "what": what, "error": f"{type(e).__name__}: {e}"[:300]})
            continue
        finally:
            torch.backends.cudnn.allow_tf32 = True
        out.write({"kind": "kernel", "op": kind, "what": what, "us": round(us, 2), "flops": flops, "bytes": nbytes,
                   "tflops": round(flops / us / 1e6, 2) if flops else None, "gbps": round(nbytes / us / 1e3, 1)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--smoke", action="store_true", help="tiny configs and kernels (checks the script)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here; pass --device cpu --smoke to check the script", file=sys.stderr)
        return 2
    out = Out(args.out, args.budget_s)
    out.write(env_record(args.device))
    try:
        from estimator.host_probes import measure_host

        out.write({"kind": "host", **measure_host(args.device, plan="tiny" if args.smoke else "full")})
    except Exception as e:  # noqa: BLE001
        out.write({"kind": "host", "error": f"{type(e).__name__}: {e}"[:300]})
    steps = SMOKE_STEPS if args.smoke else STEPS
    reserve_s = 60 if args.smoke else 150  # kept for kernels, graphs and compile
    for config in steps:
        if out.left_s() < reserve_s:
            out.write({"kind": "skipped", "section": "step", "from": list(config)})
            break
        measure_step(out, config, args.device)
    run_kernels(out, args.device, args.smoke)
    if args.device.startswith("cuda"):
        for name, batch, precision, size in GRAPHS:
            if out.left_s() < 40:
                break
            measure_step(out, (name, batch, precision, False, size, False), args.device, execution="cuda-graphs")
        for name, batch, precision, size in COMPILED:
            if out.left_s() < 90:
                out.write({"kind": "skipped", "section": "compiled", "from": name})
                break
            measure_step(out, (name, batch, precision, False, size, False), args.device, execution="compiled")
    out.write({"kind": "done", "left_s": round(out.left_s(), 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
