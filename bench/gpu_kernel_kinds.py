"""Device time of kernel kinds by shape and layout, and host time of real layers, on a CUDA GPU.

The second half of the ground truth bench/gpu_steps.py gathers: where its profiles showed the
model's kernel kinds off (batch norm on NCHW tensors, layout transposes around half
convolutions, layer norm over short rows, depthwise convolutions, autocast's casts, the foreach
optimizer), this times each kind over the shapes that decide it. Device times are pure device
time: each case is captured as a CUDA graph of `REPS` calls and the replay timed with CUDA
events, so no host issue cost floors a short kernel. Host times are per layer call, from a hot
loop of tiny inputs (the kernels do no work), synchronised at the end.

    python bench/gpu_kernel_kinds.py --out DIR [--budget-s 240]
    python bench/gpu_kernel_kinds.py --out DIR --device cpu --smoke   # structure check, no GPU

Appends JSON lines to DIR/gpu_kernel_kinds.jsonl: {"kind": "device", "op", "what", "us",
"bytes", "flops", ...} and {"kind": "host", "layer", "mode", "us"}.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

REPS = 10


class Out:
    def __init__(self, directory: Path, budget_s: float):
        directory.mkdir(parents=True, exist_ok=True)
        self.file = (directory / "gpu_kernel_kinds.jsonl").open("a")
        self.deadline = time.monotonic() + budget_s

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        print(json.dumps(record)[:240], flush=True)


def graphed(fn, reps: int = 1):
    """`fn` called `reps` times, captured as one CUDA graph (after 3 warm-up calls on a side
    stream); returns the graph's replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    return graph.replay


def device_us(fn, cuda: bool) -> float:
    """Median microseconds per call: a CUDA graph of REPS calls replayed 5 times (CPU: wall clock)."""
    if not cuda:
        fn()
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e6
    replay = graphed(fn, REPS)
    replay()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / REPS)
    return statistics.median(times)


def bn_cases(dev, s):
    """Batch norm (half input, fp32 statistics and affine, as autocast runs it), by channels."""
    out = []
    for c, hw in ((16, 112), (32, 112), (64, 56), (96, 56), (144, 56), (256, 56), (512, 28), (1024, 14), (2048, 7)):
        n = max(1, 256 // s)
        for fmt in (("nchw", "nhwc") if c in (32, 64, 256, 1024) else ("nchw",)):
            for dtype, tag in ((torch.float16, "fp16"), (torch.float32, "fp32")):
                if tag == "fp32" and c not in (64, 256):
                    continue
                x = torch.randn(n, c, hw, hw, device=dev, dtype=dtype)
                if fmt == "nhwc":
                    x = x.contiguous(memory_format=torch.channels_last)
                x.requires_grad_(True)
                bn = nn.BatchNorm2d(c, device=dev)
                g = torch.randn_like(x)
                nbytes = x.numel() * x.element_size()
                what = f"{tag} {fmt} n{n} c{c} {hw}x{hw}"
                out.append(("bn_train_fwd", what, lambda x=x, bn=bn: bn(x), nbytes))
                out.append(("bn_train_fwd_bwd", what, lambda x=x, bn=bn, g=g: bn(x).backward(g), nbytes))
                bn_eval = nn.BatchNorm2d(c, device=dev).eval()
                out.append(("bn_eval_fwd", what, lambda x=x, bn=bn_eval: bn(x.detach()), nbytes))
    return out


def ln_cases(dev, s):
    """Layer norm by row length, fp32 (autocast's choice) and half, forward and forward+backward."""
    out = []
    for h in (96, 192, 384, 768, 1024, 2048, 4096):
        rows = max(1, (64 * 2 ** 20 // h) // s)
        for dtype, tag in ((torch.float32, "fp32"), (torch.float16, "fp16")):
            x = torch.randn(rows, h, device=dev, dtype=dtype, requires_grad=True)
            ln = nn.LayerNorm(h, device=dev, dtype=dtype)
            g = torch.randn_like(x)
            nbytes = x.numel() * x.element_size()
            out.append(("ln_fwd", f"{tag} {rows}x{h}", lambda x=x, ln=ln: ln(x), nbytes))
            out.append(("ln_fwd_bwd", f"{tag} {rows}x{h}", lambda x=x, ln=ln, g=g: ln(x).backward(g), nbytes))
    return out


def conv_cases(dev, s):
    """Half convolutions NCHW vs channels_last (cuDNN transposes NCHW for tensor cores), and
    depthwise 3x3 convolutions, forward and forward+backward."""
    out = []
    for n, c, hw, k, r in ((256, 64, 56, 64, 3), (256, 256, 56, 64, 1), (256, 64, 56, 256, 1), (256, 512, 28, 128, 1),
                           (256, 128, 28, 128, 3), (256, 1024, 14, 256, 1)):
        n = max(1, n // s)
        for fmt in ("nchw", "nhwc"):
            x = torch.randn(n, c, hw, hw, device=dev, dtype=torch.float16)
            conv = nn.Conv2d(c, k, r, padding=r // 2, bias=False, device=dev, dtype=torch.float16)
            if fmt == "nhwc":
                x = x.contiguous(memory_format=torch.channels_last)
                conv = conv.to(memory_format=torch.channels_last)
            x.requires_grad_(True)
            g = torch.randn(n, k, hw, hw, device=dev, dtype=torch.float16)
            if fmt == "nhwc":
                g = g.contiguous(memory_format=torch.channels_last)
            flops = 2 * n * k * hw * hw * c * r * r
            what = f"fp16 {fmt} n{n} c{c} {hw}x{hw} k{k} r{r}"
            out.append(("conv_fwd", what, lambda x=x, conv=conv: conv(x), flops))
            out.append(("conv_fwd_bwd", what, lambda x=x, conv=conv, g=g: conv(x).backward(g), flops))
    for n, c, hw, stride in ((256, 32, 112, 1), (256, 96, 112, 2), (256, 144, 56, 1), (256, 240, 28, 1),
                             (256, 672, 14, 1), (256, 1152, 7, 1)):
        n = max(1, n // s)
        for fmt, dtype, tag in (("nchw", torch.float16, "fp16"), ("nhwc", torch.float16, "fp16"),
                                ("nchw", torch.float32, "fp32")):
            x = torch.randn(n, c, hw, hw, device=dev, dtype=dtype)
            conv = nn.Conv2d(c, c, 3, stride=stride, padding=1, groups=c, bias=False, device=dev, dtype=dtype)
            if fmt == "nhwc":
                x = x.contiguous(memory_format=torch.channels_last)
                conv = conv.to(memory_format=torch.channels_last)
            x.requires_grad_(True)
            g = torch.randn_like(conv(x))
            nbytes = x.numel() * x.element_size()
            what = f"{tag} {fmt} n{n} c{c} {hw}x{hw} s{stride}"
            out.append(("dwconv_fwd", what, lambda x=x, conv=conv: conv(x), nbytes))
            out.append(("dwconv_fwd_bwd", what, lambda x=x, conv=conv, g=g: conv(x).backward(g), nbytes))
    return out


def misc_cases(dev, s):
    out = []
    n = max(1, 2 ** 26 // s)
    x32, x16 = torch.randn(n, device=dev), torch.randn(n, device=dev, dtype=torch.float16)
    out.append(("cast", f"fp32->fp16 {n}", lambda: x32.half(), n * 6))
    out.append(("cast", f"fp16->fp32 {n}", lambda: x16.float(), n * 6))
    out.append(("add_mixed", f"fp16+fp32 {n}", lambda: x16 + x32, n * 10))
    for rows, cols in ((8 * 12 * 128, 128), (8 * 16 * 384, 384), (32 * 16 * 384, 384), (8 * 12 * 1024, 1024)):
        rows = max(1, rows // s)
        for dtype, tag in ((torch.float32, "fp32"), (torch.float16, "fp16")):
            x = torch.randn(rows, cols, device=dev, dtype=dtype, requires_grad=True)
            g = torch.randn_like(x)
            nbytes = x.numel() * x.element_size()
            out.append(("softmax_fwd", f"{tag} {rows}x{cols}", lambda x=x: torch.softmax(x, -1), nbytes))
            out.append(("softmax_fwd_bwd", f"{tag} {rows}x{cols}", lambda x=x, g=g: torch.softmax(x, -1).backward(g),
                        nbytes))
    for c, hw in ((64, 112),):
        x = torch.randn(max(1, 256 // s), c, hw, hw, device=dev, dtype=torch.float16, requires_grad=True)
        out.append(("maxpool_fwd_bwd", f"fp16 nchw {tuple(x.shape)} 3x3 s2",
                    lambda x=x: F.max_pool2d(x, 3, 2, 1).sum().backward(), x.numel() * 2))
    return out


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def host_layers(dev):
    """(name, module, input) of tiny layers: what one call of each costs the host."""
    with torch.device(dev):
        return [("conv3x3", nn.Conv2d(8, 8, 3, padding=1, bias=False), torch.randn(1, 8, 8, 8)),
                ("batchnorm2d", nn.BatchNorm2d(8), torch.randn(1, 8, 8, 8)),
                ("relu", nn.ReLU(), torch.randn(1, 8, 8, 8)),
                ("conv-bn-relu", Block(8), torch.randn(1, 8, 8, 8)),
                ("linear", nn.Linear(16, 16), torch.randn(1, 4, 16)),
                ("layernorm", nn.LayerNorm(16), torch.randn(1, 4, 16)),
                ("gelu", nn.GELU(), torch.randn(1, 4, 16)),
                ("dropout-eval", nn.Dropout(0.1).eval(), torch.randn(1, 4, 16)),
                ("embedding", nn.Embedding(64, 16), torch.zeros(1, 4, dtype=torch.long)),
                ("sdpa", None, torch.randn(1, 2, 4, 8)),
                ("add", None, torch.randn(1, 4, 16)),
                ("identity", nn.Identity(), torch.randn(1, 4, 16))]


def host_us(call, cuda: bool, inner: int = 200, rounds: int = 7) -> float:
    for _ in range(20):
        call()
    samples = []
    for _ in range(rounds):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(inner):
            call()
        if cuda:
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - t0) * 1e6 / inner)
    return sorted(samples)[len(samples) // 5]


def run_host(out: Out, dev: str, cuda: bool):
    for name, module, x in host_layers(dev):
        if module is None and name == "sdpa":
            def fn(x=x):
                return F.scaled_dot_product_attention(x, x, x)
        elif module is None:
            def fn(x=x):
                return x + x
        else:
            fn = (lambda m=module, x=x: m(x))
        for mode in ("no_grad", "autocast", "train"):
            try:
                if mode == "train":
                    if not x.is_floating_point():
                        params = [p for p in module.parameters()]
                        if not params:
                            continue
                    inp = x.detach().requires_grad_(True) if x.is_floating_point() else x

                    def call(inp=inp, module=module, name=name):
                        y = (module(inp) if module is not None else
                             (F.scaled_dot_product_attention(inp, inp, inp) if name == "sdpa" else inp + inp))
                        y.sum().backward()
                    us = host_us(call, cuda, inner=50)
                elif mode == "autocast":
                    with torch.no_grad(), torch.autocast(dev.split(":")[0], dtype=torch.float16 if cuda else torch.bfloat16):
                        us = host_us(fn, cuda)
                else:
                    with torch.no_grad():
                        us = host_us(fn, cuda)
                out.write({"kind": "host", "layer": name, "mode": mode, "us": round(us, 2)})
            except Exception as e:  # noqa: BLE001
                out.write({"kind": "host", "layer": name, "mode": mode, "error": f"{type(e).__name__}: {e}"[:200]})


SDPA_BACKENDS = ("default", "flash", "efficient", "cudnn", "math")


def run_sdpa_host(out: Out, dev: str, cuda: bool):
    """Host and device time per scaled_dot_product_attention call by sequence length and backend
    (batch 1, 12 heads of 64, fp16; inference and forward+backward): which backend PyTorch picks,
    and what each costs the host to issue."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kinds = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
             "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
    dtype = torch.float16 if cuda else torch.float32
    for seq in (8, 64, 128, 197, 256, 512):
        q = torch.randn(1, 12, seq, 64, device=dev, dtype=dtype)
        qg = q.clone().requires_grad_(True)
        for backend in SDPA_BACKENDS:
            for mode in ("no_grad", "train"):
                try:
                    with sdpa_kernel([kinds[backend]]) if backend != "default" else contextlib.nullcontext():
                        if mode == "no_grad":
                            with torch.no_grad():
                                host = host_us(lambda: F.scaled_dot_product_attention(q, q, q), cuda)
                                device = device_us(lambda: F.scaled_dot_product_attention(q, q, q), cuda)
                        else:
                            def step():
                                F.scaled_dot_product_attention(qg, qg, qg).sum().backward()
                            host = host_us(step, cuda, inner=50)
                            device = device_us(step, cuda)
                    out.write({"kind": "sdpa_host", "seq": seq, "backend": backend, "mode": mode,
                               "host_us": round(host, 2), "device_us": round(device, 2)})
                except Exception as e:  # noqa: BLE001 - a backend that cannot run this shape says so
                    out.write({"kind": "sdpa_host", "seq": seq, "backend": backend, "mode": mode,
                               "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]})


def run_eval_layers(out: Out, dev: str, cuda: bool):
    """Host time of inference-mode layers the first run held in training mode (batch norm), and
    of a whole conv-bn-relu block under inference_mode, per call."""
    with torch.device(dev):
        cases = [("batchnorm2d-eval", nn.BatchNorm2d(8).eval(), torch.randn(1, 8, 8, 8)),
                 ("conv-bn-relu-eval", Block(8).eval(), torch.randn(1, 8, 8, 8)),
                 ("linear-eval", nn.Linear(16, 16).eval(), torch.randn(1, 4, 16))]
    for name, module, x in cases:
        for mode in ("inference_mode", "autocast"):
            if mode == "autocast" and not cuda:
                continue
            ctx = (torch.autocast("cuda", dtype=torch.float16) if mode == "autocast" else contextlib.nullcontext())
            with torch.inference_mode(), ctx:
                us = host_us(lambda m=module, x=x: m(x), cuda)
            out.write({"kind": "host", "layer": name, "mode": mode, "us": round(us, 2)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-s", type=float, default=240.0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", choices=("all", "host"), default="all",
                        help="host: the host sections alone (layers, SDPA backends)")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("no CUDA device here; pass --device cpu --smoke to check the script", file=sys.stderr)
        return 2
    out = Out(args.out, args.budget_s)
    out.write({"kind": "env", "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if cuda else "cpu",
               "reps_per_graph": REPS})
    run_host(out, args.device, cuda)
    run_eval_layers(out, args.device, cuda)
    run_sdpa_host(out, args.device, cuda)
    if args.only == "host":
        out.write({"kind": "done"})
        return 0
    s = 64 if args.smoke else 1
    for make in (bn_cases, conv_cases, ln_cases, misc_cases):
        for op, what, fn, work in make(args.device, s):
            if time.monotonic() > out.deadline:
                out.write({"kind": "skipped", "from": f"{op} {what}"})
                return 0
            try:
                us = device_us(fn, cuda)
                out.write({"kind": "device", "op": op, "what": what, "us": round(us, 2), "work": work})
            except Exception as e:  # noqa: BLE001
                out.write({"kind": "device", "op": op, "what": what, "error": f"{type(e).__name__}: {e}"[:200]})
            finally:
                if cuda:
                    torch.cuda.empty_cache()
    out.write({"kind": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
