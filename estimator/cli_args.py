"""Parsers of comma-separated command-line values, shared by the subcommands.

Example:
    >>> int_list("1,64,256", "--batch"), names("resnet50, vit_b_16", "--models")
    ([1, 64, 256], ['resnet50', 'vit_b_16'])
"""
from __future__ import annotations

from .errors import RooflineError


def int_list(text: str, option: str) -> list[int]:
    """Comma-separated positive integers, or a RooflineError naming `option` and the text."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise RooflineError(f"{option} takes comma-separated integers, each at least 1, got {text!r}")
    return values


def names(text: str, option: str) -> list[str]:
    """Comma-separated names, blanks dropped; a RooflineError when none is left."""
    found = [n.strip() for n in text.split(",") if n.strip()]
    if not found:
        raise RooflineError(f"{option} {text!r} names nothing; give comma-separated names")
    return found
