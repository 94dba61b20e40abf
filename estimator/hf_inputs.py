"""Example inputs for a Hugging Face model, read from its forward signature and its config.

Only shapes and dtypes matter (the step runs on fake tensors). The inputs filled are:
  * every parameter of ``forward`` without a default, and
  * when all have defaults, the model's main input, by what the signature and config offer, in
    this order: mel features (``input_features``), a waveform or spectrogram (``input_values``),
    a text+image pair (``input_ids`` and ``pixel_values`` for configs with a text and a vision
    part, e.g. CLIP; audio LLMs likewise take ``input_ids`` with their audio), token ids
    (``input_ids``, or Perceiver's generic ``inputs``, which are pixels for an ``...Image...``
    class, as 4-D images), pixels (``pixel_values``: 4-D images, 5-D video when the config has
    ``num_frames`` or ``frames_per_clip``), video (``pixel_values_videos``);
  * ``decoder_input_ids`` for encoder-decoders (``config.is_encoder_decoder``).

Sizes: tokens ``seq`` long (default min(512, the position limit)); images at ``image``
(default the config's ``image_size``, else 224); waveforms ``seq`` samples (default 16000, one
second at 16 kHz); mel features at the config's frame count (Whisper: 2 x
``max_source_positions``) or ``seq`` frames. A JSON file (``--inputs FILE.json``) adds or
replaces inputs by name: ``{"input_ids": [1, 128]}`` or ``{"pixel_values": {"shape": [1, 3, 384,
384], "dtype": "float32"}}``; names ending in ``ids``/``mask``/``labels`` default to int64.

Example:
    >>> inputs = infer_inputs(model, config, batch=2, seq=128)
    >>> {k: tuple(v.shape) for k, v in inputs.items()}
    {'input_ids': (2, 128)}
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch

from .errors import CaptureError

DEFAULT_SEQ = 512
DEFAULT_IMAGE = 224
DEFAULT_SAMPLES = 16000  # one second of 16 kHz audio, the rate of Wav2Vec2 / HuBERT / WavLM
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int64": torch.int64,
          "int32": torch.int32, "bool": torch.bool}


def _get(config, *names, default=None):
    """The first of `names` set on the config or on its text/vision/audio sub-configs."""
    for holder in (config, *(getattr(config, s, None) for s in ("text_config", "vision_config", "audio_config",
                                                                 "encoder", "backbone_config"))):
        if holder is None:
            continue
        for name in names:
            value = getattr(holder, name, None)
            if value is not None:
                return value
    return default


def _position_limit(config, *names) -> int | None:
    limit = _get(config, *names)
    return limit if isinstance(limit, int) and limit > 0 else None  # XLNet writes -1: no limit


def _tokens(config, batch: int, seq: int | None, limit_names=("max_position_embeddings", "n_positions",
                                                              "max_seq_len", "seq_length")) -> torch.Tensor:
    vocab = _get(config, "vocab_size")
    vocab = vocab if isinstance(vocab, int) and vocab > 0 else 2  # ids' values never matter (CANINE has none)
    limit = _position_limit(config, *limit_names)
    length = seq or min(DEFAULT_SEQ, limit or DEFAULT_SEQ)
    if limit and length > limit:
        raise CaptureError(f"sequence length {length} exceeds the model's {limit} positions "
                           f"({limit_names[0]} in the config); give a smaller --seq")
    return torch.randint(0, vocab, (batch, length), device="meta")


def _image_side(config, image: int | None) -> tuple[int, int]:
    if image:
        return image, image
    size = _get(config, "image_size", "img_size", "input_size")
    if isinstance(size, (list, tuple)) and len(size) >= 2 and all(isinstance(s, int) for s in size[-2:]):
        return int(size[-2]), int(size[-1])
    return (size, size) if isinstance(size, int) and size > 0 else (DEFAULT_IMAGE, DEFAULT_IMAGE)


def _pixels(config, batch: int, image: int | None, video: bool = True) -> torch.Tensor:
    h, w = _image_side(config, image)
    channels = _get(config, "num_channels", "in_channels", "in_chans", default=3)
    frames = _get(config, "num_frames", "frames_per_clip") if video else None
    shape = (batch, frames, channels, h, w) if isinstance(frames, int) and frames > 0 else (batch, channels, h, w)
    return torch.randn(*shape, device="meta")


def _waveform(config, batch: int, seq: int | None) -> torch.Tensor:
    mel_bins, frames = _get(config, "num_mel_bins"), _get(config, "max_length")
    if isinstance(mel_bins, int) and isinstance(frames, int):  # a spectrogram transformer (AST): frames x mel
        return torch.randn(batch, seq or frames, mel_bins, device="meta")
    return torch.randn(batch, seq or DEFAULT_SAMPLES, device="meta")


def _mel_features(config, batch: int, seq: int | None) -> torch.Tensor:
    mel_bins, source = _get(config, "num_mel_bins"), _get(config, "max_source_positions")
    per_channel = _get(config, "input_feat_per_channel")
    if isinstance(mel_bins, int) and isinstance(source, int) and per_channel is None:
        # Whisper: (batch, mel, frames); its encoder takes exactly 2 x max_source_positions frames
        return torch.randn(batch, mel_bins, seq or 2 * source, device="meta")
    width = (per_channel * _get(config, "input_channels", default=1) if isinstance(per_channel, int)
             else _get(config, "feature_projection_input_dim", "num_mel_bins", "feature_size", default=80))
    return torch.randn(batch, seq or min(DEFAULT_SEQ, 2 * source if isinstance(source, int) else DEFAULT_SEQ),
                       width, device="meta")


def _decoder_tokens(config, batch: int, seq: int | None) -> torch.Tensor:
    return _tokens(config, batch, seq, ("max_target_positions", "max_position_embeddings", "n_positions"))


# argument name -> (config, batch, seq, image) -> meta tensor; "X_as_Y" builds an X passed as Y
BUILDERS = {
    "input_ids": lambda c, b, s, i: _tokens(c, b, s),
    "inputs": lambda c, b, s, i: _tokens(c, b, s),
    "pixel_values": lambda c, b, s, i: _pixels(c, b, i),
    "pixel_values_as_inputs": lambda c, b, s, i: _pixels(c, b, i, video=False),
    "pixel_values_videos": lambda c, b, s, i: _pixels(c, b, i),
    "input_values": lambda c, b, s, i: _waveform(c, b, s),
    "input_features": lambda c, b, s, i: _mel_features(c, b, s),
    "decoder_input_ids": lambda c, b, s, i: _decoder_tokens(c, b, s),
}


def _main_inputs(names: list[str], config, task: str) -> list[str]:
    """The model's main input(s) when forward requires none (see module doc for the order)."""
    has = set(names)
    text = getattr(config, "text_config", None) is not None
    for audio in ("input_features", "input_values"):
        if audio in has:  # an audio LLM (a text part too) takes the audio with its prompt
            return ["input_ids", audio] if text and "input_ids" in has else [audio]
    if {"input_ids", "pixel_values"} <= has and text and _get(config, "vision_config") is not None:
        return ["input_ids", "pixel_values"]
    if "input_ids" in has and _get(config, "vocab_size") is not None:
        return ["input_ids"]
    if "inputs" in has and "Image" in task:  # Perceiver's one generic input, by the class's task
        return ["pixel_values_as_inputs"]
    if "inputs" in has and _get(config, "vocab_size") is not None:
        return ["inputs"]
    if "pixel_values" in has:
        return ["pixel_values"]
    if "pixel_values_videos" in has:
        return ["pixel_values_videos"]
    return [n for n in ("input_ids",) if n in has]


def infer_inputs(model: torch.nn.Module, config, batch: int = 1, seq: int | None = None, image: int | None = None,
                 given: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Keyword inputs for `model.forward` (see module doc); `given` (from --inputs) wins by name."""
    given = dict(given or {})
    params = inspect.signature(model.forward).parameters
    names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [n for n in names if params[n].default is inspect.Parameter.empty]
    wanted = required or _main_inputs(names, config, type(model).__name__)
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in names and wanted:
        wanted = [*wanted, "decoder_input_ids"]
    unknown = [n for n in wanted if n not in BUILDERS and n not in given]
    if unknown or not (wanted or given):
        what = (f"input {', '.join(repr(n) for n in unknown)}" if unknown
                else f"inputs: none of forward({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}) is one "
                     "it knows")
        raise CaptureError(f"cannot tell the shape of {type(model).__name__}'s {what}; give it in --inputs FILE.json, "
                           "e.g. {\"" + (unknown[0] if unknown else (names[0] if names else "x")) + "\": [1, 128]}")
    inputs = {n.split("_as_")[-1]: BUILDERS[n](config, batch, seq, image) for n in wanted if n not in given}
    inputs.update(given)
    return inputs


def load_input_spec(path_text: str) -> dict[str, torch.Tensor]:
    """Meta tensors from a JSON file {name: [shape...]} or {name: {"shape": [...], "dtype": "..."}}."""
    path = Path(path_text)
    if not path.is_file():
        raise CaptureError(f"--inputs file {path_text!r} does not exist")
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CaptureError(f"--inputs file {path_text!r} is not valid JSON: {e}") from None
    if not isinstance(spec, dict) or not spec:
        raise CaptureError(f"--inputs file {path_text!r} must hold a JSON object of input name -> shape, "
                           "e.g. {\"input_ids\": [1, 128]}")
    return {name: _spec_tensor(path_text, name, entry) for name, entry in spec.items()}


def _spec_tensor(path_text: str, name: str, entry) -> torch.Tensor:
    integer = name.endswith(("ids", "mask", "labels"))
    shape, dtype_name = (entry, "int64" if integer else "float32") if isinstance(entry, list) else (
        (entry.get("shape"), entry.get("dtype", "int64" if integer else "float32")) if isinstance(entry, dict)
        else (None, None))
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                      for d in shape)):
        raise CaptureError(f"--inputs {path_text}: {name!r} needs a shape of positive integers, e.g. [1, 128]; "
                           f"got {entry!r}")
    if dtype_name not in DTYPES:
        raise CaptureError(f"--inputs {path_text}: {name!r} has dtype {dtype_name!r}; use one of {', '.join(DTYPES)}")
    dtype = DTYPES[dtype_name]
    if dtype.is_floating_point:
        return torch.randn(*shape, dtype=dtype, device="meta")
    return torch.zeros(*shape, dtype=dtype, device="meta")
