"""A captured step as bytes and back, for the disk cache (estimator.step_cache).

A CapturedStep holds an fx.Graph, whose nodes link to each other and to torch's op objects
(OpOverload, which does not pickle): the graph is written as a list of rows, one per node
(kind, name, target, args and kwargs with node references as row indices, meta), and rebuilt
on reading; an OpOverload is written as its qualified name and overload and looked up again.
Every other field pickles as it is. The OpNodes of ``step.nodes`` and of the graph's
``meta["roofline"]`` stay the same objects after a round trip.

Example:
    >>> data = dumps(step)
    >>> again = loads(data)
    >>> [n.op for n in again.nodes] == [n.op for n in step.nodes]
    True
"""
from __future__ import annotations

import copyreg
import dataclasses
import io
import pickle

import torch
import torch.fx as fx
from torch.fx.node import map_arg

from .capture import CapturedStep, OpNode
from .tensor_meta import TensorMeta

FORMAT = 1  # bump when the layout below changes: older entries are then not read


@dataclasses.dataclass(frozen=True)
class _Ref:
    """A reference to graph row `index` inside a row's args."""

    index: int


def _op_by_name(qualified: str, overload: str):
    namespace, name = qualified.split("::", 1)
    return getattr(getattr(getattr(torch.ops, namespace), name), overload)


def _reduce_op(op: torch._ops.OpOverload):
    return _op_by_name, (op._schema.name, op._overloadname)


def _op_node(*fields) -> OpNode:
    return OpNode(*fields)


class _Pickler(pickle.Pickler):
    """Ops by name; frozen dataclasses rebuilt through their constructors, faster than pickle's
    setstate; equal TensorMetas written once, as an index into a table written first (a step
    repeats a few hundred shapes thousands of times)."""

    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[torch._ops.OpOverload] = _reduce_op
    dispatch_table[OpNode] = lambda n: (_op_node, tuple(getattr(n, f.name) for f in dataclasses.fields(OpNode)))

    def __init__(self, file, metas: dict[TensorMeta, int]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._metas = metas

    def persistent_id(self, obj):
        if type(obj) is TensorMeta:
            return self._metas.setdefault(obj, len(self._metas))
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, metas: list[TensorMeta]):
        super().__init__(file)
        self._metas = metas

    def persistent_load(self, index):
        return self._metas[index]


def dumps(step: CapturedStep) -> bytes:
    """The step as bytes (module doc). Raises pickle.PicklingError or TypeError when the step
    holds something that does not pickle (an object in its extra data)."""
    rows, index = [], {}
    for i, node in enumerate(step.graph.nodes):
        index[node] = i
        args = map_arg(node.args, lambda n: _Ref(index[n]))
        kwargs = map_arg(node.kwargs, lambda n: _Ref(index[n]))
        rows.append((node.op, node.name, node.target, args, kwargs, dict(node.meta)))
    fields = {f.name: getattr(step, f.name) for f in dataclasses.fields(step) if f.name != "graph"}
    body, metas = io.BytesIO(), {}
    _Pickler(body, metas).dump((fields, rows))
    table = [(m.shape, m.dtype, m.distinct, m.channels_last) for m in metas]
    return pickle.dumps((FORMAT, table, body.getvalue()), protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> CapturedStep:
    """The step `dumps` wrote. Raises ValueError for bytes of another format version; any other
    exception means the bytes are damaged."""
    version, table, body = pickle.loads(data)
    if version != FORMAT:
        raise ValueError(f"step format {version}, expected {FORMAT}")
    fields, rows = _Unpickler(io.BytesIO(body), [TensorMeta(*m) for m in table]).load()
    graph, nodes = fx.Graph(), []
    for kind, name, target, args, kwargs, meta in rows:
        node = graph.create_node(kind, target, _resolve(args, nodes), _resolve(kwargs, nodes), name=name)
        node.meta.update(meta)
        nodes.append(node)
    return CapturedStep(graph=graph, **fields)


def _resolve(value, nodes: list[fx.Node]):
    if isinstance(value, _Ref):
        return nodes[value.index]
    if isinstance(value, tuple):
        return tuple(_resolve(v, nodes) for v in value)
    if isinstance(value, list):
        return [_resolve(v, nodes) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, nodes) for k, v in value.items()}
    return value
