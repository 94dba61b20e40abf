"""The exceptions torch-roofline raises for bad input; the CLI prints them as one line.

Every message names the bad value, what was expected, and a hint. Example:
    UnknownHardwareError: unknown hardware 'h10'; did you mean 'h100-sxm'? (`roofline hardware list` shows all)
"""
from __future__ import annotations

import difflib


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


def did_you_mean(value: str, choices: list[str]) -> str:
    """A ' did you mean ...?' clause for the closest choices, or '' when none is close.

    >>> did_you_mean("resnet5", ["resnet50", "vit_b_16"])
    "; did you mean 'resnet50'?"
    """
    close = difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
