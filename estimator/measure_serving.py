"""Generate with a small decoder on this machine's CPU and time it as `roofline serve` predicts it.

The decoder is built with real (randomly initialised) weights from the same transformers config
the prediction captures (estimator.serving_models), with the same served KV cache
(estimator.kv_cache: preallocated, written in place): one prefill forward of `prompt` tokens per
user (the time to first token), then `generate - 1` decode forwards of one token each, greedy.
Each decode step is timed; the steps at the first, middle and last output token are reported
beside the prediction's three captured contexts. Times are medians over `runs` generations
after one warm-up, in fp32 (the CPU's precision).

Example:
    >>> rows = measure_generation("gpt2", batches=[1, 4], prompt=64, generate=16)
    >>> rows[0]["measured"]["ttft_s"], rows[0]["predicted"]["ttft_s"]
"""
from __future__ import annotations

import inspect
import statistics
import time

import torch

from .errors import RooflineError
from .hardware import Hardware, load_hardware
from .kv_cache import served_cache
from .precision import get_precision
from .serving import cache_argument, serve
from .serving_models import decoder_for


def _generate_once(model, config, batch: int, prompt: int, generate: int) -> tuple[float, list[float]]:
    """(prefill seconds, seconds of each decode step) of one greedy generation."""
    cache = served_cache(config, batch, 0, prompt + generate, torch.float32)
    key = cache_argument(model)
    ids = torch.randint(0, config.vocab_size, (batch, prompt))
    with torch.no_grad():
        start = time.perf_counter()
        logits = model(input_ids=ids, use_cache=True, **{key: cache}, **_last_logits(model)).logits
        token = logits[:, -1:].argmax(-1)
        prefill_s = time.perf_counter() - start
        steps = []
        for i in range(generate - 1):
            position = torch.full((batch, 1), prompt + i, dtype=torch.long)
            start = time.perf_counter()
            logits = model(input_ids=token, position_ids=position, use_cache=True, **{key: cache}).logits
            token = logits[:, -1:].argmax(-1)
            steps.append(time.perf_counter() - start)
    return prefill_s, steps


def _last_logits(model) -> dict:
    """logits_to_keep=1 where the model takes it: the prefill the prediction captures (serving.capture_prefill)."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def measure_generation(name: str | None, batches: list[int], prompt: int, generate: int, runs: int = 3,
                       hardware: Hardware | None = None, hf_config: str | None = None) -> list[dict]:
    """Measured and predicted (chip `local` unless given) TTFT and decode steps per batch of the
    decoder `name` or `hf_config` (module doc)."""
    if generate < 3:
        raise RooflineError(f"--generate must be at least 3 to time the first, middle and last token, got {generate}")
    if runs < 1:
        raise RooflineError(f"--runs must be at least 1, got {runs}")
    hardware = hardware or load_hardware("local")
    meta_model, config, label = decoder_for(name, hf_config)
    predicted = serve(meta_model, config, label, hardware, get_precision("fp32"), prompt, generate, batches)
    torch.manual_seed(0)
    model = type(meta_model)(config).eval()  # real weights, random initialisation
    rows = []
    for batch, point in zip(sorted(batches), predicted.points):
        _generate_once(model, config, batch, prompt, generate)  # warm-up
        timings = [_generate_once(model, config, batch, prompt, generate) for _ in range(runs)]
        ttft = statistics.median(t[0] for t in timings)
        positions = (0, (generate - 1) // 2, generate - 2)  # decode steps at the first, middle, last token
        steps = [statistics.median(t[1][p] for t in timings) for p in positions]
        mean = statistics.median(statistics.fmean(t[1]) for t in timings)
        rows.append({"model": label, "batch": batch, "prompt": prompt, "generate": generate,
                     "measured": {"ttft_s": ttft, "decode_s": steps, "time_per_token_s": mean},
                     "predicted": {"ttft_s": point.prefill.time_s, "decode_s": [d.time_s for d in point.decode],
                                   "time_per_token_s": point.time_per_token_s},
                     "contexts": list(point.contexts)})
    return rows
