"""Time real data-parallel training steps of a zoo model on N local processes (torch.distributed).

What one step is: on every rank, forward, the default loss (estimator.capture.DefaultLoss),
backward, AdamW's step (foreach, the default) and zero_grad, with a barrier before each step so
the ranks start together. A step's time is the slowest rank's (all_reduce MAX of each rank's
time.perf_counter interval, after a CUDA sync on GPU); `step_s` is the median over the `runs`
timed steps after `warmup` untimed ones, and `spread` is (max - min) / median of those steps.

Parallelism: "ddp" wraps the model in DistributedDataParallel (gradients all-reduced in
buckets during the backward); "fsdp" in FullyShardedDataParallel with each repeated block
(estimator.recompute.checkpoint_blocks) its own unit, so parameters are all-gathered per block
and gradients reduce-scattered. Every rank builds the same model with real weights and the same
example inputs (`batch` samples per process: the global batch is nproc x batch).

Processes: spawned by estimator.distributed_launch on 127.0.0.1, gloo on CPU (each with
max(1, cpu_count // nproc) threads), nccl with one GPU per rank on CUDA. A rank that fails
raises one RooflineError naming it; a run past `timeout_s` kills the processes.

Example:
    >>> m = measure_cluster("resnet18", nproc=2, parallel="ddp", batch=2, image=32, warmup=1, runs=3)
    >>> m.step_s, m.backend            # (0.27, 'gloo') on an idle 2-core VM; FSDP about 0.5 s
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .distributed_launch import check_nproc, launch, threads_per_process
from .errors import RooflineError

PARALLEL = ("ddp", "fsdp")


@dataclass(frozen=True)
class ClusterMeasurement:
    """Timed data-parallel training steps: the slowest rank's step time per timed step."""

    model: str
    nproc: int
    parallel: str  # "ddp" | "fsdp"
    batch_per_process: int
    threads_per_process: int
    step_s: float  # median over the timed steps of the slowest rank's step time
    step_times_s: tuple[float, ...]
    spread: float  # (max - min) / median of the timed steps
    backend: str  # "gloo" or "nccl"

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["step_times_s"] = list(self.step_times_s)
        return out


def measure_cluster(model: str, nproc: int, parallel: str, batch: int, *, seq: int | None = None,
                    image: int | None = None, warmup: int = 2, runs: int = 5, device: str = "cpu",
                    timeout_s: float = 600) -> ClusterMeasurement:
    """Time `runs` data-parallel training steps of zoo model `model` on `nproc` local processes
    after `warmup` untimed ones; see the module doc for what a step is and how it is timed."""
    from .measure import _checked_entry  # the same argument checks (and did-you-mean) as `roofline measure`

    if parallel not in PARALLEL:
        raise RooflineError(f"unknown parallelism {parallel!r}; expected one of {', '.join(PARALLEL)} "
                            f"(data parallel: DistributedDataParallel or FullyShardedDataParallel)")
    if device not in ("cpu", "cuda"):
        raise RooflineError(f"device must be 'cpu' (gloo) or 'cuda' (nccl, one GPU per process), got {device!r}")
    check_nproc(nproc, device)
    if not timeout_s > 0:
        raise RooflineError(f"timeout_s must be positive, got {timeout_s!r}")
    _checked_entry(model, batch, device, "fp32", warmup, runs, seq, image)
    backend = "nccl" if device == "cuda" else "gloo"
    times = launch(_train_steps, nproc, model, parallel, batch, seq, image, warmup, runs, device == "cuda",
                   backend=backend, timeout_s=timeout_s, what=f"{parallel} training of {model} on {nproc} processes")
    median = statistics.median(times)
    return ClusterMeasurement(model=model, nproc=nproc, parallel=parallel, batch_per_process=batch,
                              threads_per_process=threads_per_process(nproc),
                              step_s=median, step_times_s=tuple(times),
                              spread=(max(times) - min(times)) / median if median else 0.0, backend=backend)


def _wrap(model: torch.nn.Module, parallel: str, device: torch.device) -> torch.nn.Module:
    """The model under DDP, or under FSDP with each repeated block its own unit."""
    cuda = device.type == "cuda"
    if parallel == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if cuda else None)
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from .recompute import checkpoint_blocks
    classes = {type(block) for block in checkpoint_blocks(model)}
    return FullyShardedDataParallel(model, auto_wrap_policy=ModuleWrapPolicy(classes) if classes else None,
                                    device_id=device)


def _train_steps(rank: int, nproc: int, say, name: str, parallel: str, batch: int, seq, image,
                 warmup: int, runs: int, cuda: bool) -> list[float]:
    """One rank's part (run by distributed_launch): build, wrap, train; the timed steps' max over ranks."""
    import roofline_zoo

    from .capture import DefaultLoss

    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    torch.manual_seed(0)  # the same weights on every rank (DDP broadcasts rank 0's anyway)
    model, inputs = roofline_zoo.get(name).build(batch=batch, image=image, seq=seq, device="cpu")
    model = _wrap(model.to(device).train(), parallel, device)
    inputs = tuple(t.to(device) for t in inputs)
    optimizer = torch.optim.AdamW(model.parameters())
    loss_fn = DefaultLoss()
    times: list[float] = []
    for i in range(warmup + runs):
        dist.barrier()
        start = time.perf_counter()
        loss_fn(model(*inputs)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(device)
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64, device=device)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        if i >= warmup:
            times.append(float(elapsed.item()))
        if rank == 0:
            say(f"step {i + 1} of {warmup + runs}{' (warm-up)' if i < warmup else ''}: {elapsed.item() * 1e3:.1f} ms")
    return times
