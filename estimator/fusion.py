"""Fusion under `--execution compiled`: the kernels a torch.compile-style compiler (Inductor) runs.

Rules, on the step's data graph (views are followed: a view moves nothing and links its
producer to its consumers, so a reshape between two fusible ops does not split them):
  * free ops (views, metadata) belong to no kernel;
  * matmul, conv and attention ops stay library kernels, one each, with their own Cost; embedding,
    optimizer and unsupported ops also stay alone with their own Cost;
  * fusible ops (elementwise, norm, softmax, reduction, loss, memory, pooling) that feed one another
    in one phase form one generated kernel (op class "fused"). Groups grow greedily in execution
    order: a node joins its producers' groups, the closest first, while the group stays convex (no
    path leaves it and comes back in, so the kernels still form a DAG) and holds at most
    MAX_MEMBERS ops (Inductor's max_fusion_size);
  * eager attention in the forward, matmul -> (scale, mask) -> softmax -> (dropout) -> matmul,
    is one "attention" kernel, as Inductor's SDPA pattern matcher makes it: it reads q, k, v (and
    a mask) and writes its output; the s x s scores, probabilities and dropout mask never reach
    memory. Its backward, the matmuls around `_softmax_backward_data` (dP = dO v^T, dV = P^T dO,
    dQ and dK from dS), is one attention kernel too: it reads q, k, v and dO (and a mask), writes
    dq, dk, dv and recomputes the probabilities instead of reading them. It stays unfused where
    the scores' gradient is also needed (a learned position bias, as in T5) and, under activation
    checkpointing, for the recomputed forward and the backward.
A kernel's bytes: each distinct tensor entering it once (a slice is its own tensor), plus each
tensor it makes that is used outside it once: by another kernel, by a later phase (what the
forward saves for the backward), or as a result of the step (a tensor nothing reads: the model's
output, a gradient without an optimizer). Side outputs nothing reads (LayerNorm's mean and rstd
in inference) are not written. A floating tensor takes the element size its producer's cost
rule gives it (`precision.float_bytes` of that op; a parameter or input: of the op reading it),
any other tensor its itemsize. FLOPs are the members' sum: fusion keeps FLOPs, removes traffic.
Not modelled: sibling (horizontal) fusion, recomputing in the backward instead of saving
(min-cut partitioning), matmul epilogues.

Example:
    >>> kernels = fusion_groups(step, step_costs(step, amp), amp)  # resnet50, inference
    >>> [k.op_class for k in kernels][:3]  # conv1; bn1 + relu + maxpool; layer1.0.conv1
    ['conv', 'fused', 'conv']
"""
from __future__ import annotations

import operator
from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

import networkx as nx
import torch.fx as fx

from .capture import CapturedStep
from .costs import Cost
from .errors import RooflineError
from .precision import Precision
from .tensor_meta import TensorMeta

FUSIBLE = ("elementwise", "norm", "softmax", "reduction", "loss", "memory", "pooling")
MAX_MEMBERS = 64
_CHAIN = ("elementwise", "memory")  # what eager attention runs between its matmuls and softmax
_SLICES = {"select", "slice", "narrow", "split", "split_with_sizes", "unbind", "chunk", "tensor_split",
           "as_strided", "diagonal", "unfold"}
_UNINITIALIZED = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}


@dataclass(frozen=True, slots=True)
class FusedKernel:
    """One kernel of the compiled step: its members' FLOPs and the bytes it moves (module doc)."""

    members: tuple[int, ...]  # indices into step.nodes, in execution order
    flops: int
    bytes_read: int
    bytes_written: int
    op_class: str  # "matmul", "conv", "attention" (library kernels), "fused" or a lone op's class
    model_flops: int


class _Read(NamedTuple):
    key: fx.Node  # the tensor read: its producer's output, or the slice of it
    producer: int | None  # the node that made it; None for parameters, inputs and constants
    nbytes: int


class _DataGraph:
    """Costed nodes of a step (indices into step.nodes) and the tensors between them, views followed."""

    def __init__(self, step: CapturedStep, costs: tuple[Cost, ...], precision: Precision):
        calls = [n for n in step.graph.nodes if n.op == "call_function" and n.target is not operator.getitem]
        if len(calls) != len(step.nodes) or any(n.meta["roofline"] is not op for n, op in zip(calls, step.nodes)):
            raise RooflineError(f"the step's graph has {len(calls)} op nodes for {len(step.nodes)} recorded ops; "
                                f"capture the step again")
        self.step, self.costs, self.precision = step, costs, precision
        self.index = {n: i for i, n in enumerate(calls)}
        self.dag = nx.DiGraph()  # producer -> consumer, over non-free nodes, in execution order
        self.reads: dict[int, list[_Read]] = {}
        self.outputs: dict[int, list[tuple[fx.Node, TensorMeta]]] = {}
        self.uses: dict[fx.Node, set[int]] = defaultdict(set)  # output tensor -> nodes reading it
        self.from_nothing: set[int] = set()  # factories and random masks: ops reading no data
        escapes = []  # views nothing reads: the step returns them
        for n, i in self.index.items():
            if costs[i].op_class == "free":
                if not n.users and (found := self._resolve(n)):
                    escapes.append(found[0])
                continue
            self.dag.add_node(i)
            self.reads[i] = []
            for arg in _inputs(n) if costs[i].bytes_read else ():  # zeros_like(x) does not read x
                if (found := self._resolve(arg)) is None:
                    continue  # an uninitialised buffer (empty_like): nothing to read
                value, key, producer = found
                sized_by = i if producer is None else producer  # a parameter takes its reader's size
                self.reads[i].append(_Read(key, producer, self.nbytes(self._meta(key), sized_by)))
                if producer is not None:
                    self.dag.add_edge(producer, i)
                    self.uses[value].add(i)
            if costs[i].op_class in _CHAIN and all(r.producer in self.from_nothing for r in self.reads[i]):
                self.from_nothing.add(i)
            gets = sorted((u for u in n.users if u.target is operator.getitem), key=lambda u: u.args[1])
            self.outputs[i] = [(v, self._meta(v)) for v in gets or ([n] if n.meta["roofline"].outputs else [])]
        # an output nothing reads is a result of the step, unless it is a side output (index > 0)
        self.escapes = set(escapes) | {v for outs in self.outputs.values() for v, _ in outs[:1] if not self.uses[v]}

    def nbytes(self, meta: TensorMeta, producer: int) -> int:
        name = self.step.nodes[producer].op.overloadpacket.__name__
        size = self.precision.float_bytes(self.costs[producer].op_class, name) if meta.is_float else meta.itemsize
        return meta.distinct * size

    def _meta(self, n: fx.Node) -> TensorMeta:
        if n.op != "call_function":
            return n.meta["tensor_meta"]
        if n.target is operator.getitem:  # the k-th tensor of a tuple (capture gives each one a getitem)
            parent = n.args[0]
            k = sorted(u.args[1] for u in parent.users if u.target is operator.getitem).index(n.args[1])
            return parent.meta["roofline"].outputs[k]
        return n.meta["roofline"].outputs[0]

    def _resolve(self, n: fx.Node) -> tuple[fx.Node, fx.Node, int | None] | None:
        """(the tensor stored, the tensor or slice of it read, its producer) behind the view `n`;
        None for an uninitialised buffer."""
        key = None
        while n.op == "call_function":
            owner = n.args[0] if n.target is operator.getitem else n
            i = self.index[owner]
            if self.costs[i].op_class != "free":
                return n, key or n, i
            name, sources = owner.meta["roofline"].op.overloadpacket.__name__, _inputs(owner)
            if name in _UNINITIALIZED or not sources:
                return None
            key = key or (n if name in _SLICES else None)  # the slice nearest the reader is what it reads
            n = sources[0]
        return n, key or n, None

    def phase(self, i: int) -> str:
        return self.step.nodes[i].phase

    def kernel(self, members: set[int], op_class: str, pair: frozenset[int] = frozenset()) -> FusedKernel:
        """`members` as one kernel. Tensors passed to or from `pair` (attention's other half) are
        recomputed there, not moved."""
        read = {r.key: r.nbytes for i in members for r in self.reads[i]
                if r.producer not in members and r.producer not in pair}
        written = sum(self.nbytes(meta, i) for i in members for v, meta in self.outputs[i]
                      if v in self.escapes or not self.uses[v] - members <= pair)
        return FusedKernel(tuple(sorted(members)), sum(self.costs[i].flops for i in members), sum(read.values()),
                           written, op_class, sum(self.costs[i].useful_flops for i in members))

    def around_softmax(self, center: int, forward: set[int] = frozenset()) -> set[int] | None:
        """The eager attention around a softmax or, given its `forward`, a softmax backward: the one
        matmul feeding it through elementwise ops of the scores' size, those ops, the matmuls it
        feeds the same way (one in the forward), the masks and constants made only for them and, in
        the backward, the matmuls reading the forward's probabilities (dV). None where the pattern
        does not hold or the scores are also read elsewhere in the phase."""
        phase = self.phase(center)
        up, feeding = self._walk(center, up=True)
        down, fed = self._walk(center, up=False)
        fed |= {j for m in forward for j in self.dag.successors(m)
                if self.phase(j) == phase and self.costs[j].op_class == "matmul"}
        if len(feeding) != 1 or not fed or (not forward and len(fed) != 1):
            return None
        (scores,) = feeding
        up &= nx.descendants(self.dag.subgraph(up | feeding), scores)  # not the mask's own ops
        region = {center, scores} | up | down | fed
        while extra := {p for m in region for p in self.dag.predecessors(m) if p not in region
                        and p in self.from_nothing and self.phase(p) == phase
                        and all(s in region for s in self.dag.successors(p) if self.phase(s) == phase)}:
            region |= extra
        inner = region - feeding - fed
        if any(s not in region and self.phase(s) == phase for m in inner for s in self.dag.successors(m)):
            return None
        return region

    def _walk(self, start: int, up: bool) -> tuple[set[int], set[int]]:
        """The same-phase elementwise / memory ops of `start`'s output size reachable from it
        (through producers if `up`), and the matmuls where the walk stops."""
        phase, numel = self.phase(start), self.step.nodes[start].outputs[0].numel
        chain, matmuls, todo = set(), set(), [start]
        while todo:
            for j in (self.dag.predecessors if up else self.dag.successors)(todo.pop()):
                outs, op_class = self.step.nodes[j].outputs, self.costs[j].op_class
                if self.phase(j) != phase or j in chain:
                    continue
                if op_class == "matmul":
                    matmuls.add(j)
                elif op_class in _CHAIN and outs and outs[0].numel == numel:
                    chain.add(j)
                    todo.append(j)
        return chain, matmuls

    def creates_cycle(self, group: set[int], kernel_of: dict[int, int], members: dict[int, set[int]]) -> bool:
        """Whether a path leaves `group` and comes back in (entering another kernel anywhere reaches
        all its outputs). Edges go forward in execution order: the search stops at the group's end."""
        last = max(group)
        todo = [j for i in group for j in self.dag.successors(i) if j not in group and j < last]
        seen = set(todo)
        while todo:
            j = todo.pop()
            if j in group:
                return True
            for x in members[kernel_of[j]] if j in kernel_of else (j,):
                for y in self.dag.successors(x):
                    if y <= last and y not in seen:
                        seen.add(y)
                        todo.append(y)
        return False


def _inputs(n: fx.Node) -> list[fx.Node]:
    """The fx nodes among `n`'s arguments, in order: the tensors it reads."""
    found: list[fx.Node] = []
    fx.node.map_arg((n.args, n.kwargs), found.append)
    return found


def _attention(g: _DataGraph) -> list[tuple[set[int], set[int]]]:
    """(forward, backward) nodes of each eager attention; the backward is empty where not found."""
    forward_of: dict[int, set[int]] = {}  # softmax -> its forward attention
    found = []
    for i in g.dag.nodes:
        name = g.step.nodes[i].op.overloadpacket.__name__
        if name in ("_softmax", "_safe_softmax") and g.phase(i) == "forward":
            if region := g.around_softmax(i):
                forward_of[i] = region
        elif name == "_softmax_backward_data" and (probs := g.reads[i][1].producer) in forward_of:
            forward = forward_of.pop(probs)
            inner = {m for m in forward if g.costs[m].op_class != "matmul"}
            found.append((forward, g.around_softmax(i, inner) or set()))
    return found + [(forward, set()) for forward in forward_of.values()]


def fusion_groups(step: CapturedStep, costs: tuple[Cost, ...], precision: Precision) -> tuple[FusedKernel, ...]:
    """The kernels that run `step` compiled (rules in the module doc), in an execution order.

    `costs` are the step's per-node costs at `precision` (estimator.roofline.step_costs)."""
    g = _DataGraph(step, costs, precision)
    members: dict[int, set[int]] = {}  # kernel id -> nodes
    kernel_of: dict[int, int] = {}  # node -> kernel id
    classes: dict[int, str] = {}
    pairs: dict[int, frozenset[int]] = defaultdict(frozenset)  # attention's other half

    def add(group: set[int], op_class: str) -> int:
        k = len(classes)
        members[k], classes[k] = group, op_class
        kernel_of.update(dict.fromkeys(group, k))
        return k

    for forward, backward in _attention(g):
        if not g.creates_cycle(forward, kernel_of, members):
            f = add(forward, "attention")
            if backward and not g.creates_cycle(backward, kernel_of, members):
                pairs[add(backward, "attention")] = frozenset(forward)
                pairs[f] = frozenset(backward)
    for i in g.dag.nodes:  # execution order
        if i in kernel_of or costs[i].op_class not in FUSIBLE:
            continue
        group = {i}
        producers = {kernel_of[p] for p in g.dag.predecessors(i)
                     if p in kernel_of and classes[kernel_of[p]] == "fused" and g.phase(p) == g.phase(i)}
        for k in sorted(producers, key=lambda k: -max(members[k])):  # the closest first
            merged = group | members[k]
            if len(merged) <= MAX_MEMBERS and not g.creates_cycle(merged, kernel_of, members):
                group = merged
                del members[k]
        add(group, "fused")
    made = set(members)  # the kernels fusion made; every other node runs alone, as in eager
    for i in g.dag.nodes:
        if i not in kernel_of:
            add({i}, costs[i].op_class)
    condensed = nx.DiGraph()
    condensed.add_nodes_from(members)
    condensed.add_edges_from((kernel_of[u], kernel_of[v]) for u, v in g.dag.edges if kernel_of[u] != kernel_of[v])
    order = nx.lexicographical_topological_sort(condensed, key=lambda k: min(members[k]))  # raises on a cycle
    return tuple(g.kernel(members[k], classes[k], pairs[k]) if k in made else _alone(*members[k], costs)
                 for k in order)


def _alone(i: int, costs: tuple[Cost, ...]) -> FusedKernel:
    c = costs[i]
    return FusedKernel((i,), c.flops, c.bytes_read, c.bytes_written, c.op_class, c.useful_flops)
