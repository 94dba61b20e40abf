"""Tables that fit the terminal: columns dropped by priority, names shortened in the middle.

A FitTable is a rich Table whose columns carry a priority (0: always shown; the highest number
is dropped first, the rightmost of equal numbers first) and whose name column (layer paths, op
names, chips) is never wrapped. Rendered wider than the console, it drops columns until the
rest fits with names of a readable width, then shortens the longest names in the middle
("model.layers.…self_attn.q_proj"), and says in its caption what it hid. The fitting happens
at render time, so one table prints at any width.

output_console() is the console every command prints its tables on: the terminal's width, or
COLUMNS where set, or PIPE_WIDTH when stdout is not a terminal (a file, a pipe, CI).

Example:
    >>> t = FitTable(title="by layer")
    >>> t.add_column("layer", name=True); t.add_column("FLOP/B", justify="right", priority=3)
    >>> Console(width=80).print(t)
"""
from __future__ import annotations

import copy
import dataclasses
import os
import sys

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table

PIPE_WIDTH = 120  # columns when stdout is not a terminal and COLUMNS is unset
NAME_MIN = 40  # a name column keeps at least this width (or its longest name) while other columns can go
NAME_FLOOR = 16  # and is never shortened below this (or its longest name): the other columns squeeze instead
ELLIPSIS = "…"


def output_console() -> Console:
    """The console for stdout: the terminal's width, COLUMNS where set, else PIPE_WIDTH."""
    piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS", "").strip().isdigit()
    return Console(width=PIPE_WIDTH if piped else None)


def middle_ellipsis(text: str, width: int) -> str:
    """`text` in at most `width` cells, its middle replaced by an ellipsis (the start and the
    end of a path say the most: "layers.…q_proj")."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    keep = width - 1
    head, tail = text[: (keep + 1) // 2], text[len(text) - keep // 2:] if keep // 2 else ""
    while cell_len(head) + cell_len(tail) > keep:  # wide characters
        head, tail = (head[:-1], tail) if cell_len(head) >= cell_len(tail) else (head, tail[1:])
    return head + ELLIPSIS + tail


class FitTable(Table):
    """A rich Table that fits its console's width (module doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._priorities: list[int] = []
        self._names: list[bool] = []
        self._fitted = False

    def add_column(self, header="", *args, priority: int = 0, name: bool = False, **kwargs) -> None:
        """rich's add_column, and `priority` (0: always shown, higher: dropped earlier) and `name`
        (a name column: never wrapped, shortened in the middle when it must)."""
        if name:
            kwargs.update(no_wrap=True, overflow="ellipsis")
        super().add_column(header, *args, **kwargs)
        self._priorities.append(priority)
        self._names.append(name)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self._fitted:
            yield from super().__rich_console__(console, options)
            return
        yield self.fitted(console, options, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        if self._fitted:
            return super().__rich_measure__(console, options)
        return Measurement.get(console, options, self.fitted(console, options, options.max_width))

    def fitted(self, console: Console, options: ConsoleOptions, width: int) -> Table:
        """A copy of the table, in `width` cells: low-priority columns dropped, names shortened."""
        names = [i for i, is_name in enumerate(self._names) if is_name]
        natural = {i: self._natural(console, options, i) for i in names}
        header = {i: cell_len(str(self.columns[i].header)) for i in names}
        floor = {i: min(natural[i], max(NAME_MIN, header[i])) for i in names}
        droppable = sorted((i for i, p in enumerate(self._priorities) if p > 0),
                           key=lambda i: (-self._priorities[i], -i))  # highest number first, the rightmost of a tie
        kept = list(range(len(self.columns)))
        while True:
            overhead = self._width(console, options, kept, {i: 0 for i in names}) - sum(
                header[i] for i in names if i in kept)  # the table with empty names: all but the name cells
            if overhead + sum(floor[i] for i in names) <= width or not droppable:
                break
            kept.remove(droppable.pop(0))
        budget = {i: natural[i] for i in names}
        spare = width - overhead
        while sum(budget.values()) > spare and any(budget[i] > max(header[i], NAME_FLOOR) for i in names):
            widest = max(names, key=lambda i: budget[i])  # shorten the widest name column first
            budget[widest] -= 1
        return self._copy(kept, budget, [str(self.columns[i].header) for i in range(len(self.columns))
                                         if i not in kept])

    def _natural(self, console: Console, options: ConsoleOptions, index: int) -> int:
        column = self.columns[index]
        wide = options.update_width(1 << 20)
        return max([cell_len(str(column.header))] + [Measurement.get(console, wide, cell).maximum
                                                     for cell in column._cells])

    def _width(self, console: Console, options: ConsoleOptions, kept: list[int], budget: dict[int, int]) -> int:
        """The unwrapped width of the table with columns `kept` and names cut to `budget`."""
        table = self._copy(kept, budget, [])
        table.caption = table.title = None
        return Measurement.get(console, options.update_width(1 << 20), table).maximum

    def _copy(self, kept: list[int], budget: dict[int, int], hidden: list[str]) -> Table:
        table = copy.copy(self)
        table._fitted = True
        columns = []
        for i in kept:
            column = self.columns[i]
            if i in budget:
                cells = [middle_ellipsis(c, budget[i]) if isinstance(c, str) else c for c in column._cells]
                column = dataclasses.replace(column, _cells=cells)
            columns.append(column)
        table.columns = columns
        if hidden:
            note = f"not shown at this width: {', '.join(h for h in hidden if h)} (COLUMNS=160 shows them)"
            table.caption = f"{self.caption}\n{note}" if self.caption else note
            table.caption_justify = "left"
        return table
