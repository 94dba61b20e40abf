"""An LLM as it is served: prefill and decode with a KV cache, per batch of concurrent users.

For each batch b, from the decoder's real graph (estimator.serving_models), captured on fake tensors:

  prefill  one forward of b prompts of `prompt` tokens that writes the KV cache: its time is the
           time to first token (TTFT), its FLOPs and bytes are reported;
  decode   one forward of b new tokens against a cache of c tokens (estimator.kv_cache: written in
           place, read up to c + 1 by attention), captured at c = prompt (the first output token),
           prompt + generate / 2 and prompt + generate - 1 (the last). A decode step's time grows
           about linearly with c (the cache it streams), so the mean over the generation is
           Simpson's (start + 4 middle + end) / 6; time per output token (TPOT) is that mean.

Each of these steps is captured at the two smallest batches and derived from those two at the
others (estimator.batch_scaling.steps_at: the same ops, every size a power of the batch, what a
capture there gives), or captured at every batch where the two do not fit.

Per user: TPOT and 1 / TPOT tokens/s; per GPU: b / TPOT / gpus. A request takes TTFT +
(generate - 1) x TPOT. Every step is costed at the precision with the served weight and KV formats
(estimator.weight_formats) and run in the execution mode given (estimator.execution: eager
issues every op from Python, which bounds small-batch decode; cuda-graphs and compiled do not).

Memory: the weights as stored, the KV cache of b x (prompt + generate) tokens, and the prefill's
activations (its peak less its weights, per sequence, at the largest batch captured). The largest
batch that fits is the capacity less the weights over what one more sequence needs; a serving
engine keeps some memory back (vLLM's gpu_memory_utilization 0.9), so it is an upper bound.

Example:
    >>> model, config, name = decoder_for("llama3_8b")
    >>> result = serve(model, config, name, load_hardware("h100-sxm"), PRECISIONS["bf16"], prompt=2048,
    ...                generate=256, batches=[1, 32])
    >>> result.points[0].ttft_s, result.points[0].tokens_per_s_per_user
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .batch_scaling import steps_at
from .capture import CapturedStep, Deferred, capture
from .cluster import tensor_parallel_forward
from .device_dispatch import dispatch_for
from .errors import RooflineError
from .execution import run_step
from .hardware import Hardware
from .kv_cache import cache_geometry, check_cache, kv_cache_bytes, served_cache
from .memory import step_memory
from .precision import Precision
from .report import Report
from .step_cache import cached_capture, capture_settings
from .system import System
from .weight_formats import KV_BYTES, served_costs, weight_bytes


@dataclass(frozen=True)
class Step:
    """One costed forward (prefill or decode)."""

    time_s: float
    flops: int
    bytes: int
    host_bound_s: float  # device idle waiting for the host

    def to_dict(self) -> dict:
        return {"time_s": self.time_s, "flops": self.flops, "bytes": self.bytes, "host_bound_s": self.host_bound_s}


@dataclass(frozen=True)
class ServingPoint:
    batch: int
    prefill: Step
    decode: tuple[Step, Step, Step]  # at the first, middle and last output token
    contexts: tuple[int, int, int]
    kv_cache_bytes: float
    activations_bytes: float
    gpus: int = 1

    @property
    def time_per_token_s(self) -> float:
        start, middle, end = (d.time_s for d in self.decode)
        return (start + 4 * middle + end) / 6

    @property
    def tokens_per_s_per_user(self) -> float:
        return 1 / self.time_per_token_s

    @property
    def tokens_per_s_per_gpu(self) -> float:
        return self.batch / self.time_per_token_s / self.gpus

    def to_dict(self, generate: int) -> dict:
        return {"batch": self.batch, "prefill": self.prefill.to_dict(), "ttft_s": self.prefill.time_s,
                "decode": {"time_per_token_s": self.time_per_token_s,
                           "tokens_per_s_per_user": self.tokens_per_s_per_user,
                           "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
                           "steps": [dict(d.to_dict(), context_tokens=c) for d, c in zip(self.decode, self.contexts)]},
                "request_s": self.prefill.time_s + (generate - 1) * self.time_per_token_s,
                "kv_cache_bytes": self.kv_cache_bytes, "activations_bytes": self.activations_bytes}


@dataclass(frozen=True)
class ServingResult:
    model: str
    chip: str
    precision: str
    weights: str  # weight format
    kv: str  # KV-cache format
    execution: str
    prompt: int
    generate: int
    points: tuple[ServingPoint, ...]
    weights_bytes: float
    capacity_bytes: float
    kv_bytes_per_sequence: float
    activation_bytes_per_sequence: float
    gpus: int = 1
    decode_report: Report | None = field(default=None, compare=False, repr=False)  # the last decode step, largest batch

    def memory_bytes(self, batch: int) -> float:
        return self.weights_bytes + batch * (self.kv_bytes_per_sequence + self.activation_bytes_per_sequence)

    def fits(self, batch: int) -> bool:
        return self.memory_bytes(batch) <= self.capacity_bytes

    @property
    def max_batch(self) -> int:
        free = self.capacity_bytes - self.weights_bytes
        per = self.kv_bytes_per_sequence + self.activation_bytes_per_sequence
        return max(0, math.floor(free / per)) if per else 0

    def to_dict(self) -> dict:
        return {"model": self.model, "chip": self.chip, "precision": self.precision, "weights": self.weights,
                "kv_cache": self.kv, "execution": self.execution, "gpus": self.gpus, "prompt_tokens": self.prompt,
                "generate_tokens": self.generate, "weights_bytes": self.weights_bytes,
                "capacity_bytes": self.capacity_bytes, "max_batch": self.max_batch,
                "kv_cache_bytes_per_sequence": self.kv_bytes_per_sequence,
                "points": [dict(p.to_dict(self.generate), memory_bytes=self.memory_bytes(p.batch),
                                fits=self.fits(p.batch)) for p in self.points]}

    def _records(self) -> list[dict]:
        return [{"batch": p.batch, "ttft_s": p.prefill.time_s, "time_per_token_s": p.time_per_token_s,
                 "tokens_per_s_per_user": p.tokens_per_s_per_user, "tokens_per_s_per_gpu": p.tokens_per_s_per_gpu,
                 "request_s": p.prefill.time_s + (self.generate - 1) * p.time_per_token_s,
                 "prefill_flops": p.prefill.flops, "prefill_bytes": p.prefill.bytes,
                 "last_decode_flops": p.decode[-1].flops, "last_decode_bytes": p.decode[-1].bytes,
                 "kv_cache_bytes": p.kv_cache_bytes, "activations_bytes": p.activations_bytes,
                 "memory_bytes": self.memory_bytes(p.batch), "fits": self.fits(p.batch)} for p in self.points]

    def to_pandas(self):
        """One row per batch: TTFT, time per output token, tokens/s, FLOPs, bytes and memory, raw."""
        from .notebook_display import dataframe
        return dataframe(self._records())

    def _repr_html_(self) -> str:
        from .notebook_display import html_table, si
        title = (f"{self.model} on {self.gpus} x {self.chip} · {self.precision} · prompt {self.prompt} + "
                 f"generate {self.generate} tokens · {self.execution}")
        line = (f"weights {si(self.weights_bytes, 'B')} ({self.weights}) of {si(self.capacity_bytes, 'B')} per GPU, "
                f"KV cache {si(self.kv_bytes_per_sequence, 'B')} per sequence ({self.kv}), max batch {self.max_batch}")
        return html_table(self._records(), title, (line,))


def check_prompt(config, prompt: int, generate: int) -> None:
    """The context must fit the model's positions; a RooflineError naming both otherwise."""
    if prompt < 1 or generate < 1:
        raise RooflineError(f"--prompt and --generate take positive numbers of tokens, got {prompt} and {generate}")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    limit = getattr(text, "max_position_embeddings", None) or getattr(text, "n_positions", None)
    if isinstance(limit, int) and prompt + generate > limit:
        raise RooflineError(f"--prompt {prompt} + --generate {generate} = {prompt + generate} tokens is past the "
                            f"model's {limit} positions (max_position_embeddings); shorten them")


def cache_argument(model) -> str:
    """The forward() keyword that takes the KV cache: `cache` (transformers 5.x), else `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def capture_prefill(model, config, batch: int, prompt: int, dtype: torch.dtype, dispatch: str, name: str):
    """The prompt's forward, writing the cache; logits of the last position only where the model
    takes `logits_to_keep` (as generate() asks for them: the next token needs no more)."""
    ids = torch.zeros(batch, prompt, dtype=torch.long, device="meta")
    cache = Deferred(lambda: served_cache(config, batch, 0, prompt, dtype))
    inputs = {"input_ids": ids, cache_argument(model): cache, "use_cache": True}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        inputs["logits_to_keep"] = 1
    return capture(model, inputs, mode="inference", model_name=name, dispatch=dispatch)


def capture_decode(model, config, batch: int, context: int, dtype: torch.dtype, dispatch: str, name: str):
    ids = torch.zeros(batch, 1, dtype=torch.long, device="meta")
    cache = Deferred(lambda: served_cache(config, batch, context, 1, dtype))
    position = torch.full((batch, 1), context, dtype=torch.long, device="meta")
    return capture(model, {"input_ids": ids, cache_argument(model): cache, "use_cache": True,
                           "position_ids": position}, mode="inference", model_name=name, dispatch=dispatch)


def cost_step(step: CapturedStep, hardware: Hardware, precision: Precision, execution: str, weights: str,
              kv: str, gpus: int = 1, system: System | None = None) -> tuple[Step, Report]:
    """One GPU's forward; with gpus > 1 tensor parallel: its share of each node plus the blocking
    all-reduces (estimator.cluster.tensor_parallel_forward)."""
    costs = served_costs(step, precision, weights, kv)
    shards, all_reduce_s = (None, 0.0) if gpus == 1 else tensor_parallel_forward(
        step, precision, gpus, system, system.gpus_per_node)
    times, timeline = run_step(step, costs, hardware, precision, execution, shards)
    report = Report(step, hardware, precision, costs, times, timeline, execution)
    totals = report.totals()
    share = 1 if gpus == 1 else gpus
    return Step(totals["step_time_s"] + all_reduce_s, totals["step_flops"] // share, totals["step_bytes"] // share,
                timeline.host_bound_s), report


def serve(model, config, name: str, hardware: Hardware, precision: Precision, prompt: int, generate: int,
          batches: list[int], weights: str = "auto", kv: str = "auto", execution: str = "eager", gpus: int = 1,
          system: System | None = None, say=lambda line: None, identity: dict | None = None,
          shared_steps: dict | None = None) -> ServingResult:
    """Prefill and decode at each batch (module doc); `gpus` > 1: tensor parallel on `system`,
    weights, KV cache and activations split over the GPUs (a KV head is not split: with fewer
    KV heads than GPUs each GPU keeps one). `identity`: the decoder's for the disk cache of
    captured steps (estimator.step_cache.decoder_identity); None captures without the cache.
    `shared_steps`: a dict the caller keeps across calls (the chips of one run): steps made for
    the same model, dispatch, dtype, prompt, contexts and batches are made once (every GPU
    dispatches alike, so GPUs share them)."""
    check_prompt(config, prompt, generate)
    check_cache(config)
    dispatch = dispatch_for([hardware.kind])
    dtype = next(model.parameters()).dtype  # the cache as the model computes; bytes follow the precision
    contexts = (prompt, prompt + generate // 2, prompt + generate - 1)
    kv_size = KV_BYTES.get(kv, precision.matrix_bytes)
    kv_heads = cache_geometry(config)[1]
    kv_per_sequence = kv_cache_bytes(config, 1, prompt + generate, kv_size) * max(1, math.ceil(kv_heads / gpus)) \
        / kv_heads  # one GPU's KV heads
    points, weights_size, per_sequence_activations, report = [], 0.0, 0.0, None

    def cached(batch: int, what: dict, make: Callable[[], CapturedStep]) -> CapturedStep:
        return cached_capture(None if identity is None else {**identity, **what, "dtype": str(dtype)},
                              capture_settings(batch, dispatch=dispatch), make)

    def prefill_at(batch: int) -> CapturedStep:
        say(f"batch {batch}: prefill of {prompt} tokens")
        return cached(batch, {"serving": "prefill", "prompt": prompt},
                      lambda: capture_prefill(model, config, batch, prompt, dtype, dispatch, name))

    def decode_at(context: int) -> Callable[[int], CapturedStep]:
        def at(batch: int) -> CapturedStep:
            say(f"batch {batch}: decode at {context} tokens of context")
            return cached(batch, {"serving": "decode", "context": context},
                          lambda: capture_decode(model, config, batch, context, dtype, dispatch, name))
        return at

    # two batches captured, the others derived from them (estimator.batch_scaling.steps_at)
    shared = {} if shared_steps is None else shared_steps
    key = (id(model), dispatch, dtype, prompt, contexts, tuple(sorted(set(batches))))  # what the steps are made of
    if key not in shared:
        shared[key] = (steps_at(prefill_at, batches),
                       {context: steps_at(decode_at(context), batches) for context in contexts})
    prefills, decode_steps = shared[key]
    for batch in sorted(batches):
        prefill = prefills[batch]
        prefill_step, _ = cost_step(prefill, hardware, precision, execution, weights, kv, gpus, system)
        memory = step_memory(prefill, precision)
        weights_size = weight_bytes(prefill, precision, weights) / gpus
        activations = max(0.0, memory.peak_bytes - memory.parameters_bytes - memory.buffers_bytes) / gpus
        per_sequence_activations = activations / batch
        decodes = []
        for context in contexts:
            decode_step, report = cost_step(decode_steps[context][batch], hardware, precision, execution, weights, kv,
                                            gpus, system)
            decodes.append(decode_step)
        points.append(ServingPoint(batch, prefill_step, tuple(decodes), contexts,
                                   batch * kv_per_sequence, activations, gpus))
    return ServingResult(name, hardware.id, precision.name, weights, kv, execution, prompt, generate, tuple(points),
                         weights_size, hardware.memory_capacity_bytes, kv_per_sequence, per_sequence_activations,
                         gpus, decode_report=report)

