"""Measure a zoo model for real, and set the measurement beside our prediction.

`measure` builds a zoo model with real weights on a real device, times `runs` steps after
`warmup` untimed ones, and returns a :class:`Measurement`: the median latency, the FLOPs of
exactly what was timed (counted by our estimator, 1 multiply-accumulate = 2 FLOPs), the
delivered FLOP/s, the efficiency against the chip's matrix peak at the precision, and our
predicted step time for the same model, batch, mode and precision on the same chip.

What one timed run is:
  * inference: ``model.eval()``, one forward under ``torch.inference_mode()``;
  * train: ``model.train()``, ``zero_grad(set_to_none=True)``, a forward, the default loss
    (:class:`estimator.capture.DefaultLoss`), ``backward()`` and an ``AdamW`` step.

FLOPs are the Report's ``step_flops`` for the captured step in the same mode: forward for
inference; forward + loss + backward for training. Note: the optimizer step's FLOPs are not
in our count (AdamW does about a dozen FLOPs per parameter, e.g. 0.3 GFLOP for ResNet-50
against 25 GFLOP of forward + backward at batch 1: about 1%), but its time is in the
measured latency, so training efficiency is slightly understated.

This differs from the seed tool's table (``cli/measure_model_efficiency.py``), which divides
GMACs (4.1 for ResNet-50) by the latency and calls it TFLOPS: our FLOPs are real FLOPs (8.2
GFLOP for ResNet-50's forward at 224 px, everything the forward executes, not only
convolutions and matmuls), so the delivered rate and the efficiency are about 2x the seed's.

Precisions: fp32 as is; bf16/fp16 cast the model and the floating inputs (``model.to``);
amp-bf16/amp-fp16 run under ``torch.autocast(device_type, dtype)``; tf32 enables TF32
matmuls and convolutions (CUDA only); fp8 is refused (PyTorch has no eager fp8 path for a
whole model).

Before anything is allocated, the memory the run needs is predicted
(:func:`predicted_memory_bytes`) and compared with what is free (:func:`free_memory_bytes`);
a run that would not fit is refused with both numbers.

Example:
    >>> m = measure("resnet50", batch=1, device="cpu", hardware=load_hardware("local"))
    >>> m.delivered_flops_per_s / 1e12, m.efficiency, m.prediction_error
"""
from __future__ import annotations

import contextlib
import gc
import os
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import roofline_zoo

from .capture import CapturedStep, DefaultLoss, capture
from .errors import CaptureError, PrecisionError, RooflineError, UnknownModelError, did_you_mean
from .hardware import Hardware, load_hardware, local_hardware_path
from .precision import PRECISIONS, get_precision
from .report import evaluate
from .roofline import step_costs

HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AMP_DTYPES = {"amp-bf16": torch.bfloat16, "amp-fp16": torch.float16}


@dataclass(frozen=True)
class Measurement:
    """One measured configuration. SI units: FLOPs, seconds, FLOP/s.

    `flops` are real FLOPs (2 per multiply-accumulate) of what one timed run executes, from our
    count (Report totals' ``step_flops``); `latency_s` is the median of `runs_s`; `spread` is
    (max - min) / median of the runs; `predicted_s` is our Report's ``step_time_s`` on the
    hardware given to :func:`measure`; `peak_flops_per_s` that chip's matrix peak at the
    precision.
    """

    model: str
    batch: int
    precision: str
    mode: str  # "inference" | "train"
    device: str
    threads: int  # torch.get_num_threads() during the run
    flops: int
    latency_s: float
    spread: float
    runs_s: tuple[float, ...]
    predicted_s: float
    peak_flops_per_s: float
    hardware: str = ""  # id of the chip the prediction and the peak come from
    predicted_memory_bytes: int = 0

    @property
    def delivered_flops_per_s(self) -> float:
        return self.flops / self.latency_s

    @property
    def efficiency(self) -> float:
        """Delivered FLOP/s as a fraction of the chip's matrix peak at the precision."""
        return self.delivered_flops_per_s / self.peak_flops_per_s

    @property
    def prediction_error(self) -> float:
        """(predicted - measured) / measured: +0.2 means we predicted 20% slower than measured."""
        return (self.predicted_s - self.latency_s) / self.latency_s


# ---- memory -------------------------------------------------------------------------------

def _placeholder_bytes(step: CapturedStep) -> tuple[int, int]:
    """(state bytes, input bytes): the capture's placeholders are the parameters and buffers
    first, then the example inputs, named input_0, input_1, ... (see capture.capture)."""
    metas = [(n.name, n.meta.get("tensor_meta")) for n in step.graph.nodes if n.op == "placeholder"]
    n_inputs = 0
    for name, _ in reversed(metas):
        if not re.fullmatch(r"input_\d+", name):
            break
        n_inputs += 1
    sizes = [m.numel * m.itemsize if m is not None else 0 for _, m in metas]
    cut = len(sizes) - n_inputs
    return sum(sizes[:cut]), sum(sizes[cut:])


def predicted_memory_bytes(step: CapturedStep, train: bool) -> int:
    """A conservative estimate of the memory one step of `step`'s model needs, in bytes.

    With P the bytes of the model's state (parameters, unique, plus buffers, at the dtypes
    captured: fp32 for the zoo), I the bytes of the example inputs, and A_max the largest
    single op output of the step (all the output tensors of one op that is not a view):

      * inference: P + I + 4 x A_max;
      * training:  4 x P + I + sum(A) + 2 x A_max, with 4 x P for weights, gradients and
        AdamW's two moments; sum(A) the bytes of every forward- and loss-phase op output that
        is not a view (ops whose cost class is not "free"), an upper bound on the activations
        autograd saves for backward (in-place ops count again, which only overestimates); and
        2 x A_max for the gradient tensors alive at once in backward.

    The multiples of A_max are empirical, from peak RSS of real fp32 runs on CPU (torch
    2.13): inference peaks at 2.6-3.6 x A_max above P at large batches (ResNet-50 b256,
    ViT-B/16 b64, BERT-base b32, EfficientNet-B0 b128, U-Net b8: a residual block keeps
    about four tensors of the largest size alive, and oneDNN reorders add copies), so
    2 x A_max alone would underestimate by up to 2x; training without the 2 x A_max term
    underestimated GPT-2 at batch 4 (6.9 GB real, 6.4 GB predicted), with it every case
    tried is above the real peak (ResNet-50 b64: 10.6 vs 6.3 GB; ViT-B/16 b16: 3.6 vs 3.3;
    BERT-base b8: 4.7 vs 4.4; GPT-2 b4: 8.0 vs 6.9; EfficientNet-B0 b64: 8.0 vs 6.0), and so is
    inference (ResNet-50 b256: 3.5 vs 3.1 GB; ViT-B/16 b64: 1.0 vs 0.9; U-Net b8: 1.2 vs 1.1).
    Buffers are counted 4x in training as well (a small overestimate). Floating tensors are
    taken at the captured dtype (fp32), an upper bound for the half precisions.
    """
    state, inputs = _placeholder_bytes(step)
    costs = step_costs(step, PRECISIONS["fp32"])  # cached on the step; only op classes are used
    phases = ("forward", "loss", "backward") if train else ("forward",)
    sizes = [(node.phase, sum(o.numel * o.itemsize for o in node.outputs))
             for node, cost in zip(step.nodes, costs) if cost.op_class != "free" and node.phase in phases]
    largest = max((nbytes for _, nbytes in sizes), default=0)
    if not train:
        return state + inputs + 4 * largest
    activations = sum(nbytes for phase, nbytes in sizes if phase != "backward")
    return 4 * state + inputs + activations + 2 * largest


def free_memory_bytes(device: str) -> int:
    """Memory free for a new run on `device`: /proc/meminfo's MemAvailable for "cpu" (the
    available physical pages where there is no /proc), torch.cuda.mem_get_info for CUDA."""
    if device == "cpu":
        meminfo = Path("/proc/meminfo")
        if meminfo.is_file():
            for line in meminfo.read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            raise RooflineError("cannot tell how much memory is free on cpu (no /proc/meminfo and no "
                                "sysconf SC_AVPHYS_PAGES)") from None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


# ---- checks -------------------------------------------------------------------------------

def _check_device(device: str) -> str:
    """The device string normalised ("cpu", "cuda", "cuda:N"), or a RooflineError."""
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device.strip().lower()):
        raise RooflineError(f"unknown --device {device!r}; expected cpu, cuda or cuda:N")
    device = device.strip().lower()
    if device == "cpu":
        return device
    if not torch.cuda.is_available():
        raise RooflineError(f"--device {device}: no CUDA device is visible to torch here; use --device cpu")
    if ":" in device:
        index = int(device.split(":")[1])
        count = torch.cuda.device_count()
        if index >= count:
            raise RooflineError(f"--device {device}: torch sees {count} CUDA device(s), "
                                f"cuda:0 to cuda:{count - 1}")
    return device


def _check_precision(precision: str, device_type: str) -> None:
    get_precision(precision)  # an unknown name: PrecisionError with the choices
    if precision == "fp8":
        raise PrecisionError("precision 'fp8' cannot be measured: PyTorch has no eager fp8 path for a whole "
                             "model (it takes Transformer Engine or torchao); measure bf16 or amp-bf16 instead")
    if precision == "tf32" and device_type != "cuda":
        raise PrecisionError("precision 'tf32' is a CUDA tensor-core mode, not a CPU precision; "
                             "use --precision fp32 on cpu")


def _resolve_hardware(hardware) -> Hardware:
    if isinstance(hardware, Hardware):
        return hardware
    if isinstance(hardware, str):
        return load_hardware(hardware)
    if hardware is None:
        if local_hardware_path().is_file():
            return load_hardware("local")
        raise RooflineError("no calibrated 'local' hardware: run `roofline calibrate --quick` first, "
                            "or pass --peak datasheet with --hardware ID")
    raise RooflineError(f"hardware must be a Hardware, a chip id or None, got {type(hardware).__name__}")


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:,.1f} GB"


# ---- running ------------------------------------------------------------------------------

def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def _tf32(enabled: bool):
    if not enabled:
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def autocast_for(precision: str, device_type: str):
    """A factory of the context a step runs in: autocast for amp-*, else a no-op context."""
    amp = AMP_DTYPES.get(precision)
    return (lambda: torch.autocast(device_type, dtype=amp)) if amp else contextlib.nullcontext


def build_real(entry, batch, image, seq, device, precision):
    """The zoo model with real weights on `device` and its inputs, cast for pure bf16/fp16."""
    model, inputs = entry.build(batch=batch, image=image, seq=seq, device=device)
    if precision in HALF_DTYPES:
        dtype = HALF_DTYPES[precision]
        model = model.to(dtype)
        inputs = tuple(t.to(dtype) if t.is_floating_point() else t for t in inputs)
    return model, inputs


def _step_fn(model, inputs, precision: str, device_type: str, train: bool):
    """A zero-argument callable running one full step (what one timed run is)."""
    autocast = autocast_for(precision, device_type)
    if not train:
        model.eval()

        def infer():
            with torch.inference_mode(), autocast():
                model(*inputs)
        return infer

    model.train()
    # pure fp16 weights: AdamW's default eps (1e-8) is 0 in fp16, so the first step divides by zero
    eps = 1e-4 if precision == "fp16" else 1e-8
    optimizer = torch.optim.AdamW(model.parameters(), eps=eps, fused=True)  # the kernel the estimate costs
    loss_fn = DefaultLoss()

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(model(*inputs))
        loss.backward()
        optimizer.step()
    return train_step


def _timed_runs(entry, batch, image, seq, device, precision, train, warmup, runs) -> list[float]:
    """Build the real model on `device`, run `warmup` untimed steps, return `runs` step times (s).
    Everything it allocates is local, so it is freed when it returns."""
    device_type = device.split(":")[0]
    model, inputs = build_real(entry, batch, image, seq, device, precision)
    run_step = _step_fn(model, inputs, precision, device_type, train)
    times: list[float] = []
    with _tf32(precision == "tf32"):
        for _ in range(warmup):
            run_step()
        _sync(device_type)
        for _ in range(runs):
            _sync(device_type)
            start = time.perf_counter()
            run_step()
            _sync(device_type)
            times.append(time.perf_counter() - start)
    return times


def measure(zoo_name: str, batch: int, device: str = "cpu", precision: str = "fp32", train: bool = False,
            warmup: int = 3, runs: int = 5, hardware: Hardware | str | None = None, seq: int | None = None,
            image: int | None = None, step: CapturedStep | None = None) -> Measurement:
    """Time `runs` steps of zoo model `zoo_name` on `device` after `warmup` untimed steps.

    `hardware` is the chip the prediction and the peak come from: a Hardware, a chip id, or
    None for the calibrated "local" chip (an error when there is none). Everything is checked,
    the step captured on the meta device and costed, and the memory it needs compared with
    what is free, before any real tensor is allocated. See the module doc for what a step is.
    `step`: the same model, batch and mode already captured (e.g. by a Study), to skip capturing.
    """
    entry = _checked_entry(zoo_name, batch, device, precision, warmup, runs, seq, image)
    device = _check_device(device)
    chip = _resolve_hardware(hardware)
    mode = "train" if train else "inference"

    # the prediction, from the model on the meta device (no weights allocated)
    if step is None:
        meta_model, meta_inputs = entry.build(batch=batch, image=image, seq=seq, device="meta")
        step = capture(meta_model, meta_inputs, mode=mode, model_name=zoo_name)
        del meta_model, meta_inputs
    try:
        report = evaluate(step, chip, precision)
    except PrecisionError:
        have = sorted(set(chip.matrix_flops_per_s) | {"fp32"})
        raise PrecisionError(f"hardware {chip.id!r} lists no {get_precision(precision).matrix_key} matrix peak "
                             f"(it has {', '.join(have)}), so the efficiency of a {precision} run cannot be "
                             f"computed; pass --hardware with a chip that lists it, or measure fp32") from None
    totals = report.totals()
    peak = chip.matrix_peak(report.precision)
    need = check_fits(step, zoo_name, device)

    # the real run
    device_type = device.split(":")[0]
    try:
        times = _timed_runs(entry, batch, image, seq, device, precision, train, warmup, runs)
    except torch.cuda.OutOfMemoryError as e:
        raise RooflineError(f"{zoo_name} batch {batch} ran out of memory on {device} (predicted {_gb(need)}): "
                            f"{str(e).splitlines()[0]}; use a smaller --batch") from None
    finally:
        gc.collect()
        if device_type == "cuda":
            torch.cuda.empty_cache()

    latency = statistics.median(times)
    return Measurement(model=zoo_name, batch=batch, precision=precision, mode=mode, device=device,
                       threads=torch.get_num_threads(), flops=int(totals["step_flops"]), latency_s=latency,
                       spread=(max(times) - min(times)) / latency if latency else 0.0, runs_s=tuple(times),
                       predicted_s=float(totals["step_time_s"]), peak_flops_per_s=peak, hardware=chip.id,
                       predicted_memory_bytes=need)


def check_fits(step: CapturedStep, zoo_name: str, device: str) -> int:
    """The bytes a real run of `step` needs; a RooflineError saying so when they are not free."""
    need = predicted_memory_bytes(step, step.mode == "train")
    free = free_memory_bytes(device)
    if need > free:
        what = "training" if step.mode == "train" else "inference"
        raise RooflineError(f"{zoo_name} batch {step.batch} {what} needs about {_gb(need)} but only {_gb(free)} "
                            f"is free on {device}; use a smaller --batch")
    return need


def _checked_entry(zoo_name, batch, device, precision, warmup, runs, seq, image) -> roofline_zoo.ZooEntry:
    """The zoo entry, after every argument of a measurement is checked (RooflineError otherwise)."""
    if not isinstance(runs, int) or runs < 1:
        raise RooflineError(f"--runs must be at least 1, got {runs}")
    if not isinstance(warmup, int) or warmup < 0:
        raise RooflineError(f"--warmup must be at least 0, got {warmup}")
    if not isinstance(batch, int) or batch < 1:
        raise RooflineError(f"--batch must be a positive integer, got {batch}")
    for name, value in (("seq", seq), ("image", image)):
        if value is not None and value < 1:
            raise RooflineError(f"--{name} must be a positive integer, got {value}")
    device = _check_device(device)
    device_type = device.split(":")[0]
    _check_precision(precision, device_type)
    if zoo_name not in roofline_zoo.ZOO:
        raise UnknownModelError(f"unknown model {zoo_name!r}{did_you_mean(zoo_name, list(roofline_zoo.ZOO))}; "
                                f"measure takes zoo models: {', '.join(sorted(roofline_zoo.ZOO))}")
    entry = roofline_zoo.get(zoo_name)
    if entry.input_kind == "image" and seq is not None:
        raise CaptureError(f"{zoo_name} takes images, not sequences: use --image instead of --seq")
    if entry.input_kind == "tokens" and image is not None:
        raise CaptureError(f"{zoo_name} takes token sequences, not images: use --seq instead of --image")
    return entry


def efficiency_table_rows(measurements) -> list[dict]:
    """One dict per measurement, for the CLI's table and `measure --json`, in SI units: FLOPs,
    seconds, FLOP/s. `efficiency`, `error` ((predicted - measured) / measured, signed) and
    `spread` are fractions (0.295 prints as 29.5%)."""
    return [{
        "model": m.model, "batch": m.batch, "precision": m.precision, "mode": m.mode,
        "flops": m.flops, "latency_s": m.latency_s,
        "delivered_flops_per_s": m.delivered_flops_per_s, "peak_flops_per_s": m.peak_flops_per_s,
        "efficiency": m.efficiency, "predicted_s": m.predicted_s,
        "error": m.prediction_error, "spread": m.spread,
    } for m in measurements]
