"""The decoder to serve: a Hugging Face causal language model built on the meta device, so its
own attention, masks and KV cache classes run in the capture.

Sources: a zoo decoder by name (the same sizes as the zoo's model, as the transformers class of
that architecture: Llama for llama2/3 and mistral, Mixtral, GPT-2), `--hf-config` (its
architectures[0] when that class can generate, else AutoModelForCausalLM), or FILE.py:FUNC
returning (model, inputs) with a transformers model that can generate. Anything else (an encoder,
a vision model, an encoder-decoder) is refused: serving here is a decoder's prefill and decode.

Example:
    >>> model, config, name = decoder_for("llama3_8b")
    >>> type(model).__name__, config.num_key_value_heads
    ('LlamaForCausalLM', 8)
"""
from __future__ import annotations

import contextlib
import logging

import torch

from .errors import RooflineError, UnknownModelError, did_you_mean, first_line

ZOO_DECODERS = ("gpt2", "gpt2_medium", "gpt2_large", "gpt2_xl", "llama2_7b", "llama3_8b", "llama3_70b", "mistral_7b",
                "mixtral_8x7b")


def decoder_for(spec: str | None = None, hf_config: str | None = None, hf_class: str | None = None):
    """(model on meta, its config, name) of the decoder to serve (module doc)."""
    import transformers

    if hf_config is not None:
        from .model_source import _hf_config

        config = _hf_config(transformers, hf_config)
        return _build(transformers, config, hf_class, hf_config.rstrip("/").split("/")[-1] or "hf")
    if spec in ZOO_DECODERS:
        return _build(transformers, _zoo_config(transformers, spec), None, spec)
    if spec is not None and ":" in spec:
        from .model_source import load_model

        model, _, name = load_model(spec)
        if not getattr(model, "can_generate", lambda: False)():
            raise RooflineError(f"{spec} returns a {type(model).__name__}; serving captures a transformers decoder "
                                "with a KV cache (a model whose can_generate() is True)")
        return model, model.config, name
    import roofline_zoo

    if spec in roofline_zoo.ZOO:
        raise RooflineError(f"{spec} is a {roofline_zoo.get(spec).family} model; serving needs a decoder that "
                            f"generates tokens ({', '.join(ZOO_DECODERS)}, or --hf-config of a causal LM)")
    raise UnknownModelError(f"unknown decoder {spec!r}{did_you_mean(str(spec), list(ZOO_DECODERS))}; give one of "
                            f"{', '.join(ZOO_DECODERS)}, --hf-config CONFIG or FILE.py:FUNC")


def _build(transformers, config, hf_class: str | None, name: str):
    if getattr(config, "is_encoder_decoder", False):
        raise RooflineError(f"{name} is an encoder-decoder ({type(config).__name__}); serving here is a decoder's "
                            "prefill and decode (a causal LM)")
    architectures = getattr(config, "architectures", None) or []
    cls_name = hf_class or next((a for a in architectures if "CausalLM" in a or "LMHead" in a), None)
    cls = getattr(transformers, cls_name, None) if cls_name else transformers.AutoModelForCausalLM
    if cls is None:
        raise UnknownModelError(f"transformers has no class {cls_name!r}; pass --hf-class (e.g. LlamaForCausalLM)")
    try:
        with torch.device("meta"), _warnings_of("transformers") as warned:
            model = cls.from_config(config) if cls is transformers.AutoModelForCausalLM else cls(config)
    except ValueError as e:  # AutoModelForCausalLM has no mapping: an encoder or a vision model
        raise RooflineError(f"{name} ({type(config).__name__}) is not a decoder that generates tokens: serving needs "
                            f"a causal LM ({first_line(e, 120)})") from None
    except Exception as e:  # a config the class does not accept
        raise RooflineError(f"building {cls.__name__} from {name}'s config failed: {type(e).__name__}: "
                            f"{first_line(e)}") from None
    if any("is_decoder=True" in w for w in warned):  # an encoder with a language-model head (BERT-like)
        raise RooflineError(f"{name} builds {type(model).__name__}, an encoder whose attention looks both ways (its "
                            "config is not is_decoder); serving needs a decoder (a causal LM)")
    if not model.can_generate():
        raise RooflineError(f"{name} builds {type(model).__name__}, which does not generate; serving needs a decoder "
                            "(a causal LM)")
    return model, config, name


@contextlib.contextmanager
def _warnings_of(logger_name: str):
    """Collect (and keep off the terminal) what a library logs at WARNING while the block runs."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    log = logging.getLogger(logger_name)
    handlers, propagate = log.handlers, log.propagate
    log.handlers, log.propagate = [Collect(logging.WARNING)], False  # the library's own stream handler too
    try:
        yield messages
    finally:
        log.handlers, log.propagate = handlers, propagate


def _zoo_config(transformers, name: str):
    """The transformers config with the zoo model's sizes (models/llama.py, models/gpt2.py)."""
    if name.startswith("gpt2"):
        layers, heads, dim = {"gpt2": (12, 12, 768), "gpt2_medium": (24, 16, 1024), "gpt2_large": (36, 20, 1280),
                              "gpt2_xl": (48, 25, 1600)}[name]
        return transformers.GPT2Config(n_layer=layers, n_head=heads, n_embd=dim, architectures=["GPT2LMHeadModel"])
    from roofline_zoo import llama

    cfg = {"llama2_7b": llama.LLAMA2_7B, "llama3_8b": llama.LLAMA3_8B, "llama3_70b": llama.LLAMA3_70B,
           "mistral_7b": llama.MISTRAL_7B, "mixtral_8x7b": llama.MIXTRAL_8X7B}[name]
    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
                  num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
                  max_position_embeddings=cfg.max_positions, rope_theta=cfg.rope_theta, rms_norm_eps=cfg.norm_eps,
                  tie_word_embeddings=False)
    if cfg.experts:
        return transformers.MixtralConfig(num_local_experts=cfg.experts, num_experts_per_tok=cfg.experts_per_token,
                                          architectures=["MixtralForCausalLM"], **common)
    return transformers.LlamaConfig(architectures=["LlamaForCausalLM"], **common)
