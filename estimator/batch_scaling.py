"""Steps at any batch from two captures: every size in the step is a power of the batch.

Capturing a large model takes seconds, and the max-batch search (estimator.memory.max_batch)
and the cluster layout search (estimator.cluster_search) need the step at many batches. Two
captures of one model at batches a != b that record the same graph (the same ops in the same
order, the same phases and modules, the same edges, the same non-size arguments) differ only in
their sizes. :func:`fit` matches every size of the first capture with the second: each tensor
dimension, each tensor's count of distinct elements, each integer argument (a view's shape, a
slice's end) must follow

    v(batch) = v(a) * (batch / a) ** p,   p the one integer in 0..MAX_POWER with v(b) = v(a) * (b / a) ** p,

with v(a) / a**p an integer (so every batch gives integer sizes). p = 0 for weights, biases,
per-channel statistics and fixed lengths, 1 for activations (batch x tokens x width), 2 for a
(batch x batch) matrix. A step at another batch is then the first capture with each size so
rewritten (:meth:`BatchScaling.at`): everything downstream (step_memory's parameters,
gradients, optimizer state, activations and liveness peak; the costs, step time and cluster
prediction) reads it as it reads a capture. Where every size has p <= 1, every storage's bytes
are affine in the batch and the peak is the largest of affine functions, one per op.

What two captures cannot show: code that branches on the batch in a way both samples agree on
(padding to a multiple that both samples already are, min(batch, k) with both batches above k)
takes the samples' branch at every batch. Where the captures differ in anything but such sizes
(another op sequence, a float argument that changed, a size that is no power of the batch),
:func:`fit` returns None and :func:`steps_by_batch` captures each batch instead. Batch 1 is a
sample only when the caller already holds it: at batch 1 autograd may skip a broadcast's
reduction (a ViT's class token), so fits from (1, 2) are tried and (2, 4) taken when they fail.

Example:
    >>> scaling = fit(capture(*build(2), mode="train"), capture(*build(4), mode="train"))
    >>> step_memory(scaling.at(48), "amp-bf16").peak_bytes  # no third capture
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import fx

from .capture import CapturedStep, OpNode
from .tensor_meta import TensorMeta

MAX_POWER = 3  # the largest power of the batch a size may follow (a batch x batch x batch tensor)

log = logging.getLogger(__name__)

# how one value scales, read with the value: a power for an integer, (dimension powers, distinct
# power) for a TensorMeta, the items' specs for a list, tuple or dict; None (or 0) where it stays
Spec = int | tuple | dict | None


class _Mismatch(Exception):
    """The two captures differ in something other than a size that is a power of the batch."""


@dataclass(frozen=True)
class BatchScaling:
    """Two captures of one step matched size by size (module doc); `at(batch)` is the step at
    `batch`. `max_power` is the largest power any size follows (1: memory affine in the batch)."""

    first: CapturedStep
    second: CapturedStep
    specs: tuple  # per graph node: the specs of its tensor_meta, fx (args, kwargs) and OpNode (see _fit)
    max_power: int

    def at(self, batch: int) -> CapturedStep:
        """The step at `batch` (a positive integer): a sample itself, else the first sample rescaled."""
        for sample in (self.first, self.second):
            if batch == sample.batch:
                return sample
        base = self.first.batch
        graph, env, ops = fx.Graph(), {}, []
        for node, (meta_spec, fx_spec, op_spec) in zip(self.first.graph.nodes, self.specs):
            new = graph.node_copy(node, lambda n: env[n])
            env[node] = new
            if "tensor_meta" in node.meta:
                new.meta["tensor_meta"] = _scale(node.meta["tensor_meta"], meta_spec, batch, base)
            if fx_spec is not None:  # literal sizes in the graph's own arguments (a view's shape)
                new.args, new.kwargs = _scale((new.args, new.kwargs), fx_spec, batch, base)
            if "roofline" in node.meta:
                op = node.meta["roofline"]
                if op_spec is not None:
                    args, kwargs, inputs, outputs = (_scale(v, spec, batch, base) for v, spec in
                                                     zip((op.args, op.kwargs, op.inputs, op.outputs), op_spec))
                    op = OpNode(op.op, op.phase, op.module_path, op.module_type, args, kwargs, inputs, outputs)
                new.meta["roofline"] = op
                ops.append(op)
        return dataclasses.replace(self.first, graph=graph, nodes=tuple(ops), batch=batch,
                                   extra={key: self.first.extra[key] for key in ("structure", "module_types")
                                          if key in self.first.extra})


def fit(first: CapturedStep, second: CapturedStep) -> BatchScaling | None:
    """The scaling between two captures of one step at different batches (module doc), or None
    (logged at debug with the reason) where they differ in more than sizes."""
    try:
        return _fit(first, second)
    except _Mismatch as e:
        log.debug("batch %d and %d of %s do not scale: %s", first.batch, second.batch, first.model_name, e)
        return None


def steps_by_batch(make_step: Callable[[int], CapturedStep],
                   known: CapturedStep | None = None) -> Callable[[int], CapturedStep]:
    """A function batch -> step from at most two calls of `make_step` (a capture at that batch):
    `known` (a step already captured) and twice its batch, or batches 2 and 4; when `known` is at
    batch 1 and (1, 2) do not fit, 2 and 4. Where no pair fits, every batch is captured."""
    first = known if known is not None else make_step(2)
    second = make_step(2 * first.batch)
    scaling = fit(first, second)
    if scaling is None and first.batch == 1:
        first, second = second, make_step(4)
        scaling = fit(first, second)
    return scaling.at if scaling is not None else make_step


def steps_at(make_step: Callable[[int], CapturedStep], batches: list[int]) -> dict[int, CapturedStep]:
    """The step at each of `batches`: the two smallest captured (`make_step`), the others derived
    from those two where they fit, else captured too.

    >>> steps = steps_at(lambda b: capture_prefill(model, config, b, 2048, dtype, "cuda", name), [1, 8, 32, 128])
    >>> steps[128].batch   # two captures, at 1 and 8
    128
    """
    batches = sorted(set(batches))
    steps = {batch: make_step(batch) for batch in batches[:2]}
    scaling = fit(*steps.values()) if len(batches) > 2 else None
    for batch in batches[2:]:
        steps[batch] = scaling.at(batch) if scaling is not None else make_step(batch)
    return steps


# ---- matching two captures --------------------------------------------------------------------

def _fit(first: CapturedStep, second: CapturedStep) -> BatchScaling:
    a, b = first.batch, second.batch
    if a == b:
        raise _Mismatch(f"both captures are at batch {a}")
    for name in ("mode", "parameters", "trainable_parameters", "optimizer", "accumulate", "recompute",
                 "tokens_per_sample"):
        if getattr(first, name) != getattr(second, name):
            raise _Mismatch(f"{name} differs: {getattr(first, name)} and {getattr(second, name)}")
    nodes_a, nodes_b = list(first.graph.nodes), list(second.graph.nodes)
    if len(nodes_a) != len(nodes_b):
        raise _Mismatch(f"{len(nodes_a)} and {len(nodes_b)} graph nodes")
    position = {n: i for i, n in enumerate(nodes_a)} | {n: i for i, n in enumerate(nodes_b)}
    powers: set[int] = set()
    specs = []
    for x, y in zip(nodes_a, nodes_b):
        same = (x.op, x.target, "roofline" in x.meta) == (y.op, y.target, "roofline" in y.meta)
        if not same or [position[n] for n in x.all_input_nodes] != [position[n] for n in y.all_input_nodes]:
            raise _Mismatch(f"node {x.name} is {x.target} and {y.target}, or reads other nodes")
        meta = x.meta.get("tensor_meta")
        meta_spec = _match(meta, y.meta.get("tensor_meta"), a, b, powers) if meta is not None else None
        fx_spec = _match((x.args, x.kwargs), (y.args, y.kwargs), a, b, powers)
        op_spec = _match_op(x.meta["roofline"], y.meta["roofline"], a, b, powers) if "roofline" in x.meta else None
        specs.append((meta_spec, fx_spec, op_spec))
    return BatchScaling(first, second, tuple(specs), max(powers, default=0))


def _match_op(x: OpNode, y: OpNode, a: int, b: int, powers: set[int]):
    """Specs of one op's (args, kwargs, inputs, outputs), or None where nothing scales."""
    if x == y:
        return None
    if (x.op, x.phase, x.module_path, x.module_type) != (y.op, y.phase, y.module_path, y.module_type):
        raise _Mismatch(f"{x.name} runs in {x.phase} {x.module_path!r} and {y.phase} {y.module_path!r}")
    return _match((x.args, x.kwargs, x.inputs, x.outputs), (y.args, y.kwargs, y.inputs, y.outputs), a, b, powers)


def _match(x, y, a: int, b: int, powers: set[int]) -> Spec:
    """How value x (at batch a) becomes y (at batch b), None where it stays; raises _Mismatch
    where no power fits. Containers give a container of their items' specs; graph nodes (fx.Node)
    are matched by position in _fit."""
    if isinstance(x, fx.Node):
        return None
    if type(x) is not type(y):
        raise _Mismatch(f"argument {x!r} and {y!r}")
    if isinstance(x, TensorMeta):
        if x == y:
            return None
        if (x.dtype, len(x.shape), x.channels_last) != (y.dtype, len(y.shape), y.channels_last):
            raise _Mismatch(f"tensor {x} and {y}")
        return tuple(_power(u, v, a, b, powers) for u, v in zip(x.shape, y.shape)), \
            _power(x.distinct, y.distinct, a, b, powers)
    if isinstance(x, (list, tuple, dict)):
        if len(x) != len(y) or (isinstance(x, dict) and x.keys() != y.keys()):
            raise _Mismatch(f"arguments {x} and {y} differ in structure")
        if isinstance(x, dict):
            specs = {k: _match(x[k], y[k], a, b, powers) for k in x}
            return specs if any(specs.values()) else None
        specs = tuple(_match(u, v, a, b, powers) for u, v in zip(x, y))
        return specs if any(specs) else None
    if isinstance(x, int) and not isinstance(x, bool):
        return None if x == y else _power(x, y, a, b, powers)
    if x != y and not (isinstance(x, float) and math.isnan(x) and math.isnan(y)):
        raise _Mismatch(f"argument {x!r} and {y!r}")
    return None


def _power(u: int, v: int, a: int, b: int, powers: set[int]) -> int:
    """The p with v = u * (b / a) ** p and u divisible by a ** p (module doc)."""
    for p in range(MAX_POWER + 1):
        if u * b ** p == v * a ** p and u % a ** p == 0:
            powers.add(p)
            return p
    raise _Mismatch(f"size {u} at batch {a} and {v} at batch {b} is no power of the batch")


# ---- rewriting one capture ----------------------------------------------------------------------

def _scale(value, spec: Spec, batch: int, base: int):
    """`value` of the first capture (at batch `base`) at `batch`, by its spec from _match."""
    if not spec:
        return value
    if isinstance(value, TensorMeta):
        dims, distinct = spec
        shape = tuple(_scale(d, p, batch, base) for d, p in zip(value.shape, dims))
        return TensorMeta(shape, value.dtype, _scale(value.distinct, distinct, batch, base), value.channels_last)
    if isinstance(value, dict):
        return type(value)({k: _scale(v, spec[k], batch, base) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        items = [_scale(v, s, batch, base) for v, s in zip(value, spec)]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)  # a namedtuple: fields
    return value // base ** spec * batch ** spec
