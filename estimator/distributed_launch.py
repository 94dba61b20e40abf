"""Launch a function on N local processes joined by torch.distributed, and collect rank 0's result.

Shared by estimator.measure_cluster (timed DDP / FSDP steps) and estimator.network_probes
(the loopback all_reduce probe), so there is one way to start, watch and stop ranks.

Convention: `worker(rank, nproc, say, *args)` is a module-level function (the spawn start
method pickles it by name). It runs after torch.distributed is initialised on 127.0.0.1 with
a free port; rank 0's return value is the launch's result (it must pickle), the other ranks'
returns are ignored. `say(line)` sends a progress line to the parent, which hands it to the
launch's `on_say`. A rank that raises reports its error type and first message line; the
parent collects the other ranks' errors for a moment (SETTLE_S), kills every child and raises
one RooflineError naming the rank that started it (not one that only lost its peers), never a
traceback. A child leaves with os._exit once its message is sent, skipping torch's slow
interpreter teardown. A launch that runs past `timeout_s` kills the children and says so; collectives
and the rendezvous time out too (init_process_group's timeout), so no child waits forever.

Example:
    >>> def _ranks(rank, nproc, say):
    ...     t = torch.tensor([rank]); dist.all_reduce(t); return int(t)
    >>> launch(_ranks, 2, what="rank sum")          # 1
"""
from __future__ import annotations

import contextlib
import datetime
import math
import os
import queue as queue_mod
import re
import socket
import sys
import time
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .errors import RooflineError, first_line

MIN_PROCS, MAX_PROCS = 2, 64
POLL_S = 0.2
SETTLE_S = 2.0  # after a rank fails, how long to collect the others' errors (to name the first cause)
# what a rank reports when another one died under it: never the cause when another error is there
PEER_LOST = re.compile(r"closed by peer|reset by peer|remote worker|broken pipe|communicator was aborted|"
                       r"connection refused|timed out|timeout", re.IGNORECASE)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_nproc(nproc: int, device: str = "cpu") -> None:
    """A RooflineError unless 2 <= nproc <= 64 (and, on CUDA, there is one GPU per rank)."""
    if not isinstance(nproc, int) or isinstance(nproc, bool) or not MIN_PROCS <= nproc <= MAX_PROCS:
        raise RooflineError(f"nproc must be an integer from {MIN_PROCS} to {MAX_PROCS} (data parallelism needs "
                            f"at least two processes), got {nproc!r}")
    if device == "cuda" and torch.cuda.device_count() < nproc:
        raise RooflineError(f"nproc {nproc} on cuda needs one GPU per process, but {torch.cuda.device_count()} "
                            f"are visible; use nproc <= {torch.cuda.device_count()} or device 'cpu'")


def threads_per_process(nproc: int) -> int:
    """The CPU cores shared out evenly: max(1, os.cpu_count() // nproc)."""
    return max(1, (os.cpu_count() or 1) // nproc)


def _child(rank: int, nproc: int, port: int, backend: str, timeout_s: float, results, worker, args) -> None:
    def say(line: str) -> None:
        results.put(("say", rank, line))
    code = 1
    try:
        torch.set_num_threads(threads_per_process(nproc))
        if backend == "nccl":
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=nproc,
                                timeout=datetime.timedelta(seconds=timeout_s))
        out = worker(rank, nproc, say, *args)
        results.put(("ok", rank, out if rank == 0 else None))
        code = 0
    except BaseException as e:  # noqa: BLE001 - reported to the parent as one line
        results.put(("error", rank, f"{type(e).__name__}: {first_line(e) or 'no message'}"))
    finally:
        # the message out first (before the peers see this rank go), then skip the interpreter's
        # teardown (torch's takes ~2 s on 2 cores)
        results.close()
        results.join_thread()
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def launch(worker: Callable[..., Any], nproc: int, *args, backend: str = "gloo", timeout_s: float = 600,
           what: str = "the distributed run", on_say: Callable[[str], None] | None = None) -> Any:
    """Run worker(rank, nproc, say, *args) on `nproc` spawned processes; rank 0's return value."""
    check_nproc(nproc, "cuda" if backend == "nccl" else "cpu")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_child, args=(rank, nproc, port, backend, timeout_s, results, worker, args),
                         daemon=True, name=f"roofline-rank{rank}") for rank in range(nproc)]
    end = time.monotonic() + timeout_s
    done: dict[int, Any] = {}
    errors: list[tuple[int, str]] = []
    settle = math.inf  # once a rank fails: until when the others' errors are collected
    try:
        for p in procs:
            p.start()
        while len(done) + len(errors) < nproc and time.monotonic() < settle:
            try:
                kind, rank, payload = results.get(timeout=POLL_S)
            except queue_mod.Empty:
                if not errors:
                    _check_alive(procs, done, results, end, what, timeout_s, nproc)
                continue
            if kind == "say":
                if on_say is not None:
                    on_say(payload)
            elif kind == "error":
                errors.append((rank, payload))
                settle = min(settle, time.monotonic() + SETTLE_S)
            else:
                done[rank] = payload
        if errors:
            rank, payload = _first_cause(errors)
            raise RooflineError(f"{what} failed on rank {rank} of {nproc}: {payload}")
        for p in procs:
            p.join(timeout=max(1.0, end - time.monotonic()))
        return done[0]
    finally:
        _stop(procs)
        results.close()


def _check_alive(procs, done, results, end: float, what: str, timeout_s: float, nproc: int) -> None:
    """A RooflineError if a rank died without a message, or the launch ran past its end."""
    dead = [r for r, p in enumerate(procs) if r not in done and p.exitcode is not None]
    if dead and results.empty():
        time.sleep(POLL_S)  # a last message may still be in the pipe
        if results.empty():
            raise RooflineError(f"{what}: rank {dead[0]} exited with code {procs[dead[0]].exitcode} "
                                f"without a result (killed, or out of memory?)")
    if time.monotonic() > end:
        raise RooflineError(f"{what} timed out after {timeout_s:g} s ({len(done)} of {nproc} ranks "
                            f"finished); the processes were killed")


def _first_cause(errors: list[tuple[int, str]]) -> tuple[int, str]:
    """The error that started it: the first that is not a rank losing its peers."""
    return next((e for e in errors if not PEER_LOST.search(e[1])), errors[0])


def _stop(procs) -> None:
    """Terminate, then kill, every child still running (each by its own handle)."""
    started = [p for p in procs if p.pid is not None]
    for p in started:
        if p.is_alive():
            p.terminate()
    for p in started:
        p.join(timeout=2.0)
        if p.is_alive():
            p.kill()
            p.join(timeout=2.0)
