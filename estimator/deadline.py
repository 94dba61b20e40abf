"""A time budget for `roofline calibrate`: a deadline that probes check between and inside
their loops, and the list of what was cut short to keep it.

A run has one root Deadline (its budget); each phase takes a share of what is left
(Deadline.share), so time a phase does not use passes on to the later ones. Every share
writes what it cut into the root's list, which calibrate turns into notes.

Example:
    >>> run = Deadline(60.0)
    >>> gemm = run.share(0.5)                  # at most half of what is left
    >>> if gemm.expired: gemm.cut("GEMM fp32: 3 of 16 rounds")
    >>> run.cuts                               # ['GEMM fp32: 3 of 16 rounds'] once expired
"""
from __future__ import annotations

import math
import time
from typing import Callable


class Deadline:
    """Ends `seconds` after it is made (math.inf: never), by `clock` (time.monotonic)."""

    def __init__(self, seconds: float = math.inf, clock: Callable[[], float] = time.monotonic,
                 cuts: list[str] | None = None):
        self.clock = clock
        self.start = clock()
        self.end = self.start + seconds
        self.cuts: list[str] = [] if cuts is None else cuts

    @property
    def left_s(self) -> float:
        return self.end - self.clock()

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.start

    @property
    def expired(self) -> bool:
        return self.left_s <= 0

    def allows(self, seconds: float) -> bool:
        """Whether work predicted to take `seconds` ends before the deadline."""
        return seconds <= self.left_s

    def share(self, fraction: float) -> Deadline:
        """A deadline `fraction` of the time left from now, recording its cuts in this one's list."""
        return Deadline(max(self.left_s, 0.0) * fraction, self.clock, self.cuts)

    def cut(self, what: str) -> None:
        """Record that `what` was cut short to keep the budget."""
        self.cuts.append(what)


def never() -> Deadline:
    """A deadline that does not end (the default of every probe measured on its own)."""
    return Deadline()


def predict_s(last_s: float, last_work: float, work: float) -> float:
    """The time of `work` at the rate of the last measurement (`last_work` in `last_s`): larger
    sizes usually run at a higher rate, so this errs on the long side."""
    return last_s * work / last_work
