"""torch-roofline: static roofline performance estimates for PyTorch models.

Example:
    >>> import estimator
    >>> report = estimator.estimate(model, (x,), hardware="h100-sxm", precision="amp-bf16", mode="train")
    >>> report.totals()["step_time_s"]
    >>> report.recost(hardware=estimator.load_hardware("a100-80gb-sxm"))  # no new trace
"""
from __future__ import annotations

from . import rules  # noqa: F401  (registers every cost rule)
from .capture import CapturedStep, OpNode, capture
from .device_dispatch import dispatch_for
from .errors import RooflineError
from .hardware import Hardware, load_hardware
from .precision import PRECISIONS, Precision
from .report import Report, evaluate


def estimate(model, example_inputs, hardware: str | Hardware = "h100-sxm", precision: str = "fp32",
             mode: str = "train", loss_fn=None, model_name: str | None = None, optimizer: str | None = "adamw",
             accumulate: int = 1, execution: str = "eager") -> Report:
    """Capture one step of `model` on `example_inputs` and cost it on `hardware` at `precision`
    (training: with `optimizer`'s update, `accumulate` micro-batches per step), run as `execution`
    (eager, cuda-graphs or compiled). On an accelerator the step is captured as CUDA dispatches
    (estimator.device_dispatch)."""
    chip = load_hardware(hardware) if isinstance(hardware, str) else hardware
    step = capture(model, example_inputs, mode=mode, loss_fn=loss_fn, model_name=model_name, optimizer=optimizer,
                   accumulate=accumulate, dispatch=dispatch_for([chip.kind]))
    return evaluate(step, chip, precision, execution)


__all__ = ["estimate", "capture", "evaluate", "load_hardware", "Report", "CapturedStep", "OpNode",
           "Hardware", "Precision", "PRECISIONS", "RooflineError"]
