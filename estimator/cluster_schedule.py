"""A schedule of tasks on streams as a networkx graph; the step is its critical path.

A task has a duration and runs on at most one stream (a GPU's compute stream, its
communication stream); tasks of one stream run one after the other in the order they were
added, and a task also waits for the tasks named in `after` (a collective waits for the
gradients it reduces; the next layer's forward waits for its parameters' all-gather). Each
task starts when all it waits for have finished: earliest start = max(finish of its
predecessors), finish = start + duration, computed in one topological pass. The step time is
the latest finish. What communication costs the step is measured on the same graph: the
step's time with every communication task taking zero time, subtracted from the real one,
is the communication exposed; the rest of the communication ran hidden under compute.

Example:
    >>> s = Schedule()
    >>> a = s.add("backward", 3.0, stream="compute")
    >>> r = s.add("all-reduce", 2.0, stream="comm", after=[a], comm=True)
    >>> o = s.add("optimizer", 1.0, stream="compute", after=[r])
    >>> s.finish_s(), s.finish_s(comm_free=True)
    (6.0, 4.0)
"""
from __future__ import annotations

from typing import Hashable, Iterable

import networkx as nx


class Schedule:
    def __init__(self) -> None:
        self.graph = nx.DiGraph()
        self._last_on: dict[Hashable, int] = {}

    def add(self, name: str, duration_s: float, stream: Hashable | None = None, after: Iterable[int] = (),
            comm: bool = False) -> int:
        """Add a task; returns its id for later `after` lists."""
        task = self.graph.number_of_nodes()
        self.graph.add_node(task, name=name, duration_s=max(0.0, duration_s), comm=comm)
        if stream is not None:
            if stream in self._last_on:
                self.graph.add_edge(self._last_on[stream], task)
            self._last_on[stream] = task
        for before in after:
            if before is not None:
                self.graph.add_edge(before, task)
        return task

    def finishes_s(self, comm_free: bool = False) -> dict[int, float]:
        """Each task's earliest finish (module doc); `comm_free`: communication takes no time."""
        finish: dict[int, float] = {}
        nodes = self.graph.nodes
        for task in nx.topological_sort(self.graph):
            start = max((finish[p] for p in self.graph.predecessors(task)), default=0.0)
            duration = 0.0 if comm_free and nodes[task]["comm"] else nodes[task]["duration_s"]
            finish[task] = start + duration
        return finish

    def finish_s(self, comm_free: bool = False) -> float:
        return max(self.finishes_s(comm_free).values(), default=0.0)

    def busy_s(self, comm: bool) -> float:
        """Summed durations of the communication (True) or the other tasks."""
        return sum(d["duration_s"] for _, d in self.graph.nodes(data=True) if d["comm"] == comm)

    def critical_path(self) -> list[str]:
        """Names of the tasks on the longest path, in order."""
        finish = self.finishes_s()
        if not finish:
            return []
        task = max(finish, key=finish.get)
        path = [task]
        while True:
            start = finish[task] - self.graph.nodes[task]["duration_s"]
            preds = [p for p in self.graph.predecessors(task) if abs(finish[p] - start) <= 1e-12 * max(1.0, start)]
            if not preds:
                break
            task = preds[0]
            path.append(task)
        return [self.graph.nodes[t]["name"] for t in reversed(path)]
