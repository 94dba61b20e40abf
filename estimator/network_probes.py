"""Measure this machine's loopback all_reduce and write it as a "system" document (`roofline
calibrate --network`): the network of a cluster of `nproc` local processes.

What is measured: `nproc` processes (estimator.distributed_launch, gloo on 127.0.0.1) all_reduce
a float32 tensor of S bytes (S // 4 zeros, so the sums never overflow), one warm-up then
`repeats` timed calls per size, each behind a barrier; a call's time is the slowest rank's
(all_reduce MAX of each rank's time.perf_counter interval) and a size's time is the median of
its calls. A least-squares line t = a + b S over the sizes gives the base latency a (floored
at 1 us) and the bus bandwidth by nccl-tests' convention: busbw = algbw x 2(n-1)/n with
algbw = S / t, so for large S busbw = 2(n-1)/n / b.

Budget: with a `deadline` (estimator.deadline), a size whose calls, predicted from the size
below at the same rate (predict_s), would overrun the time left is skipped with every larger
one; the two smallest always run (a line needs two points). Skipped sizes go to `say` and to
the deadline's cuts.

Example:
    >>> doc = measure_loopback_network(nproc=2, sizes_bytes=(1 << 20, 8 << 20), repeats=3)
    >>> doc["network"]["intra_node"]["bus_bandwidth_gbps"]     # about 2-6 on a 2-core VM
"""
from __future__ import annotations

import datetime
import os
import statistics
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .deadline import Deadline, never, predict_s
from .distributed_launch import check_nproc, launch, threads_per_process
from .errors import RooflineError

DEFAULT_SIZES = (4096, 65536, 1 << 20, 4 << 20, 16 << 20, 64 << 20)
STARTUP_GRACE_S = 60.0  # the launch's own timeout beyond the deadline: spawning, imports, rendezvous
MAX_TIMEOUT_S = 600.0


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _size(nbytes: int) -> str:
    """4096 -> '4 KiB', 1 << 20 -> '1 MiB', 100 -> '100 B'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} B"


def _check(nproc: int, sizes_bytes: Sequence[int], repeats: int) -> list[int]:
    check_nproc(nproc)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise RooflineError(f"repeats must be a positive integer, got {repeats!r}")
    bad = [s for s in sizes_bytes if not isinstance(s, int) or isinstance(s, bool) or s < 4 or s % 4]
    if bad:
        raise RooflineError(f"all_reduce sizes must be whole float32 tensors (positive multiples of 4 bytes), "
                            f"got {bad[0]!r}")
    sizes = sorted(set(sizes_bytes))
    if len(sizes) < 2:
        raise RooflineError(f"the fit t = a + b S needs at least two distinct sizes, got {list(sizes_bytes)}")
    return sizes


def measure_loopback_network(nproc: int = 2, sizes_bytes: Sequence[int] = DEFAULT_SIZES, repeats: int = 5,
                             deadline: Deadline | None = None, say: Callable[[str], None] = print) -> dict:
    """Time gloo all_reduce on `nproc` local processes and return the system document (a plain
    dict, see the module doc): id local, the fitted base latency and bus bandwidth, and sources."""
    sizes = _check(nproc, sizes_bytes, repeats)
    deadline = deadline or never()
    left_s = deadline.left_s
    timeout_s = min(MAX_TIMEOUT_S, max(left_s, 0.0) + STARTUP_GRACE_S)
    say(f"network: all_reduce over loopback, {nproc} processes (gloo), sizes {', '.join(map(_size, sizes))}")
    times = launch(_allreduce_times, nproc, sizes, repeats, time.time() + left_s, timeout_s=timeout_s,
                   what="the loopback all_reduce probe", on_say=say)
    skipped = [s for s in sizes if s not in times]
    if skipped:
        what = f"network: all_reduce sizes {', '.join(map(_size, skipped))} skipped"
        deadline.cut(what)
        say(f"{what} (they would overrun the time left)")
    return system_doc(nproc, times)


def system_doc(nproc: int, times: dict[int, list[float]]) -> dict:
    """The system document from {size in bytes: call times in s}: fit t = a + b S on the medians."""
    sizes = sorted(times)
    medians = [statistics.median(times[s]) for s in sizes]
    b, a = np.polyfit(np.array(sizes, dtype=float), np.array(medians), 1)
    listing = ", ".join(f"{_size(s)}: {_sig(m * 1e3, 3)} ms" for s, m in zip(sizes, medians))
    if not (np.isfinite(b) and b > 0):
        raise RooflineError(f"the all_reduce times do not grow with size ({listing}), so no bandwidth follows "
                            f"from t = a + b S; measure larger sizes (several MiB) or more repeats")
    bus_gbps = _sig(2 * (nproc - 1) / nproc / b / 1e9)
    today = datetime.date.today().isoformat()
    torch_version = torch.__version__
    fit = f"fit t = a + b S with a = {_sig(a * 1e6, 3)} us, b = {_sig(b * 1e9, 3)} ns/byte"
    return {
        "id": "local",
        "name": f"this machine, {nproc} processes over loopback (gloo)",
        "chip": "local",
        "gpus_per_node": nproc,
        "network": {
            "base_latency_us": _sig(max(a * 1e6, 1.0)),
            "intra_node": {
                "name": f"loopback (gloo all_reduce, {nproc} processes)",
                "link_gbps": bus_gbps,
                "bus_bandwidth_gbps": bus_gbps,
                "hop_latency_us": 0.0,
                "source": [f"measured by roofline calibrate --network on {today}: all_reduce times (median of "
                           f"{min(len(t) for t in times.values())}) {listing}, {fit}, torch {torch_version}, gloo"],
            },
        },
        "source": [f"roofline calibrate --network, {today}, {os.cpu_count()} CPUs, {nproc} processes x "
                   f"{threads_per_process(nproc)} threads, torch {torch_version}"],
    }


def _allreduce_times(rank: int, nproc: int, say, sizes: list[int], repeats: int,
                     end_time: float) -> dict[int, list[float]]:
    """One rank's part (run by distributed_launch): {size: the slowest rank's time per call}, for
    the sizes that fit before `end_time` (time.time()); rank 0 decides and tells the others."""
    out: dict[int, list[float]] = {}
    last: tuple[float, int] | None = None  # (one call's seconds, bytes) of the size below
    for i, size in enumerate(sizes):
        go = torch.tensor([1])
        if rank == 0 and i >= 2 and last is not None:
            go[0] = int(predict_s(*last, size) * (repeats + 1) <= end_time - time.time())
        dist.broadcast(go, 0)
        if not go.item():
            break
        x = torch.zeros(size // 4, dtype=torch.float32)
        dist.all_reduce(x)  # warm-up
        calls: list[float] = []
        for _ in range(repeats):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(x)
            elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            calls.append(float(elapsed.item()))
        out[size] = calls
        median = statistics.median(calls)
        last = (median, size)
        if rank == 0:
            say(f"network: all_reduce {_size(size)}: {median * 1e3:.3g} ms (median of {repeats}), "
                f"{size / median / 1e9:.3g} GB/s algbw")
    return out
