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
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(not 1 <= v <= 2 ** 31 - 1 for v in values):
        raise RooflineError(f"{option} takes comma-separated integers, each from 1 to 2^31 - 1, got {text[:80]!r}")
    return values


def names(text: str, option: str) -> list[str]:
    """Comma-separated names; a RooflineError for none or an empty one ("a,,b", "a,")."""
    found = [n.strip() for n in text.split(",")]
    if not any(found):
        raise RooflineError(f"{option} {text[:80]!r} names nothing; give comma-separated names")
    if not all(found):
        raise RooflineError(f"{option} {text[:80]!r} has an empty name between commas; remove the extra comma")
    return found
