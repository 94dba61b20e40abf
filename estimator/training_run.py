"""A whole training run from one step: wall-clock days, GPU-hours and cost for a token budget.

    steps      = tokens / (tokens per step)          (rounded up)
    time       = steps x step time                  (seconds: a page shows days)
    GPU time   = time x GPUs                        (GPU-seconds: a page shows GPU-hours)
    cost       = GPU time / 3600 x US$ per GPU-hour (where a price is given)

No restarts, checkpoints, evaluation or failures are counted: a lower bound on the wall clock.

Example:
    >>> training_run(tokens=1e12, tokens_per_step=4_194_304, step_time_s=10.0, gpus=1024, usd_per_gpu_hour=2.0)
    {'tokens': 1000000000000.0, 'steps': 238419, 'time_s': 2384190.0, 'gpu_time_s': 2441410560.0, 'cost_usd': 1356339.2}
"""
from __future__ import annotations

import math

from .errors import RooflineError


def training_run(tokens: float, tokens_per_step: float, step_time_s: float, gpus: int,
                 usd_per_gpu_hour: float | None = None) -> dict:
    if not tokens_per_step:
        raise RooflineError("--train-tokens needs a model whose inputs are tokens (a sequence length); this step "
                            "has none")
    steps = math.ceil(tokens / tokens_per_step)
    seconds = steps * step_time_s
    gpu_seconds = seconds * gpus
    return {"tokens": tokens, "steps": steps, "time_s": seconds, "gpu_time_s": gpu_seconds,
            "cost_usd": gpu_seconds / 3600 * usd_per_gpu_hour if usd_per_gpu_hour is not None else None}
