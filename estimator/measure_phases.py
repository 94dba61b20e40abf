"""Measure forward and backward of a training step apart, on this machine (seed 002, part 5.1).

One timed run: ``zero_grad``, the forward and the default loss (synchronised, timed), then
``backward()`` (synchronised, timed). No optimizer step: the split is forward vs backward.
The medians over `runs` are returned. The same checks as :func:`estimator.measure.measure`
run first, including the memory check, so a batch that would not fit is refused before any
weight is allocated.

Example:
    >>> t = measure_phases("resnet18", batch=8)
    >>> t.backward_s / t.forward_s
    2.1
"""
from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass

from .capture import CapturedStep, DefaultLoss, capture
from .measure import _check_device, _checked_entry, _sync, autocast_for, build_real, check_fits


@dataclass(frozen=True)
class PhaseTimes:
    """Median seconds of the forward (with the loss) and of the backward of one training step."""

    forward_s: float
    backward_s: float
    runs: int


def measure_phases(zoo_name: str, batch: int, device: str = "cpu", precision: str = "fp32", warmup: int = 2,
                   runs: int = 5, seq: int | None = None, image: int | None = None,
                   step: CapturedStep | None = None) -> PhaseTimes:
    """Time forward and backward of `zoo_name`'s training step at `batch` (see the module doc).
    `step`: the same training step already captured, to skip capturing it for the memory check."""
    entry = _checked_entry(zoo_name, batch, device, precision, warmup, runs, seq, image)
    device = _check_device(device)
    if step is None:
        meta_model, meta_inputs = entry.build(batch=batch, image=image, seq=seq, device="meta")
        step = capture(meta_model, meta_inputs, mode="train", model_name=zoo_name)
    check_fits(step, zoo_name, device)
    try:
        forward, backward = _timed_phases(entry, batch, image, seq, device, precision, warmup, runs)
    finally:
        gc.collect()
    return PhaseTimes(statistics.median(forward), statistics.median(backward), runs)


def _timed_phases(entry, batch, image, seq, device, precision, warmup, runs) -> tuple[list[float], list[float]]:
    device_type = device.split(":")[0]
    model, inputs = build_real(entry, batch, image, seq, device, precision)
    autocast = autocast_for(precision, device_type)
    model.train()
    loss_fn = DefaultLoss()
    forward, backward = [], []
    for i in range(warmup + runs):
        model.zero_grad(set_to_none=True)
        _sync(device_type)
        start = time.perf_counter()
        with autocast():
            loss = loss_fn(model(*inputs))
        _sync(device_type)
        middle = time.perf_counter()
        loss.backward()
        _sync(device_type)
        end = time.perf_counter()
        if i >= warmup:
            forward.append(middle - start)
            backward.append(end - middle)
    return forward, backward
