"""The exceptions torch-roofline raises for bad input; the CLI prints them as one line.

Every message names the bad value, what was expected, and a hint. Example:
    UnknownHardwareError: unknown hardware 'h10'; did you mean 'h100-sxm'? (`roofline hardware list` shows all)
"""
from __future__ import annotations

import difflib
import reprlib

QUOTE_CHARS = 80
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = QUOTE_CHARS
_REPR.maxlevel = 3


class RooflineError(Exception):
    """Base class: an input problem the user can fix, reported without a traceback."""


class UnknownModelError(RooflineError):
    pass


class UnknownHardwareError(RooflineError):
    pass


class HardwareSpecError(RooflineError):
    """A hardware YAML that does not parse or does not follow the schema."""


class PrecisionError(RooflineError):
    """A precision that does not exist, or that the chip has no peak for."""


class CaptureError(RooflineError):
    """The model could not be run on its example inputs (bad shapes, a failing factory...)."""


class UnsupportedOpError(RooflineError):
    """Raised in strict mode when the graph holds ops without a cost rule."""


class LayoutError(RooflineError):
    """A parallel layout that cannot run on the GPUs or the model given."""


class MissingDependencyError(RooflineError, ImportError):
    """An optional package a feature needs is not installed (the message says which extra has it)."""


def quoted(value, limit: int = QUOTE_CHARS) -> str:
    """repr(value) for a message, at most about `limit` characters however big or deep the value.

    >>> quoted("abcdefghijklmnop", limit=10)
    "'abcdef... (16 characters)"
    """
    text = _REPR.repr(value)  # bounded work even for a huge or self-similar structure
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    size = len(value) if isinstance(value, (str, bytes)) else None
    return f"{text} ({size:,} characters)" if size and size > limit else text


def did_you_mean(value: str, choices: list[str]) -> str:
    """A ' did you mean ...?' clause for up to 3 choices, or '' when none is close: choices that
    start with `value`, then those containing it (ignoring case, shortest first), else the
    closest by edit distance.

    >>> did_you_mean("resnet5", ["resnet50", "vit_b_16"])
    "; did you mean 'resnet50'?"
    >>> did_you_mean("a100", ["h100-sxm", "a100-80gb-sxm", "a100-40gb-sxm"])
    "; did you mean 'a100-40gb-sxm' or 'a100-80gb-sxm'?"
    """
    close = _containing(value, choices) or difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(quoted(c) for c in close) + "?"


def _containing(value: str, choices: list[str]) -> list[str]:
    """Up to 3 choices starting with `value`, then containing it, shortest first (ignoring case)."""
    if not value:
        return []
    key = value.lower()
    hits = sorted((not c.lower().startswith(key), len(c), c) for c in choices if key in c.lower())
    return [c for _, _, c in hits[:3]]


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an error's message, at most `limit` characters: a library's message can
    run to hundreds of lines (transformers lists every model type).

    >>> first_line(ValueError("bad shape\\nat layer 3"))
    'bad shape'
    """
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else ""
