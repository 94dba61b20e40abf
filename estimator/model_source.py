"""Turn what a user typed into a model and example inputs.

Accepted forms:
  resnet50              a zoo model (roofline_zoo), sized by --batch / --seq / --image
  path/to/file.py:FUNC  FUNC() returns (model, example_inputs)
  package.module:FUNC   likewise, imported from the Python path
FUNC may take keyword arguments `batch`, `seq` or `image`; those the user gave are passed.

Example:
    >>> model, inputs, name = load_model("gpt2", batch=4, seq=512)
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from torch import nn

import roofline_zoo

from .errors import CaptureError, UnknownModelError, did_you_mean


def load_model(spec: str, batch: int | None = None, seq: int | None = None, image: int | None = None):
    """(model, example_inputs, display name) for a zoo name or a FILE.py:FUNC / module:FUNC."""
    for name, value in (("batch", batch), ("seq", seq), ("image", image)):
        if value is not None and value < 1:
            raise CaptureError(f"--{name} must be a positive integer, got {value}")
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
    except Exception as e:
        raise CaptureError(f"{spec} raised {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
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
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise CaptureError(f"importing {path_text} failed: {type(e).__name__}: {e}") from e
    return module


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise UnknownModelError(f"cannot import module {name!r}: {e}") from e
