"""The step as a two-resource schedule: the host issues kernels, the device runs them in order.

Kernel i costs the host h_i to issue and the device d_i to run. The host issues one after the
other (H_i = H_{i-1} + h_i); the device starts a kernel once it has been issued and the previous
one has finished (E_i = max(E_{i-1}, H_i) + d_i). The gap max(0, H_i - E_{i-1}) is time the
device sits idle waiting for the host: the step is host-bound there. A sync point (a `.item()`,
GradScaler's inf check before the optimizer step, the end of the step) makes the host wait
until the device has drained, plus one round trip. On a CPU the "device" is the same core, so
the schedule is serial: H_i = E_{i-1} + h_i.

Step time = E_last + the final sync's round trip. The waits plus the device times sum to E_last,
so every second of the step is attributed to exactly one kernel: its wait (host) or its run.

Example:
    >>> t = schedule([1e-5, 1e-5], [2e-5, 1e-6], [False, False], sync_s=1e-5)
    >>> t.step_s, t.wait_s
    (4.1e-05, (1e-05, 0.0))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Timeline:
    wait_s: tuple[float, ...]  # per kernel, summed over its repeats: device idle before it, waiting on the host
    host_busy_s: float  # host issuing work (module calls, dispatch, launches)
    device_busy_s: float  # device running kernels
    host_bound_s: float  # device idle while the host works: sum of wait_s
    sync_s: float  # the end of the step's round trip (a sync inside the step shows as the next kernel's wait)
    step_s: float

    @property
    def overlapped_s(self) -> float:
        """Host work hidden under device work (the host running ahead of the device)."""
        return max(0.0, self.host_busy_s - self.host_bound_s)

    def to_dict(self) -> dict:
        step = self.step_s or 1.0
        return {"step_time_s": self.step_s, "host_busy_s": self.host_busy_s, "device_busy_s": self.device_busy_s,
                "host_bound_s": self.host_bound_s, "overlapped_s": self.overlapped_s, "sync_s": self.sync_s,
                "host_bound_fraction": self.host_bound_s / step,
                "device_bound_fraction": (self.device_busy_s) / step, "overlapped_fraction": self.overlapped_s / step}


def schedule(host_s: Sequence[float], device_s: Sequence[float], sync_before: Sequence[bool], sync_s: float,
             serial: bool = False, order: Sequence[int] | None = None) -> Timeline:
    """Run the schedule over kernels in `order` (indices, repeats allowed; default each once).
    `sync_before[i]`: the host waits for the device before issuing kernel i."""
    order = range(len(host_s)) if order is None else order
    wait = [0.0] * len(host_s)
    issued = finished = 0.0  # H and E
    host_busy = device_busy = 0.0
    for i in order:
        if sync_before[i]:
            issued = max(issued, finished) + sync_s
        issued = (finished if serial else issued) + host_s[i]
        gap = max(0.0, issued - finished)
        wait[i] += gap
        finished += gap + device_s[i]
        host_busy += host_s[i]
        device_busy += device_s[i]
    return Timeline(tuple(wait), host_busy, device_busy, sum(wait), sync_s, finished + sync_s)
