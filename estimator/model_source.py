"""Turn what a user typed into a model and example inputs.

Accepted forms:
  resnet50              a zoo model (roofline_zoo), sized by --batch / --seq / --image
  path/to/file.py:FUNC  FUNC() returns (model, example_inputs): a tuple of positional
                        arguments or a dict of keyword arguments
  package.module:FUNC   likewise, imported from the Python path
  torchvision:NAME      a torchvision / timm model, when that package imports
  timm:NAME
FUNC may take keyword arguments `batch`, `seq` or `image`; those the user gave are passed.
A Hugging Face config.json is loaded by load_hf_config (the CLI's --hf-config).

Example:
    >>> model, inputs, name = load_model("gpt2", batch=4, seq=512)
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import torch
from torch import nn

import roofline_zoo

from .errors import CaptureError, UnknownModelError, did_you_mean, first_line
from .hf_inputs import infer_inputs, load_input_spec


def load_model(spec: str, batch: int | None = None, seq: int | None = None, image: int | None = None):
    """(model, example_inputs, display name) for a zoo name or a FILE.py:FUNC / module:FUNC."""
    check_sizes(batch=batch, seq=seq, image=image)
    prefix = spec.split(":", 1)[0]
    if prefix in ("torchvision", "timm"):
        return _from_vision_library(prefix, spec.split(":", 1)[1], batch or 1, image)
    if ":" in spec:
        return _from_factory(spec, batch=batch, seq=seq, image=image)
    if spec not in roofline_zoo.ZOO:
        raise UnknownModelError(f"unknown model {spec!r}{did_you_mean(spec, list(roofline_zoo.ZOO))}; "
                                f"zoo models: {', '.join(sorted(roofline_zoo.ZOO))}; "
                                "or give FILE.py:FUNC returning (model, example_inputs)")
    entry = roofline_zoo.get(spec)
    if entry.input_kind == "image" and seq is not None:
        raise CaptureError(f"{spec} takes images, not sequences: use --image instead of --seq")
    if entry.input_kind == "tokens" and image is not None:
        raise CaptureError(f"{spec} takes token sequences, not images: use --seq instead of --image")
    model, inputs = entry.build(batch=batch or 1, image=image, seq=seq)
    return model, inputs, spec


SIZE_LIMIT = 2 ** 31 - 1  # torch's sizes are 64-bit, but no real batch, length or side comes near this


def check_sizes(**sizes: int | None) -> None:
    """Each of --batch, --seq, --image that is given is a positive integer below SIZE_LIMIT."""
    for name, value in sizes.items():
        if value is not None and not 1 <= value <= SIZE_LIMIT:
            raise CaptureError(f"--{name} must be a positive integer up to {SIZE_LIMIT:,}, got {value}")


def _from_factory(spec: str, **sizes):
    target, _, func_name = spec.rpartition(":")
    if not target or not func_name:
        raise UnknownModelError(f"model {spec!r} should look like FILE.py:FUNC or package.module:FUNC")
    module = _import_file(target) if target.endswith(".py") else _import_module(target)
    func = getattr(module, func_name, None)
    if not callable(func):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise UnknownModelError(f"{target} has no function {func_name!r}{did_you_mean(func_name, found)}")
    accepted = inspect.signature(func).parameters
    kwargs = {k: v for k, v in sizes.items() if v is not None and k in accepted}
    ignored = [k for k, v in sizes.items() if v is not None and k not in accepted]
    if ignored:
        raise CaptureError(f"{spec} does not take {', '.join('--' + k for k in ignored)}: "
                           f"add a `{ignored[0]}` parameter to {func_name}() or leave the option out")
    try:
        result = func(**kwargs)
    except SystemExit as e:
        raise CaptureError(f"{spec} called sys.exit({e.code!r}) instead of returning (model, example_inputs)") from None
    except Exception as e:
        raise CaptureError(f"{spec} raised {type(e).__name__}: {first_line(e)}") from None
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module)):
        raise CaptureError(f"{spec} must return (model, example_inputs) with model an nn.Module; "
                           f"got {type(result).__name__}")
    model, inputs = result
    return model, inputs, f"{Path(target).stem if target.endswith('.py') else target}:{func_name}"


def _import_file(path_text: str):
    path = Path(path_text)
    if not path.is_file():
        raise UnknownModelError(f"model file {path_text!r} does not exist")
    name = f"_roofline_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    argv, sys.argv = sys.argv, [str(path)]  # a file that parses sys.argv at import sees only its own name
    try:
        spec.loader.exec_module(module)
    except SystemExit as e:
        raise CaptureError(f"importing {path_text} called sys.exit({e.code!r}); a model file should define FUNC "
                           "and leave running to `if __name__ == '__main__':`") from None
    except Exception as e:
        raise CaptureError(f"importing {path_text} failed: {type(e).__name__}: {first_line(e)}") from None
    finally:
        sys.argv = argv
    return module


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise UnknownModelError(f"cannot import module {name!r}: {e}") from None
    except SystemExit as e:
        raise CaptureError(f"importing module {name!r} called sys.exit({e.code!r})") from None
    except Exception as e:  # the module's own error at import
        raise CaptureError(f"importing module {name!r} failed: {type(e).__name__}: {first_line(e)}") from None


def _from_vision_library(library: str, name: str, batch: int, image: int | None):
    """A torchvision or timm model on the meta device; its input is an image at `image`, else
    the size the model was made for (timm's pretrained_cfg input_size), else 224."""
    try:
        module = importlib.import_module(library)
    except Exception as e:  # ImportError, or a broken install (no CPU build of torchvision here)
        raise UnknownModelError(f"{library}:{name} needs the {library} package, which does not import here "
                                f"({type(e).__name__}: {first_line(e, 200)}); install it "
                                "(pip install " + library + ") or use a zoo model (`roofline models`)") from None
    with torch.device("meta"):
        try:
            model = module.models.get_model(name) if library == "torchvision" else module.create_model(name)
        except Exception as e:
            found = module.models.list_models() if library == "torchvision" else module.list_models()
            raise UnknownModelError(f"{library} has no model {name!r}{did_you_mean(name, list(found))} "
                                    f"({type(e).__name__}: {first_line(e, 200)})") from None
    made_for = (getattr(model, "pretrained_cfg", None) or {}).get("input_size") or (3, 224, 224)
    channels, height, width = made_for[-3:]
    height, width = (image, image) if image else (height, width)
    return model, (torch.randn(batch, channels, height, width, device="meta"),), f"{library}:{name}"


def _hf_config(transformers, path_text: str):
    """The config as transformers itself loads it (AutoConfig.from_pretrained, local files only):
    a config.json, a directory holding one, or a model id already in the local Hugging Face
    cache. Nothing is downloaded."""
    path = Path(path_text)
    if path.suffix == ".json" and not path.is_file():
        raise UnknownModelError(f"Hugging Face config {path_text!r} does not exist")
    if path.is_dir() and not (path / "config.json").is_file():
        raise UnknownModelError(f"Hugging Face config directory {path_text!r} has no config.json")
    try:
        return transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as e:  # OSError, ValueError, KeyError, TypeError, AttributeError (a JSON array or string)
        what = ("is not a Hugging Face config (needs JSON with a model_type)" if path.exists() else
                "does not exist as a file or directory, nor as a model id in the local Hugging Face cache "
                "(nothing is downloaded)")
        raise UnknownModelError(f"{path_text[:200]!r} {what}: {first_line(e, 200) or type(e).__name__}") from None


def load_hf_config(path_text: str, hf_class: str | None = None, batch: int | None = None, seq: int | None = None,
                   image: int | None = None, inputs_file: str | None = None):
    """A Hugging Face model built on the meta device from a local config (no downloads): a
    config.json, a directory holding one, or a model id in the local Hugging Face cache, loaded
    by transformers' own AutoConfig.from_pretrained. Inputs: estimator.hf_inputs (from the
    forward signature and the config; `inputs_file` adds or replaces them by name).
    """
    transformers = _transformers()
    given = load_input_spec(inputs_file) if inputs_file else None
    config = _hf_config(transformers, path_text)
    where = Path(path_text)
    label = (where.parent.name if where.is_file() else where.name) or "hf"
    return hf_model(config, hf_class, batch, seq, image, given, label)


def hf_model(config, hf_class: str | None = None, batch: int | None = None, seq: int | None = None,
             image: int | None = None, given: dict | None = None, label: str = "hf"):
    """(model, keyword inputs, name) from a transformers config object. The class is `hf_class`,
    else the config's `architectures[0]`, else AutoModel.

    Example:
        >>> model, inputs, name = hf_model(transformers.BertConfig(num_hidden_layers=2), seq=128)
    """
    transformers = _transformers()
    check_sizes(batch=batch, seq=seq, image=image)
    architectures = getattr(config, "architectures", None)
    if isinstance(architectures, str):  # "architectures": "BertModel" (a list in transformers' own files)
        architectures = [architectures]
    name = hf_class or (architectures or ["AutoModel"])[0]
    if not isinstance(name, str):
        raise UnknownModelError(f"the config's architectures {str(architectures)[:80]!r} should be a list of class "
                                "names, e.g. [\"BertModel\"]; fix it or pass --hf-class")
    cls = getattr(transformers, name, None)
    if cls is None:
        raise UnknownModelError(f"transformers has no class {name!r}; pass --hf-class (e.g. AutoModel, "
                                "AutoModelForCausalLM, BertModel)")
    try:
        with torch.device("meta"):
            model = cls.from_config(config) if name.startswith("Auto") else cls(config)
    except Exception as e:  # e.g. a config the class does not accept, or an optional package it needs
        raise CaptureError(f"building {name} from the config failed: {type(e).__name__}: {first_line(e)}") from None
    inputs = infer_inputs(model, config, batch or 1, seq, image, given)
    return model, inputs, f"{label}:{name}"


def _transformers():
    try:
        import transformers
    except ImportError:
        raise UnknownModelError("--hf-config needs the transformers package: pip install 'torch-roofline[hf]' "
                                "(or pip install transformers)") from None
    return transformers


def zoo_summary(name: str, use_cache: bool = True) -> dict:
    """One line of `roofline models`: family, parameters, default input, forward GFLOPs at batch 1
    (the step from the disk cache of captured steps unless `use_cache` is False)."""
    from .capture import capture
    from .precision import PRECISIONS
    from .roofline import step_costs
    from .step_cache import cached_capture, capture_options, capture_settings, model_identity

    entry = roofline_zoo.get(name)
    settings = capture_settings(1)
    step = cached_capture(model_identity(name), settings,
                          lambda: capture(*entry.build(batch=1), model_name=name, **capture_options(settings)),
                          use_cache)
    flops = sum(c.flops for c in step_costs(step, PRECISIONS["fp32"]))
    default = (f"3x{entry.default_image}x{entry.default_image} image" if entry.input_kind == "image"
               else f"{entry.default_seq} tokens (vocab {entry.vocab_size})")
    return {"name": name, "family": entry.family, "parameters": step.parameters, "default_input": default,
            "input_kind": entry.input_kind, "default_image": entry.default_image if entry.input_kind == "image" else None,
            "default_seq": entry.default_seq if entry.input_kind == "tokens" else None,
            "vocab_size": entry.vocab_size if entry.input_kind == "tokens" else None,
            "forward_flops": flops, "reference": entry.reference}
