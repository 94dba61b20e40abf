"""A Hugging Face KV cache as a serving engine keeps it, for capturing a decode step.

transformers' default DynamicCache concatenates each new token's keys and values onto the
cache, copying the whole cache every step; serving engines (vLLM's paged attention, TensorRT-LLM,
gpt-fast's static cache) write the new token in place and let attention read the tokens so far.
`served_cache` builds a DynamicCache whose layers are preallocated buffers of `past + new`
positions holding `past` tokens: an update copies the new tokens into their slice (the write a
server does) and returns the first `past + new` positions (the reads its attention does). The
model's own attention code, masks and cache API run unchanged.

Geometry from the model's config: layers (num_hidden_layers), key/value heads
(num_key_value_heads, else num_attention_heads: grouped-query attention keeps fewer) and head
size (head_dim, else hidden_size / num_attention_heads).

Example:
    >>> cache = served_cache(config, batch=8, past=2048, new=1, dtype=torch.bfloat16)  # in fake mode
    >>> model(input_ids, past_key_values=cache, use_cache=True)
"""
from __future__ import annotations

import torch

from .errors import RooflineError


def cache_geometry(config) -> tuple[int, int, int]:
    """(layers, key/value heads, head size) of a decoder's config; a RooflineError when it has none."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    if not isinstance(layers, int) or not isinstance(heads, int):
        raise RooflineError(f"{type(config).__name__} names no num_hidden_layers / num_attention_heads, so its KV "
                            "cache cannot be laid out")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return layers, kv_heads, head_dim


def kv_cache_bytes(config, batch: int, tokens: int, element_bytes: float) -> float:
    """Keys and values of `tokens` positions for `batch` sequences (2 x layers x kv heads x head size)."""
    layers, kv_heads, head_dim = cache_geometry(config)
    return 2 * layers * kv_heads * head_dim * batch * tokens * element_bytes


def check_cache(config):
    """The model's own DynamicCache for `config`, or a RooflineError when some layer keeps a state
    rather than keys and values (state-space and linear-attention layers: Mamba, Jamba)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    other = {type(layer).__name__ for layer in cache.layers if not isinstance(layer, DynamicLayer)}
    if other:
        raise RooflineError(f"{type(config).__name__} caches {', '.join(sorted(other))} layers (a state, not keys "
                            "and values); serving here models attention decoders' KV caches only")
    return cache


def served_cache(config, batch: int, past: int, new: int, dtype: torch.dtype):
    """A DynamicCache of preallocated layers holding `past` tokens with room for `new` (module doc)."""
    from transformers.cache_utils import DynamicLayer

    class ServedLayer(DynamicLayer):
        def __init__(self, keys: torch.Tensor, values: torch.Tensor, filled: int):
            super().__init__()
            self.keys, self.values, self.filled = keys, values, filled
            self.is_initialized = True
            self.dtype, self.device = keys.dtype, keys.device

        def update(self, key_states, value_states, *args, **kwargs):
            n = key_states.shape[-2]
            self.keys[..., self.filled:self.filled + n, :].copy_(key_states)
            self.values[..., self.filled:self.filled + n, :].copy_(value_states)
            self.filled += n
            return self.keys[..., :self.filled, :], self.values[..., :self.filled, :]

        def get_seq_length(self) -> int:
            return self.filled

    layers, kv_heads, head_dim = cache_geometry(config)
    cache = check_cache(config)
    shape = (batch, kv_heads, past + new, head_dim)
    cache.layers = [ServedLayer(torch.empty(shape, dtype=dtype), torch.empty(shape, dtype=dtype), past)
                    for _ in range(layers)]
    return cache
